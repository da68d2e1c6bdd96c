"""``backend="auto"``: the fastest usable runner, measured on this machine.

For a ``.pt`` checkpoint on the CPU, :func:`fastest_cpu_runner` times eager channels-last PyTorch
and the model converted in memory to each installed runtime (ONNX Runtime, OpenVINO; bf16 variants
too when bf16 is asked for and the CPU has it natively), each checked against PyTorch on a test
image, and keeps the fastest; for an exported file that several installed backends open (an
``.onnx``: OpenVINO and ONNX Runtime), :func:`fastest_file_runner` times them. The choice is
cached per model, input size, precision, threads, CPU and runtime versions
(:mod:`squeezedet.deployment.tuning`), so it is measured once. ``backend="torch"`` skips the
conversion (it costs about a second and some memory at start-up).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from squeezedet import cpu
from squeezedet.deployment.runners.conversion import Conversion, probe_image
from squeezedet.deployment.runners.protocol import (
    Backend,
    Runner,
    light_torch_threads,
    read_metadata,
    threads_or_default,
    warn_if_emulated,
)
from squeezedet.deployment.runners.registry import BACKENDS, CANDIDATE_BUILDERS
from squeezedet.deployment.runners.torch_runner import TorchRunner
from squeezedet.errors import SqueezeDetError, installed, require


def _usable(backend: Backend) -> bool:
    return backend.module is None or installed(backend.module)


def auto_candidates(precision: str = "fp32") -> list[tuple[str, str]]:
    """The ``(backend, precision)`` pairs ``auto`` times for a checkpoint on the CPU: fp32 in eager
    channels-last PyTorch and in each installed runtime that converts a checkpoint (ONNX Runtime,
    OpenVINO); for ``precision="bf16"`` (bf16 allowed) also the backends that convert to bf16
    (PyTorch, OpenVINO) — only where the CPU computes bf16 natively
    (:func:`squeezedet.cpu.native_bf16`); elsewhere a warning, and fp32."""
    if precision not in ("fp32", "bf16"):
        raise SqueezeDetError(f"auto runs a checkpoint in fp32 or bf16, not {precision!r}; int8 "
                              "comes from an int8 export (squeezedet export --precision int8)")
    backends = [name for name in CANDIDATE_BUILDERS if _usable(BACKENDS[name])]
    pairs = [(b, "fp32") for b in backends]
    if precision == "bf16":
        if cpu.native_bf16():
            pairs += [(b, "bf16") for b in backends if "bf16" in BACKENDS[b].convert_precisions]
        else:
            warnings.warn("bf16 is emulated on this CPU (no AVX512-BF16 or AMX) and slower than "
                          "fp32: auto runs fp32", stacklevel=3)
    return pairs


def _checkpoint_identity(checkpoint: str | Path | dict[str, Any], ckpt: dict[str, Any]) -> str:
    from squeezedet.deployment.tuning import file_identity, weights_identity

    if isinstance(checkpoint, (str, Path)):
        return file_identity(checkpoint)
    return weights_identity(ckpt["model"], ckpt.get("meta") or {})


def _timing_input(runner: Any, x: Tensor) -> Tensor:
    """``x`` as the Detector hands it to ``runner``: uint8 channels-last for eager PyTorch (see
    :func:`~squeezedet.deployment.preprocess.runner_input`), float32 NCHW for the others."""
    if isinstance(runner, TorchRunner):
        nhwc = x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return nhwc.permute(0, 3, 1, 2)
    return x


def _key(kind: str, model: str, input_size: Any, precision: str,
         threads: int | None) -> dict[str, Any]:
    """What a measured choice depends on (:func:`squeezedet.deployment.tuning.choose`)."""
    from squeezedet.deployment import tuning

    return {"kind": kind, "model": model, "input_size": list(input_size), "precision": precision,
            "threads": threads_or_default(threads), "cpu": cpu.cpu_identity(),
            "versions": tuning.runtime_versions()}


def _chosen(choice: Any) -> Runner:
    """The chosen runner, with ``auto_choice`` saying what was chosen and how."""
    runner = choice.runner
    runner.auto_choice = {"choice": choice.name, "cached": choice.cached,
                          "median_ms": choice.median_ms}
    return runner


def fastest_cpu_runner(checkpoint: str | Path | dict[str, Any], *, precision: str = "fp32",
                       threads: int | None = None, cache: Any = None,
                       clock: Callable[[], float] | None = None) -> Runner:
    """The fastest usable CPU runner for a checkpoint, measured here (``backend="auto"``).

    Candidates: :func:`auto_candidates`. Each converted candidate is built in memory (no file is
    written) and checked on a test image against the PyTorch fp32 output (within
    :data:`~squeezedet.deployment.runners.conversion.AUTO_PARITY_RTOL`, bf16: 5 % of the output's
    magnitude); one that is missing, fails or disagrees is left out with a warning. The usable ones
    are timed (a few warm runs each, median; :func:`squeezedet.deployment.tuning.choose`) and the
    fastest returned; the choice is cached per model, input size, precision, thread count, CPU and
    runtime versions, so the next call times nothing. Eager channels-last PyTorch is always a
    candidate and the fallback. ``SQUEEZEDET_NO_CONVERT=1``: eager PyTorch without converting or
    timing anything. ``cache``: a :class:`~squeezedet.deployment.tuning.ChoiceCache` (default: the
    user's); ``clock``: the timer's clock (default :func:`time.perf_counter`).
    """
    from squeezedet.checkpoint import load_checkpoint
    from squeezedet.deployment import tuning

    ckpt = load_checkpoint(checkpoint, mmap=True) if not isinstance(checkpoint, dict) else checkpoint
    pairs = auto_candidates(precision)
    if os.environ.get("SQUEEZEDET_NO_CONVERT") or pairs == [("torch", "fp32")]:
        return TorchRunner(ckpt, "cpu", precision="fp32")
    conv = Conversion(ckpt)
    x = conv.x

    def candidate(backend: str, prec: str) -> tuning.Candidate:
        name = f"{backend}:{prec}"
        reference = backend == "torch" and prec == "fp32"  # the reference itself
        return tuning.Candidate(
            name=name,
            build=lambda: CANDIDATE_BUILDERS[backend](conv, prec, threads),
            check=(lambda r: None) if reference else (lambda r: conv.check(r, name, prec)),
            call=lambda r: r(_timing_input(r, x)),
            context=light_torch_threads,
        )

    candidates = [candidate(b, p) for b, p in pairs]
    key = _key("checkpoint", _checkpoint_identity(checkpoint, ckpt), conv.input_size, precision,
               threads)
    return _chosen(tuning.choose(candidates, key, cache=cache, clock=clock,
                                 fallback=candidates[0]))


def convert_checkpoint(checkpoint: str | Path | dict[str, Any], backend: str, *,
                       precision: str = "fp32", threads: int | None = None) -> Runner:
    """A checkpoint converted in memory to ``backend`` (one with :attr:`Backend.convert`, e.g.
    ``onnxruntime`` or ``openvino``) and checked against PyTorch as ``auto`` checks it; errors are
    raised, nothing is timed."""
    from squeezedet.checkpoint import load_checkpoint

    spec = BACKENDS[backend]
    if spec.convert is None:
        raise SqueezeDetError(f"the {backend} backend needs an exported model")
    if precision in ("fp32", "bf16") and precision not in spec.convert_precisions:
        raise SqueezeDetError(f"{backend} runs {precision} only from an exported model")
    if precision not in ("fp32", "bf16"):
        raise SqueezeDetError(f"a checkpoint runs in fp32 or bf16, not {precision!r}; int8 comes "
                              "from an int8 export (squeezedet export --precision int8)")
    if spec.module is not None:
        require(spec.module, spec.extra or spec.module)
    warn_if_emulated(precision)
    ckpt = load_checkpoint(checkpoint, mmap=True) if not isinstance(checkpoint, dict) else checkpoint
    conv = Conversion(ckpt)
    try:
        runner = CANDIDATE_BUILDERS[backend](conv, precision, threads)
    except SqueezeDetError:
        raise
    except Exception as exc:  # noqa: BLE001 - runtime failures become one clear line
        raise SqueezeDetError(f"{backend} runtime unusable ({exc})") from None
    problem = conv.check(runner, backend, precision)
    if problem is not None:
        raise SqueezeDetError(problem)
    return runner


def fastest_file_runner(path: Path, device: str, *, precision: str | None = None,
                        threads: int | None = None) -> Runner:
    """An exported file in the fastest installed backend that opens it. With one such backend
    (or ``SQUEEZEDET_NO_CONVERT=1``: the first) nothing is timed; several (an ``.onnx``: OpenVINO,
    ONNX Runtime) are measured and the choice cached like a checkpoint's (all run the same file,
    whose parity the export checked)."""
    from squeezedet.deployment import tuning

    suffix = path.suffix.lower()
    opening = [b for b in BACKENDS.values() if suffix in b.suffixes]
    usable = [b for b in opening if _usable(b)]
    if not usable and len(opening) > 1:
        raise SqueezeDetError(
            f"{path}: running a {suffix} model needs " + " or ".join(b.label for b in opening)
            + ": pip install " + " or ".join(f"'squeezedet[{b.extra}]'" for b in opening))
    if len(usable) <= 1 or os.environ.get("SQUEEZEDET_NO_CONVERT"):
        return (usable or opening)[0].open(path, device, precision=precision, threads=threads)
    meta = read_metadata(path)
    x = probe_image(int(meta["input_size"][0]), int(meta["input_size"][1]))

    def candidate(backend: Backend) -> tuning.Candidate:
        return tuning.Candidate(
            name=backend.name,
            build=lambda: backend.open(path, device, precision=precision, threads=threads),
            check=lambda r: None if r(x).shape[0] == 1 else "wrong batch size",
            call=lambda r: r(x), context=light_torch_threads)

    key = _key(suffix.lstrip("."), tuning.file_identity(path), meta["input_size"],
               precision or meta.get("precision", "fp32"), threads)
    return _chosen(tuning.choose([candidate(b) for b in usable], key))
