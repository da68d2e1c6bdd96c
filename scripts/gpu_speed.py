"""GPU timings of SqueezeDet: inference forward and training steps, NCHW vs channels-last,
fp32 vs bf16 autocast, and CUDA-graph replay for batch-1 inference.

    python scripts/gpu_speed.py [--model squeezedet] [--json OUT]

Times come from CUDA events (median of --runs after --warmup), so they are GPU times of the
network alone (no pre- or post-processing, no host transfer). Random weights: speed does not
depend on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable

import torch

from squeezedet.config import TrainConfig
from squeezedet.engine import loss_from_config, make_optimizer, train_step
from squeezedet.models import create_model


def cuda_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    """Median milliseconds of ``fn`` on the GPU, by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def inference_rows(name: str, size: tuple[int, int], runs: int, warmup: int) -> list[dict]:
    rows = []
    for batch in (1, 32):
        for layout in ("nchw", "nhwc"):
            for dtype in ("fp32", "bf16"):
                model = create_model(name, input_size=size).cuda().eval()
                x = torch.rand(batch, 3, size[1], size[0], device="cuda")
                if layout == "nhwc":
                    model = model.to(memory_format=torch.channels_last)
                    x = x.contiguous(memory_format=torch.channels_last)

                def fwd(model=model, x=x, dtype=dtype) -> torch.Tensor:
                    with torch.inference_mode(), torch.autocast(
                            "cuda", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                        return model(x)

                ms = cuda_ms(fwd, runs, warmup)
                rows.append({"what": "inference", "batch": batch, "layout": layout,
                             "precision": dtype, "ms": ms, "images_per_s": batch * 1000 / ms})
                if batch == 1:  # the same, replayed as one CUDA graph (no launch overhead)
                    static_x = x.clone()
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):
                        for _ in range(3):
                            fwd(model, static_x)
                    torch.cuda.current_stream().wait_stream(stream)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        fwd(model, static_x)
                    ms = cuda_ms(graph.replay, runs, warmup)
                    rows.append({"what": "inference+cudagraph", "batch": 1, "layout": layout,
                                 "precision": dtype, "ms": ms, "images_per_s": 1000 / ms})
    return rows


def training_rows(name: str, size: tuple[int, int], runs: int, warmup: int) -> list[dict]:
    rows = []
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    for batch in (8, 32):
        for layout in ("nchw", "nhwc"):
            for amp in (False, True):
                cfg = TrainConfig(model=name, input_size=size, batch_size=batch, amp=amp,
                                  optimizer="adamw", lr=1e-4, warmup_steps=0)
                model = create_model(name, input_size=size).to(device)
                if layout == "nhwc":
                    model = model.to(memory_format=torch.channels_last)
                optimizer = make_optimizer(model, cfg)
                loss_fn = loss_from_config(cfg)
                images = torch.rand(batch, 3, size[1], size[0], device=device)
                if layout == "nhwc":
                    images = images.contiguous(memory_format=torch.channels_last)
                w, h = size
                box = torch.tensor([[0.2 * w, 0.3 * h, 0.5 * w, 0.8 * h]], device=device)
                targets = [{"boxes": box, "labels": torch.zeros(1, dtype=torch.long,
                                                                device=device)}] * batch

                def step(model=model, optimizer=optimizer, loss_fn=loss_fn, cfg=cfg,
                         images=images, targets=targets) -> None:
                    train_step(model, images, targets, loss_fn, optimizer, cfg, 10**6, device)

                ms = cuda_ms(step, runs, warmup)
                rows.append({"what": "train step", "batch": batch, "layout": layout,
                             "precision": "bf16" if amp else "fp32", "ms": ms,
                             "images_per_s": batch * 1000 / ms})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="squeezedet")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_speed.py: PyTorch sees no CUDA GPU here")
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__}")
    rows = inference_rows(args.model, (1248, 384), args.runs, args.warmup)
    rows += training_rows(args.model, (624, 192), args.runs // 2, args.warmup)
    print(f"{'what':<20} {'batch':>5} {'layout':>6} {'prec':>5} {'ms':>8} {'img/s':>9}")
    for r in rows:
        print(f"{r['what']:<20} {r['batch']:>5} {r['layout']:>6} {r['precision']:>5} "
              f"{r['ms']:>8.2f} {r['images_per_s']:>9.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
