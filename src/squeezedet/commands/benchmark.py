"""Measure end-to-end inference latency per backend and precision on this machine.

Each row (BACKEND:PRECISION) runs in a fresh Python process (so its peak resident memory is its
own) on one image: pre-processing (resize of the decoded photo to the network size with the
training Resize, as predict prepares it for that runner: Pillow and uint8 pixels for eager PyTorch,
OpenCV and float32 for the others and the baseline), forward (the runner), post-processing
(split_head, top-64, decode, per-class NMS, boxes to original pixels). It prints latency median /
p90 / min over the warm runs for each stage and in total, FPS, peak RSS, parameters, model file
size, GFLOPs, the achieved GFLOP/s as a fraction of a matrix-product peak measured here at the
benchmark's thread count (fp32 peak for fp32 rows, bf16 peak for bf16 rows, int8 peak for int8
rows; the best of MKL's matmul and oneDNN's 1x1 convolution, each warmed up and timed many times:
an upper bound of what the network's convolutions reach), and the ratio of each row's total to
the fp32 eager NCHW PyTorch baseline measured in the same run.

Rows: torch-nchw:fp32 (the baseline, always run: the plain layer-by-layer eager forward, NCHW),
torch:fp32 (what `predict --backend torch` runs: channels-last, first stage in bands), torch:bf16
(the same with autocast), torch-compile:fp32, onnxruntime:fp32, onnxruntime:int8,
openvino:fp32, openvino:bf16, openvino:int8, auto:fp32 (what `predict --backend auto` picks
for a checkpoint: measured on first use, then cached), and on request executorch:fp32 and
executorch:int8 (a .pte lowered to XNNPACK; batch 1). Rows whose optional package is missing are
skipped with a note. The bf16 rows are default only on CPUs with native bf16 (AVX512-BF16 or
AMX); asked for elsewhere they run and are marked: "emulated" (PyTorch converts bf16 to fp32
and back: slower than fp32) or "runs f32" (OpenVINO computes the bf16 model in f32). int8
models are calibrated on --calib-data (a KITTI root or image folder; rendered synthetic scenes
without it).

Without --weights a randomly initialised model of --model is measured (speed does not depend on
the weights; int8 accuracy does: its int8 models are exported without the parity check, so that
OpenVINO's is NNCF's all-int8 model, as a trained checkpoint gets, and not a fallback that
random weights trigger now and then). --weights with another --input-size runs the checkpoint's
weights at that size, anchors scaled. Without --image a synthetic 1242x375 driving scene is used.

--energy adds joules per image and mean watts to every row (columns J/img and W, and "energy"
in the JSON): read from the hardware's energy counter while the row's whole call repeats for
--energy-seconds, with the idle power (read over up to 2 s of sleep first) subtracted — RAPL/powercap
for the CPU (package and DRAM zones; often root-only, absent in most VMs), NVML for an NVIDIA
GPU (pip install 'squeezedet[energy]'; the paper's 1.4 J/image on a TITAN X is this figure).
Where no counter can be read the row shows an ESTIMATE, marked "*" and "energy est." (and
"estimated": true in the JSON): the network forward's multiply-adds and DRAM bytes at the
precision it computes in, priced at 45 nm per-operation energies (Horowitz, ISSCC 2014) — a
lower bound for comparing models and precisions, not a reading of this machine. The estimate's
watts are that energy over the row's measured median time.

--device cuda runs the eager PyTorch rows on the GPU (default rows torch-nchw:fp32, torch:fp32,
torch:bf16); the time includes copying the input over and the output back.

Examples:
    squeezedet benchmark --weights runs/demo/train/best.pt --input-size 624x192
    squeezedet benchmark --backends torch:fp32,openvino:int8 --calib-data data/kitti --json b.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from squeezedet.deployment.benchmark import DEFAULT_BACKENDS, BenchmarkOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="squeezedet",
                        help="registered model (without --weights)")
    parser.add_argument("--weights", help="checkpoint .pt to measure (default: random weights)")
    parser.add_argument("--input-size", default=None, metavar="WxH",
                        help="network input size (default: the model's, e.g. 1248x384)")
    parser.add_argument("--batch", type=int, default=1, help="images per forward pass")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads, at least 1 (default: torch's setting)")
    parser.add_argument("--backends", default=None,
                        help="comma-separated BACKEND:PRECISION rows (default: "
                             f"{','.join(DEFAULT_BACKENDS)}; the bf16 rows only on CPUs with "
                             "native bf16)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per row first")
    parser.add_argument("--image", help="photo to run on (default: a synthetic driving scene)")
    parser.add_argument("--calib-data", help="int8 calibration images (KITTI root or folder)")
    parser.add_argument("--accuracy-data", metavar="KITTI_ROOT",
                        help="OpenVINO int8: keep mAP_R40 on this root's val split within 0.4 of "
                             "fp32 (NNCF accuracy control; see squeezedet export)")
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--in-process", action="store_true",
                        help="run every row in this process (faster; peak RSS is then shared)")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default), or cuda / cuda:N for the eager PyTorch rows on a GPU")
    parser.add_argument("--energy", action="store_true",
                        help="add joules per image and mean watts per row: measured (RAPL, NVML) "
                             "where a counter is readable, else a labelled estimate")
    parser.add_argument("--energy-seconds", type=float, default=3.0, metavar="S",
                        help="with --energy and a counter: seconds each row runs while it is "
                             "read (default 3)")
    parser.add_argument("--no-peak", dest="peak", action="store_false",
                        help="skip measuring the matrix-product peaks (~3 s; no %%peak column)")
    parser.add_argument("--json", dest="json_out", help="write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    from squeezedet.deployment.benchmark import run_benchmark
    from squeezedet.deployment.benchmark_table import format_table
    from squeezedet.errors import check_output_file

    if args.json_out:
        check_output_file(args.json_out, "--json")
    fields = {f.name for f in dataclasses.fields(BenchmarkOptions)}
    options = BenchmarkOptions(**{k: v for k, v in vars(args).items() if k in fields})
    report = run_benchmark(options, log=lambda line: print(line, flush=True))
    print(format_table(report["rows"]))
    for note in report["notes"]:
        print(f"note: {note}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0
