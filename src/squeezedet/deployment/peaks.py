"""The matrix-product peaks of this CPU: what a network's convolutions can reach at most, the
denominator of the benchmark's ``%peak`` column."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any


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
