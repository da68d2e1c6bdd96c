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
comparison; ``--system-malloc`` leaves glibc's malloc as it is (training keeps freed memory for
reuse: :func:`squeezedet.cpu.keep_freed_memory`). The process CPU time a step is printed too:
with one thread it is the compute time even while other programs share the CPU (wall time then
is not). ``--profile FILE`` writes torch.profiler's table of the timed steps (self CPU time per
op, with input shapes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import torch

from squeezedet import cpu
from squeezedet.config import TrainConfig, parse_size
from squeezedet.deployment.peaks import matmul_peak_gflops
from squeezedet.engine import loss_from_config, make_optimizer, mixed_precision, train_step
from squeezedet.models import create_model
from squeezedet.models.layers import with_memory_format
from squeezedet.models.profile import count_flops


def synthetic_batches(size: tuple[int, int], batch: int, n: int) -> list[tuple[torch.Tensor, list]]:
    """``n`` batches of synthetic driving scenes rendered at ``size`` with their boxes."""
    import numpy as np

    from squeezedet.data.synth import render_scene

    classes = {"Car": 0, "Pedestrian": 1, "Cyclist": 2}
    out = []
    for b in range(n):
        images, targets = [], []
        for i in range(batch):
            image, objects = render_scene(1000 * b + i, size)
            objs = [o for o in objects if o.type in classes]
            images.append(torch.from_numpy(np.asarray(image.convert("RGB")).copy())
                          .permute(2, 0, 1).float())
            targets.append({"boxes": torch.tensor([list(o.box) for o in objs] or [[0.0, 0, 1, 1]],
                                                  dtype=torch.float32),
                            "labels": torch.tensor([classes[o.type] for o in objs] or [0])})
        out.append((torch.stack(images), targets))
    return out


def cpu_clock_peak() -> float:
    """The fp32 peak of :func:`~squeezedet.deployment.peaks.peak_kernels` timed by process CPU
    time (one thread: unaffected by other programs sharing the CPU), GFLOP/s."""
    from squeezedet.deployment.peaks import peak_kernels

    best = 0.0
    for _, fn, flops in peak_kernels("fp32"):
        fn()
        fn()
        for _ in range(5):
            c = time.process_time()
            fn()
            best = max(best, flops / max(time.process_time() - c, 1e-9) / 1e9)
    return best


def conv_table(prof: Any, steps: int) -> str:
    """Each convolution's forward and backward time per step and its GFLOP/s, from the
    profiler's events grouped by input shape (backward: weight and input gradients, or the weight
    gradient alone for the 3-channel first convolution, whose input needs none)."""
    lines = []
    for ev in prof.key_averages(group_by_input_shape=True):
        if ev.key not in ("aten::mkldnn_convolution", "aten::convolution_backward",
                          "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward"):
            continue
        shapes = [s for s in ev.input_shapes if s]
        backward = "backward" in ev.key
        if backward:
            grad, weight = shapes[0], shapes[2]
            n, _, oh, ow = grad
        else:
            x, weight = shapes[0], shapes[1]
            n, _, h, w = x
            stride = 2 if weight[1] == 3 else 1
            oh, ow = -(-h // stride), -(-w // stride)
        oc, ic, kh, kw = weight
        flop = 2 * n * oc * ic * kh * kw * oh * ow * (2 if backward and ic != 3 else 1)
        ms = ev.self_cpu_time_total / 1000 / steps
        lines.append((ms, f"{'bwd' if backward else 'fwd'} {ic:>4}->{oc:<4} {kh}x{kw} "
                          f"{n}x{oh}x{ow:<6} {ms:8.1f} ms  {flop / 1e9 * ev.count / steps:6.2f} "
                          f"GFLOP  {flop * ev.count / steps / 1e6 / max(ms, 1e-9):6.1f} GFLOP/s  "
                          f"{ev.key.removeprefix('aten::')}"))
    total = sum(ms for ms, _ in lines)
    return "\n".join(t for _, t in sorted(lines, reverse=True)) + f"\nall convolutions {total:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="624x192")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps (after 2 warm-up)")
    parser.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast even if native")
    parser.add_argument("--profile", help="write the profiler table here")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc as it is (a training step keeps freed "
                             "memory: squeezedet.cpu.keep_freed_memory)")
    parser.add_argument("--relu-before-pool", action="store_true",
                        help="SqueezeNet's original conv1 → ReLU → pool order (for an A/B)")
    args = parser.parse_args()
    size = parse_size(args.size, "--size")
    if args.system_malloc:  # train_step would keep freed memory
        os.environ[cpu.KEEP_FREED_MEMORY_VARIABLE] = "0"
    torch.manual_seed(0)
    cfg = TrainConfig(input_size=size, optimizer="adamw", lr=1e-3, dropout=0.2, batch_size=args.batch,
                      amp=not args.fp32, warmup_steps=0)
    model = create_model("squeezedet", input_size=size, dropout=0.2)
    if args.relu_before_pool:
        f = model.backbone.features
        f[1], f[2] = f[2], f[1]
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
    cpu_peak = cpu_clock_peak() if torch.get_num_threads() == 1 else None
    amp = mixed_precision(device, cfg.amp, training=True)
    print(f"cpu: {cpu.isa_summary()}; threads {torch.get_num_threads()}; layout {args.layout}; "
          f"autocast {amp or 'none (fp32)'}; "
          f"freed memory {'kept' if cpu.keep_freed_memory() else 'returned (glibc default)'}")
    print(f"{size[0]}x{size[1]} batch {args.batch}: step median {med:.3f} s (min {min(times):.3f}, "
          f"max {max(times):.3f}) = {args.batch / med:.2f} img/s; {train_gflop:.1f} GFLOP a step; "
          f"fp32 peak {peak:.0f} GFLOP/s -> limit {train_gflop / peak:.3f} s a step, "
          f"{100 * train_gflop / peak / med:.0f} % of it; CPU time a step {cpu_med:.3f} s "
          f"(all threads; on a shared machine with 1 thread the load-independent figure)")
    if cpu_peak:
        print(f"one thread, by CPU time (load-independent): fp32 peak {cpu_peak:.0f} GFLOP/s -> "
              f"limit {train_gflop / cpu_peak:.3f} s a step; {train_gflop / cpu_med:.1f} GFLOP/s = "
              f"{100 * train_gflop / cpu_peak / cpu_med:.0f} % of it")
    if args.profile:
        table = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=60, max_name_column_width=40,
            max_shapes_column_width=80)
        convs = conv_table(prof, args.steps)
        with open(args.profile, "w") as f:
            f.write(table + "\n\nconvolutions (per step, by time; GFLOP/s of each)\n" + convs + "\n")
        print(convs)
        print(f"wrote {args.profile}")


if __name__ == "__main__":
    main()
