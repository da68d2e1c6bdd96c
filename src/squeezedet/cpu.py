"""What the CPU at hand computes natively, and who it is.

Two questions decide fast paths on a CPU and must be answered for the machine at hand, not the one
the code was written on:

- :func:`native_bf16`: does this CPU compute bf16 in hardware (AVX512-BF16 or AMX)? Elsewhere bf16
  is emulated — converted to fp32 and back around fp32 arithmetic — and slower than fp32, so it is
  never chosen or defaulted there (training autocast, the benchmark's default rows, ``auto``).
- :func:`cpu_identity`: the CPU model, its feature flags and the instruction-set limits set in the
  environment, for caches of measured choices (:mod:`squeezedet.deployment.tuning`).

Instruction-set limits (to reproduce another CPU's behaviour on this one) are honoured:
``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA`` (oneDNN: PyTorch's convolutions), ``ATEN_CPU_CAPABILITY``
(PyTorch's own vectorised kernels), ``OV_CPU_MAX_ISA`` (OpenVINO's CPU plugin, set together with
``ONEDNN_MAX_CPU_ISA``), ``MKL_ENABLE_INSTRUCTIONS`` (MKL's matrix products).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path
from typing import Any

#: environment variables that limit the instruction sets the libraries use
ISA_LIMIT_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                       "OV_CPU_MAX_ISA", "MKL_ENABLE_INSTRUCTIONS")

#: oneDNN ISA limits below the first level with bf16 arithmetic (``AVX512_CORE_BF16``); a limit not
#: in this list (a higher level, ``ALL``, or a name this list does not know) leaves bf16 alone
_BELOW_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                         "AVX512_CORE_VNNI"})


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (``avx2``, ``avx512_bf16``, ``amx_bf16``, …);
    empty where ``/proc/cpuinfo`` is missing."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def _hardware_bf16() -> bool:
    """The CPU has bf16 arithmetic instructions (x86: AVX512-BF16 or AMX-BF16)."""
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None and probe():
        return True
    flags = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def _onednn_limit_allows_bf16() -> bool:
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name, "").strip().upper()
        if value:
            return value not in _BELOW_BF16
    return True


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively for PyTorch (oneDNN) — x86: AVX512-BF16 or AMX in
    the hardware and not excluded by ``ONEDNN_MAX_CPU_ISA``; elsewhere oneDNN's own answer.

    PyTorch's ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` alone is not enough: it is true on
    any AVX-512 CPU (Skylake, Cascade Lake, Ice Lake), where oneDNN emulates bf16 and a bf16
    forward is slower than fp32.
    """
    import torch

    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    if not onednn:
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "i386"):
        return _hardware_bf16() and _onednn_limit_allows_bf16()
    return True


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU model as the system names it (``"Intel(R) Xeon(R) Platinum 8488C"``)."""
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def isa_summary() -> str:
    """One line for reports: CPU model, PyTorch's vector capability, native bf16, and any
    instruction-set limit set in the environment."""
    import torch

    limits = [f"{k}={os.environ[k]}" for k in ISA_LIMIT_VARIABLES if os.environ.get(k)]
    parts = [cpu_name(), f"torch {torch.backends.cpu.get_cpu_capability()}",
             "bf16 native" if native_bf16() else "bf16 emulated"]
    return ", ".join(parts + limits)


def cpu_identity() -> dict[str, Any]:
    """What a measured speed depends on, CPU-wise: architecture, model, a hash of the feature
    flags, PyTorch's vector capability, native bf16 and the instruction-set limits of the
    environment (:data:`ISA_LIMIT_VARIABLES`)."""
    import torch

    flags = " ".join(sorted(cpu_flags()))
    return {
        "machine": platform.machine(),
        "model": cpu_name(),
        "flags_sha1": hashlib.sha1(flags.encode()).hexdigest()[:16],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(),
        "isa_limits": {k: os.environ[k] for k in ISA_LIMIT_VARIABLES if os.environ.get(k)},
    }


#: set to ``0`` to leave the C allocator as it is (see :func:`keep_freed_memory`)
KEEP_FREED_MEMORY_VARIABLE = "SQUEEZEDET_KEEP_FREED_MEMORY"

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc keep the memory of freed tensors for the next ones, not give it back to Linux.

    A CPU training step allocates and frees tensors of tens of MiB (a 624x192 batch of 8: 61 MiB
    for conv1's output and its gradient). glibc serves blocks above its largest mmap threshold
    (32 MiB) with fresh pages from the kernel and unmaps them when freed, so every step pays
    the kernel for faulting in and zero-filling them again: 10-12 % of a 624x192/8 or 1248x384/4
    step measured narrowed to AVX2 (``scripts/train_speed.py --system-malloc`` compares). Here
    every block comes from the heap (``M_MMAP_MAX`` 0) and freed heap memory is kept (a
    2 GiB ``M_TRIM_THRESHOLD``): the process keeps its peak memory while it runs, as a
    caching allocator would (400 steps of mixed batch shapes: 13 % faster, 7 % more resident
    memory). Smaller batches (432x128/4) are unaffected either way.

    Process-wide and once; a no-op (returns False) off glibc, where the environment already
    tunes malloc (``MALLOC_*_`` variables, ``glibc.malloc`` tunables, or jemalloc, tcmalloc or
    mimalloc in ``LD_PRELOAD``), or where :data:`KEEP_FREED_MEMORY_VARIABLE` is ``0``. Returns
    whether the settings were made.
    """
    if os.environ.get(KEEP_FREED_MEMORY_VARIABLE, "").strip() in ("0", "false", "no", "off"):
        return False
    if (any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")):
        return False
    if any(a in os.environ.get("LD_PRELOAD", "") for a in ("jemalloc", "tcmalloc", "mimalloc")):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
