"""Training-step speed on this CPU, against the arithmetic limit of its fp32 matrix products.

    OMP_NUM_THREADS=2 python scripts/train_speed.py --size 624x192 --batch 8 --steps 6
    OMP_NUM_THREADS=2 python scripts/train_speed.py --size 1248x384 --batch 4 --profile prof.txt
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        OMP_NUM_THREADS=2 python scripts/train_speed.py ...      # as on an AVX2-only CPU

Times ``engine.train_step`` (forward, target assignment, loss, backward, per-tensor clipping,
AdamW) on batches of rendered synthetic scenes with their boxes, as the demo trains (channels-last,
dropout 0.2, bf16 autocast only where the CPU has native bf16 unless --fp32), and reports the
median step, images/s and the share of the limit: training FLOPs (forward FLOPs × 3 − the first
convolution's input gradient, which is not computed) over the fp32 matrix-product peak of
``squeezedet benchmark`` at this thread count. ``--layout nchw`` trains without channels-last for
comparison. The process CPU time a step is printed too: with one thread it is the compute time
even while other programs share the CPU (wall time then is not). ``--profile FILE`` writes
torch.profiler's table of the timed steps (self CPU time per op, with input shapes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from squeezedet import cpu
from squeezedet.config import TrainConfig
from squeezedet.data.synth import parse_size
from squeezedet.deployment.benchmark import matmul_peak_gflops
from squeezedet.engine import loss_from_config, make_optimizer, mixed_precision, train_step
from squeezedet.models import create_model
from squeezedet.models.layers import with_memory_format
from squeezedet.models.profile import count_flops


def synthetic_batches(size: tuple[int, int], batch: int, n: int) -> list[tuple[torch.Tensor, list]]:
    """``n`` batches of rendered driving scenes resized to ``size`` with their boxes."""
    from squeezedet.data.synth_scene import render_scene
    from squeezedet.data.transforms import Resize

    resize = Resize(size)
    classes = {"Car": 0, "Pedestrian": 1, "Cyclist": 2}
    out = []
    for b in range(n):
        images, targets = [], []
        for i in range(batch):
            image, objects = render_scene(1000 * b + i, (1242, 375))[:2]
            import numpy as np

            arr = np.asarray(image.convert("RGB"))
            boxes = torch.tensor([o.box for o in objects if o.type in classes] or [[0, 0, 1, 1]],
                                 dtype=torch.float32)
            labels = torch.tensor([classes[o.type] for o in objects if o.type in classes] or [0])
            resized, tgt = resize(arr, {"boxes": boxes, "labels": labels})
            images.append(torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float())
            targets.append(tgt)
        out.append((torch.stack(images), targets))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="624x192")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps (after 2 warm-up)")
    parser.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast even if native")
    parser.add_argument("--profile", help="write the profiler table here")
    args = parser.parse_args()
    size = parse_size(args.size)
    torch.manual_seed(0)
    cfg = TrainConfig(input_size=size, optimizer="adamw", lr=1e-3, dropout=0.2, batch_size=args.batch,
                      amp=not args.fp32, warmup_steps=0)
    model = create_model("squeezedet", input_size=size, dropout=0.2)
    if args.layout == "nhwc":
        model = with_memory_format(model, torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    loss_fn = loss_from_config(cfg)
    device = torch.device("cpu")
    batches = synthetic_batches(size, args.batch, 2)

    cpu_times: list[float] = []

    def step(i: int) -> float:
        images, targets = batches[i % len(batches)]
        c, t = time.process_time(), time.perf_counter()
        train_step(model, images, targets, loss_fn, optimizer, cfg, i, device)
        cpu_times.append(time.process_time() - c)
        return time.perf_counter() - t

    for i in range(2):
        step(i)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            times = [step(i) for i in range(args.steps)]
    else:
        times = [step(i) for i in range(args.steps)]
    med = statistics.median(times)
    cpu_med = statistics.median(cpu_times[-len(times):])
    fwd = count_flops(model, size) / 1e9
    first = model.backbone.features[0]
    h1 = -(-size[1] // 2)
    w1 = -(-size[0] // 2)
    first_dgrad = 2 * first.in_channels * first.out_channels * 9 * h1 * w1 / 1e9
    train_gflop = args.batch * (3 * fwd - first_dgrad)
    peak = matmul_peak_gflops("fp32")
    amp = mixed_precision(device, cfg.amp, training=True)
    print(f"cpu: {cpu.isa_summary()}; threads {torch.get_num_threads()}; layout {args.layout}; "
          f"autocast {amp or 'none (fp32)'}")
    print(f"{size[0]}x{size[1]} batch {args.batch}: step median {med:.3f} s (min {min(times):.3f}, "
          f"max {max(times):.3f}) = {args.batch / med:.2f} img/s; {train_gflop:.1f} GFLOP a step; "
          f"fp32 peak {peak:.0f} GFLOP/s -> limit {train_gflop / peak:.3f} s a step, "
          f"{100 * train_gflop / peak / med:.0f} % of it; CPU time a step {cpu_med:.3f} s "
          f"(all threads; on a shared machine with 1 thread the load-independent figure)")
    if args.profile:
        table = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=60, max_name_column_width=40,
            max_shapes_column_width=80)
        with open(args.profile, "w") as f:
            f.write(table)
        print(f"wrote {args.profile}")


if __name__ == "__main__":
    main()
