"""The benchmark behind ``squeezedet benchmark`` (its ``--help`` describes the rows, the stages
and the figures): :func:`run_benchmark` with :class:`BenchmarkOptions`; each row can run in its
own process (``python -m squeezedet.deployment.benchmark --worker SPEC``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squeezedet.errors import SqueezeDetError, installed

DEFAULT_BACKENDS = ("torch-nchw:fp32", "torch:fp32", "torch:bf16", "onnxruntime:fp32",
                    "onnxruntime:int8", "openvino:fp32", "openvino:bf16", "openvino:int8",
                    "auto:fp32")
#: the default rows without bf16: the default on CPUs that only emulate bf16 (slower than fp32)
DEFAULT_BACKENDS_NO_BF16 = tuple(r for r in DEFAULT_BACKENDS if not r.endswith(":bf16"))
BASELINE = "torch-nchw:fp32"
#: the rows that run on a GPU (``--device cuda``): eager PyTorch
GPU_BACKENDS = ("torch-nchw", "torch", "torch-compile")
DEFAULT_BACKENDS_GPU = ("torch-nchw:fp32", "torch:fp32", "torch:bf16")
KNOWN = {"torch-nchw": ("fp32",), "torch": ("fp32", "bf16"), "torch-compile": ("fp32", "bf16"),
         "onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8"),
         "auto": ("fp32", "bf16")}
EXTRA = {"onnxruntime": ("onnxruntime", "export"), "openvino": ("openvino", "openvino")}


@dataclass
class BenchmarkOptions:
    """The ``squeezedet benchmark`` settings (see its ``--help``)."""

    model: str = "squeezedet"
    weights: str | None = None
    input_size: str | None = None
    batch: int = 1
    threads: int | None = None
    #: comma-separated rows; ``None``: :func:`default_backends`
    backends: str | None = None
    runs: int = 30
    warmup: int = 5
    image: str | None = None
    calib_data: str | None = None
    accuracy_data: str | None = None
    calib_images: int = 32
    in_process: bool = False
    #: ``"cpu"`` or ``"cuda"``/``"cuda:N"`` (eager PyTorch rows only)
    device: str = "cpu"
    #: add joules per image and mean watts to every row (:func:`row_energy`)
    energy: bool = False
    #: how long each row runs for the energy reading (with a counter; plus an idle reading)
    energy_seconds: float = 3.0
    #: measure the matrix-product peaks (the ``%peak`` column); off for a quicker run
    peak: bool = True


def default_backends(device: str = "cpu") -> tuple[str, ...]:
    """The default rows: every backend and precision, bf16 only where the CPU has it natively
    (:func:`squeezedet.cpu.native_bf16`); elsewhere it is emulated, slower than fp32, and only run
    when asked for (and then marked ``emulated``). On a GPU: the eager PyTorch rows."""
    from squeezedet import cpu

    if device != "cpu":
        return DEFAULT_BACKENDS_GPU
    return DEFAULT_BACKENDS if cpu.native_bf16() else DEFAULT_BACKENDS_NO_BF16


# ---------------------------------------------------------------------------------------------
# measurements


#: the distributions whose versions a report records (:func:`library_versions`)
VERSIONED = ("squeezedet", "torch", "numpy", "onnxruntime", "openvino", "nncf", "opencv-python-headless")


def library_versions() -> dict[str, str | None]:
    """Python's and each :data:`VERSIONED` distribution's version (``None``: not installed) —
    what a measured speed depends on besides the CPU."""
    import platform
    from importlib import metadata

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, which starts afresh at ``exec`` (``ru_maxrss`` does
    not: it keeps the parent's peak at the time of the fork).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _best_seconds(fn: Callable[[], Any], *, min_time_s: float, min_reps: int) -> float:
    """Shortest time of one call of ``fn``, after two untimed calls (the first allocates
    buffers and wakes the thread pool), over at least ``min_reps`` calls and ``min_time_s``
    seconds: short calls timed many times find the moments the CPU is not shared."""
    fn()
    fn()
    best, spent, reps = float("inf"), 0.0, 0
    while reps < min_reps or spent < min_time_s:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def peak_kernels(precision: str) -> list[tuple[str, Callable[[], Any], float]]:
    """The kernels whose best speed makes the matrix-product peak of ``precision``:
    ``(name, call, flops)``. fp32 and bf16: MKL's matrix product (1024² and 2048²) and oneDNN's
    1×1 convolution on a channels-last 512-channel 64×64 map (a matrix product in the kernel
    family the network's convolutions use: on CPUs where MKL takes a slow path, oneDNN still
    shows the arithmetic peak); int8: ``torch._int_mm`` 1024²."""
    import torch

    kernels: list[tuple[str, Callable[[], Any], float]] = []
    if precision == "int8":
        a8 = torch.randint(-8, 8, (1024, 1024), dtype=torch.int8)
        b8 = torch.randint(-8, 8, (1024, 1024), dtype=torch.int8)
        return [("int_mm 1024", lambda: torch._int_mm(a8, b8), 2 * 1024**3)]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    for n in (1024, 2048):
        kernels.append((f"matmul {n}", functools.partial(torch.matmul, torch.randn(n, n, dtype=dtype),
                                                         torch.randn(n, n, dtype=dtype)), 2 * n**3))
    c, hw = 512, 64
    x = torch.randn(1, c, hw, hw, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 1, 1, dtype=dtype).contiguous(memory_format=torch.channels_last)

    def conv() -> Any:
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w)
    kernels.append((f"conv1x1 {c}ch {hw}x{hw}", conv, 2 * c * c * hw * hw))
    return kernels


def matmul_peak_detail(precision: str = "fp32", *, min_time_s: float = 0.25,
                       min_reps: int = 5) -> dict[str, float]:
    """GFLOP/s of each :func:`peak_kernels` kernel in ``precision`` at the current thread count
    (kernels this build or CPU cannot run are left out). bf16 is measured only where the CPU has
    it natively (emulated, a 1024² bf16 product took a minute on an AVX2 CPU)."""
    from squeezedet import cpu

    if precision == "bf16" and not cpu.native_bf16():
        return {}
    found: dict[str, float] = {}
    try:
        kernels = peak_kernels(precision)
    except Exception:  # noqa: BLE001 - dtype unsupported by this build
        return found
    for name, fn, flops in kernels:
        try:
            found[name] = flops / _best_seconds(fn, min_time_s=min_time_s, min_reps=min_reps) / 1e9
        except Exception:  # noqa: BLE001 - unsupported dtype on this CPU/build
            continue
    return found


def matmul_peak_gflops(precision: str = "fp32", **kwargs: Any) -> float | None:
    """The best GFLOP/s of :func:`matmul_peak_detail` (``None``: nothing could be measured):
    an upper bound of what a network's convolutions reach at this thread count."""
    detail = matmul_peak_detail(precision, **kwargs)
    return max(detail.values()) if detail else None


def _stats(values_s: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values_s)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return {"median": statistics.median(ms), "p90": p90, "min": ms[0]}


def measure_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one backend/precision; ``spec`` holds the paths and settings (see :func:`run`)."""
    import numpy as np
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    from squeezedet.deployment.preprocess import network_batch, runner_input
    from squeezedet.deployment.runners import TorchRunner, light_torch_threads, load_runner
    from squeezedet.models.detector import split_head
    from squeezedet.ops.anchors import make_anchors
    from squeezedet.postprocess import PostProcess, to_original_pixels

    backend, precision = spec["backend"], spec["precision"]
    device = str(spec.get("device") or "cpu")
    t0 = time.perf_counter()
    runner: Any
    if backend == "torch-nchw":
        runner = TorchRunner(spec["weights"], device, channels_last=False, banded=False)
    elif backend in ("torch", "torch-compile"):
        runner = TorchRunner(spec["weights"], device, precision=precision,
                             channels_last=None if device == "cpu" else False,
                             compile=backend == "torch-compile")
    elif backend == "auto":
        runner = load_runner(spec["weights"], "auto", "cpu", precision=precision,
                             threads=spec.get("threads"))
    else:
        runner = load_runner(spec["file"], backend, "cpu", threads=spec.get("threads"))
    load_s = time.perf_counter() - t0
    meta = runner.meta
    size = (int(meta["input_size"][0]), int(meta["input_size"][1]))
    k, c = len(meta["anchor_shapes"]), len(meta["class_names"])
    image = np.load(spec["image"])
    arrays = [image] * int(spec["batch"])
    orig = (int(image.shape[0]), int(image.shape[1]))
    post = PostProcess()
    anchors: dict[tuple[int, int], torch.Tensor] = {}

    def once() -> tuple[float, float, float]:
        t = time.perf_counter()
        # as predict prepares it for this runner; the baseline with the fastest resize (OpenCV),
        # so that no ratio gains from a slower baseline pre-processing
        x = network_batch(arrays, size) if backend == "torch-nchw" else runner_input(
            runner, arrays, size)
        t1 = time.perf_counter()
        out = runner(x)
        if device != "cpu":
            out = out.cpu()  # the detections are wanted on the host; this also waits for the GPU
        t2 = time.perf_counter()
        grid = (int(out.shape[-1]), int(out.shape[-2]))
        if grid not in anchors:
            anchors[grid] = make_anchors(grid, size, meta["anchor_shapes"],
                                         centers=meta.get("anchor_centers", "original"))
        dets = post(split_head(out.float(), k, c), anchors[grid], size)
        for d in dets:
            to_original_pixels(d["boxes"], size, orig)
        t3 = time.perf_counter()
        return t1 - t, t2 - t1, t3 - t2

    with light_torch_threads(runner):  # as Detector does for non-torch runners
        for _ in range(int(spec["warmup"])):
            once()
        times = [once() for _ in range(int(spec["runs"]))]
        pre, fwd, pst = (_stats([t[i] for t in times]) for i in range(3))
        total = _stats([sum(t) for t in times])
        from squeezedet import cpu

        runs_prec = str(getattr(runner, "precision", precision))
        ov_prec = getattr(runner, "inference_precision", None)  # OpenVINO: what it computes in
        emulated = runs_prec == "bf16" and ov_prec is None and device == "cpu" and not cpu.native_bf16()
        energy = None
        if spec.get("energy"):
            energy = row_energy(once, spec, computes_in(precision, ov_prec, emulated),
                                total["median"] / 1000, device).to_json()
    chosen = type(runner).__name__
    return {
        "backend": backend, "precision": precision, "runner": chosen,
        "runner_precision": runs_prec,
        "inference_precision": ov_prec,
        # bf16 computed by a CPU that converts it to fp32 and back (slower than fp32)
        "emulated": emulated,
        "device": device,
        "energy": energy,
        "auto_choice": getattr(runner, "auto_choice", None),
        "load_s": load_s,
        **{f"pre_ms_{s}": v for s, v in pre.items()},
        **{f"forward_ms_{s}": v for s, v in fwd.items()},
        **{f"post_ms_{s}": v for s, v in pst.items()},
        **{f"total_ms_{s}": v for s, v in total.items()},
        "fps": int(spec["batch"]) * 1000 / total["median"],
        "peak_rss_mib": peak_rss_mib(),
        "threads": torch.get_num_threads(),
    }


def computes_in(precision: str, inference_precision: str | None, emulated: bool) -> str:
    """The precision a row's arithmetic runs in, for the energy estimate: ``int8`` for int8
    models; what OpenVINO reports it computes in (its fp32 models run bf16 on CPUs with AMX);
    ``fp32`` for emulated bf16."""
    if precision == "int8":
        return "int8"
    if inference_precision in ("bf16", "f16"):
        return "bf16"
    if inference_precision == "f32" or emulated:
        return "fp32"
    return precision


def row_energy(once: Callable[[], object], spec: dict[str, Any], precision: str,
               seconds_per_batch: float, device: str) -> Any:
    """Joules per image and mean watts of one row's whole call (pre-processing, forward,
    post-processing): read from the hardware counter of ``device`` (RAPL for the CPU, NVML for a
    GPU) while ``once`` repeats for ``spec["energy_seconds"]``, idle power subtracted; where no
    counter is readable, the documented estimate of the network's forward at ``precision``
    (:mod:`squeezedet.deployment.energy`; labelled, never passed off as a measurement) with the
    watts from the row's measured median time."""
    from squeezedet.deployment.energy import ModelCost, measure_energy

    cost = ModelCost(**spec["cost"]) if spec.get("cost") else None
    seconds = float(spec.get("energy_seconds", 3.0))
    return measure_energy(once, int(spec["batch"]), device=device, estimate=cost,
                          precision=precision, min_seconds=seconds, idle_seconds=min(2.0, seconds),
                          seconds_per_batch=seconds_per_batch)


def _run_row(spec: dict[str, Any], in_process: bool) -> dict[str, Any]:
    if in_process:
        return measure_row(spec)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    proc = subprocess.run([sys.executable, "-m", "squeezedet.deployment.benchmark", "--worker",
                           json.dumps(spec)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"backend": spec["backend"], "precision": spec["precision"], "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the benchmark


def parse_rows(text: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("torch-nchw", "fp32")]
    for item in (t.strip() for t in text.split(",") if t.strip()):
        backend, _, precision = item.partition(":")
        precision = precision or "fp32"
        if backend not in KNOWN or precision not in KNOWN[backend]:
            choices = ", ".join(f"{b}:{p}" for b, ps in KNOWN.items() for p in ps)
            raise SqueezeDetError(f"unknown benchmark row {item!r}; choose from {choices}")
        if (backend, precision) not in rows:
            rows.append((backend, precision))
    return rows


def run_benchmark(options: BenchmarkOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every row of ``options.backends`` (module docstring); progress lines go to
    ``log``. Returns the report: ``rows`` (one dict per measured row, ``ratio_to_baseline``
    included), ``notes`` (rows skipped or failed, and why), the model's figures and the matmul
    peaks."""
    import numpy as np
    import torch

    from squeezedet.checkpoint import model_from_checkpoint, save_checkpoint
    from squeezedet.config import parse_size
    from squeezedet.data.images import load_image
    from squeezedet.data.synth import check_size
    from squeezedet.deployment.export import export_model
    from squeezedet.deployment.preprocess import render_images
    from squeezedet.models import create_model
    from squeezedet.models.profile import profile_model
    from squeezedet.ops.anchors import scale_anchor_shapes

    if options.batch < 1 or options.runs < 1 or options.warmup < 0:
        raise SqueezeDetError("--batch and --runs must be at least 1, --warmup at least 0")
    if options.threads is not None and options.threads < 1:
        raise SqueezeDetError(f"--threads must be at least 1 (got {options.threads}); leave it "
                              "out for torch's own setting")
    if options.calib_images < 1:
        raise SqueezeDetError(f"--calib-images must be at least 1 (got {options.calib_images})")
    if options.energy_seconds <= 0:
        raise SqueezeDetError(f"--energy-seconds must be positive (got {options.energy_seconds})")
    device = options.device
    if device != "cpu":
        if not device.startswith("cuda"):
            raise SqueezeDetError(f"--device must be cpu, cuda or cuda:N, not {device!r}")
        if not torch.cuda.is_available():
            raise SqueezeDetError(f"--device {device}: this PyTorch sees no CUDA GPU; run on the "
                                  "CPU (leave --device out) or install a CUDA build of torch")
    if options.threads:
        torch.set_num_threads(options.threads)
    rows = parse_rows(options.backends if options.backends is not None
                      else ",".join(default_backends(device)))
    if device != "cpu":
        off = [f"{b}:{p}" for b, p in rows if b not in GPU_BACKENDS]
        if off:
            raise SqueezeDetError(f"--device {device} runs only the eager PyTorch rows "
                                  f"({', '.join(GPU_BACKENDS)}), not {', '.join(off)}")
    photo = load_image(options.image) if options.image else None  # a bad file stops us here
    if options.input_size:
        check_size(parse_size(options.input_size, "--input-size"))
    tmp = tempfile.TemporaryDirectory(prefix="squeezedet-bench-")
    work = Path(tmp.name)
    if options.weights:
        weights = Path(options.weights)
        model = model_from_checkpoint(weights)
        if options.input_size and parse_size(options.input_size) != model.input_size:
            # fully convolutional: the same weights at another input size, anchors scaled along
            size = parse_size(options.input_size)
            resized = create_model(model.name, class_names=model.class_names, input_size=size,
                                   anchor_shapes=scale_anchor_shapes(model.anchor_shapes,
                                                                     model.input_size, size),
                                   normalization=model.normalization,
                                   anchor_centers=model.anchor_centers,
                                   padding=model.metadata()["padding"])
            resized.load_state_dict(model.state_dict())
            log(f"{weights}: trained at {model.input_size[0]}x{model.input_size[1]}, measured "
                  f"at {size[0]}x{size[1]} (anchors scaled)")
            model = resized.eval()
            weights = work / "resized.pt"
            save_checkpoint({"model": model.state_dict(), "meta": model.metadata(),
                             "config": {}}, weights)
    else:
        model = create_model(options.model, input_size=parse_size(options.input_size)
                             if options.input_size else None).eval()
        torch.nn.init.normal_(model.convdet.weight, std=0.01)  # varied scores, as when trained
        weights = work / f"{options.model}.pt"
        save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}},
                        weights)
    prof = profile_model(model)
    cost = None
    if options.energy:
        from squeezedet.deployment.energy import model_cost

        cost = dataclasses.asdict(model_cost(model))
    image = photo if photo is not None else render_images(model.input_size, 1)[0]
    image_file = work / "image.npy"
    np.save(image_file, image)

    from squeezedet import cpu

    # the CPU's matrix-product peaks (a GPU's are not measured: its rows get no %peak)
    peak_detail = ({p: matmul_peak_detail(p) for p in ("fp32", "bf16", "int8")}
                   if device == "cpu" and options.peak else {p: {} for p in ("fp32", "bf16", "int8")})
    peaks = {p: (max(d.values()) if d else None) for p, d in peak_detail.items()}
    size_of = {"torch": prof.params * 4}
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    log(f"model {prof.name}  input {prof.input_size[0]}x{prof.input_size[1]}  batch "
          f"{options.batch}  threads {torch.get_num_threads()}  params {prof.params:,}  GFLOPs "
          f"{prof.gflops:.2f}  image {options.image or 'synthetic scene'} {image.shape[1]}x"
          f"{image.shape[0]}")
    log(f"cpu: {cpu.isa_summary()}")
    log(f"matmul peak GFLOP/s at {torch.get_num_threads()} threads (best of MKL matmul and "
        "oneDNN 1x1 convolution): " + ", ".join(
            f"{p} {v:.0f}" if v else f"{p} n/a" + (" (emulated)" if p == "bf16" and
                                                    not cpu.native_bf16() else "")
            for p, v in peaks.items()))
    for backend, precision in rows:
        need = EXTRA.get(backend)
        if need and not installed(need[0]):
            notes.append(f"{backend}:{precision} skipped: pip install 'squeezedet[{need[1]}]'")
            continue
        spec: dict[str, Any] = {"backend": backend, "precision": precision,
                                "weights": str(weights), "image": str(image_file),
                                "batch": options.batch, "threads": options.threads,
                                "runs": options.runs, "warmup": options.warmup,
                                "device": device, "energy": options.energy,
                                "energy_seconds": options.energy_seconds, "cost": cost}
        file_bytes = size_of["torch"]
        fallback = None
        if backend in ("onnxruntime", "openvino"):
            fmt = "onnx" if backend == "onnxruntime" else "openvino"
            out = work / f"model-{precision}{'.onnx' if fmt == 'onnx' else '.xml'}"
            try:
                # random weights: no parity check, so that an int8 row measures the model a
                # trained checkpoint exports (NNCF's all-int8), not a fallback that random
                # weights' odd activations trigger now and then
                res = export_model(weights, fmt, out, precision=precision,
                                   calib_data=options.calib_data, calib_images=options.calib_images,
                                   dynamic_batch=options.batch > 1, threads=options.threads,
                                   accuracy_data=options.accuracy_data,
                                   check=bool(options.weights) or precision != "int8")
            except SqueezeDetError as exc:
                notes.append(f"{backend}:{precision} export failed: {exc}")
                continue
            log(f"  exported {res.summary()}")
            spec["file"] = str(out)
            fallback = _int8_fallback(res.metadata_path) if fmt == "openvino" else None
            file_bytes = sum(p.stat().st_size for p in res.files if p.suffix != ".json")
        log(f"  running {backend}:{precision} ...")
        row = _run_row(spec, options.in_process)
        if "error" in row:
            notes.append(f"{backend}:{precision} failed: {row['error']}")
            continue
        if fallback:
            row["int8_fallback"] = fallback
            notes.append(f"{backend}:{precision} is not NNCF's all-int8 model: that missed parity "
                         f"on these weights (random weights often do), so this row measures "
                         f"{fallback}; --weights with --calib-data measures the model a trained "
                         "checkpoint exports")
        row["params"] = prof.params
        row["model_mb"] = file_bytes / 2**20
        row["gflops"] = prof.gflops
        fwd_s = row["forward_ms_median"] / 1000 / options.batch
        row["gflops_per_s"] = prof.gflops / fwd_s
        # the peak of the precision the row computes in (an emulated bf16 row or an OpenVINO
        # bf16 model computing in f32 against the fp32 peak)
        computes = row.get("inference_precision")
        peak_prec = ("fp32" if row.get("emulated") or (computes == "f32" and precision == "bf16")
                     else precision)
        peak = (peaks.get(peak_prec) or peaks["fp32"]) if device == "cpu" else None
        row["peak_fraction"] = row["gflops_per_s"] / peak if peak else None
        if row.get("emulated"):
            notes.append(f"{backend}:{precision} is emulated on this CPU (no AVX512-BF16 or AMX): "
                         "slower than fp32, never chosen by auto")
        elif precision == "bf16" and computes == "f32":
            notes.append(f"{backend}:{precision} computes in f32 here: OpenVINO has no bf16 on "
                         "this CPU")
        if row.get("auto_choice"):
            ac = row["auto_choice"]
            timed = ", ".join(f"{n} {v:.1f} ms" for n, v in ac["median_ms"].items())
            notes.append(f"auto chose {ac['choice']} (" + ("cached choice" if ac["cached"] else
                                                          f"measured: {timed}") + ")")
        if row.get("energy"):
            e = row["energy"]
            log(f"    energy: {e['joules_per_image']:.4g} J/image, {e['mean_watts']:.3g} W "
                f"({'estimate' if e['estimated'] else 'measured, ' + e['method']})")
        results.append(row)
    if options.energy:
        energies = [r["energy"] for r in results if r.get("energy")]
        methods = sorted({e["method"] for e in energies})
        if any(e["estimated"] for e in energies):
            notes.append(f"energy: {energies[0]['source']}. J/img (*) is the network forward's "
                         "arithmetic and DRAM energy on an idealised 45 nm chip, W that energy "
                         "over the row's measured time")
        elif energies:
            notes.append(f"energy: measured ({', '.join(methods)}) over each row's whole call "
                         f"(pre, forward, post): {energies[0]['source']}")
    baseline = next((r for r in results if f"{r['backend']}:{r['precision']}" == BASELINE), None)
    base_ms = baseline["total_ms_median"] if baseline else None
    for r in results:
        r["ratio_to_baseline"] = r["total_ms_median"] / base_ms if base_ms else None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "model": prof.name, "input_size": list(prof.input_size), "batch": options.batch,
        "device": device,
        "threads": torch.get_num_threads(), "params": prof.params, "gflops": prof.gflops,
        "baseline": BASELINE, "baseline_ms": base_ms, "matmul_peak_gflops": peaks,
        "matmul_peak_detail": peak_detail,
        "cpu": {**cpu.cpu_identity(), "flags": sorted(cpu.cpu_flags()),
                "usable_cores": cpu.usable_cores()},
        "versions": library_versions(),
        "image": options.image or "synthetic scene", "load_average": list(load) if load else None,
        "rows": results, "notes": notes,
    }
    tmp.cleanup()
    return report


def _int8_fallback(metadata: Path) -> str | None:
    """What an OpenVINO int8 export fell back to when NNCF's all-int8 model missed parity
    (``"ConvDet in float"``, ``"ONNX Runtime's quantiser ..."``), from its metadata; None when it
    did not."""
    try:
        calib = json.loads(metadata.read_text()).get("calibration") or {}
    except (OSError, ValueError):
        return None
    if calib.get("quantizer") == "onnxruntime":
        return "ONNX Runtime's quantiser (conv1 and ConvDet in float)"
    if calib.get("float_layers"):
        return f"NNCF with {', '.join(calib['float_layers'])} in float"
    return None


def row_note(r: dict[str, Any]) -> str:
    """The table's note for a row: ``emulated`` (bf16 without native support), ``runs f32``
    (an OpenVINO bf16 model on a CPU without bf16), ``int8 fallback`` (not NNCF's all-int8
    model: see :func:`_int8_fallback`), ``energy est.`` (its energy is the
    estimate, not a reading), comma-separated; else empty."""
    notes = []
    if r.get("emulated"):
        notes.append("emulated")
    elif r.get("precision") == "bf16" and r.get("inference_precision") == "f32":
        notes.append("runs f32")
    if r.get("int8_fallback"):
        notes.append("int8 fallback")
    if (r.get("energy") or {}).get("estimated"):
        notes.append("energy est.")
    return ", ".join(notes)


def _energy_cells(e: dict[str, Any] | None) -> str:
    if not e:
        return f"{'-':>10}{'-':>7}"
    star = "*" if e["estimated"] else ""
    return f"{e['joules_per_image']:>9.4g}{star or ' '}{e['mean_watts']:>7.3g}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The results as a fixed-width text table (latencies in ms: median / p90 / min)."""
    energy = any(r.get("energy") for r in rows)
    head = (f"{'backend':<12}{'prec':<6}{'pre ms':>18}{'forward ms':>21}{'post ms':>18}"
            f"{'total ms':>21}{'FPS':>7}{'ratio':>7}{'RSS MiB':>9}{'MB':>6}{'GF/s':>7}{'%peak':>7}"
            + (f"{'J/img':>10}{'W':>7}" if energy else "") + "  note")
    lines = [head, "-" * len(head)]

    def trio(r: dict[str, Any], stage: str) -> str:
        return (f"{r[f'{stage}_ms_median']:.1f}/{r[f'{stage}_ms_p90']:.1f}/"
                f"{r[f'{stage}_ms_min']:.1f}")

    for r in rows:
        ratio = f"{r['ratio_to_baseline']:.3f}" if r.get("ratio_to_baseline") else "-"
        frac = f"{100 * r['peak_fraction']:.0f}" if r.get("peak_fraction") else "-"
        lines.append(
            f"{r['backend']:<12}{r['precision']:<6}{trio(r, 'pre'):>18}{trio(r, 'forward'):>21}"
            f"{trio(r, 'post'):>18}{trio(r, 'total'):>21}{r['fps']:>7.1f}{ratio:>7}"
            f"{r['peak_rss_mib']:>9.0f}{r['model_mb']:>6.1f}{r['gflops_per_s']:>7.1f}{frac:>7}"
            + (_energy_cells(r.get("energy")) if energy else "")
            + f"  {row_note(r)}".rstrip()
        )
    return "\n".join(lines)


def _worker(argv: list[str]) -> int:
    """Entry point of the per-row process: ``--worker SPEC_JSON`` → one JSON line on stdout."""
    import warnings

    warnings.simplefilter("ignore")
    spec = json.loads(argv[argv.index("--worker") + 1])
    print(json.dumps(measure_row(spec)))
    return 0


if __name__ == "__main__":  # the per-row worker process
    sys.exit(_worker(sys.argv))
