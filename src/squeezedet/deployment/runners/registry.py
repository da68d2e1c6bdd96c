"""The backends, by name: adding one is a module with a ``BACKEND``
(:class:`~squeezedet.deployment.runners.protocol.Backend`) and one line in :data:`BACKENDS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from squeezedet.deployment.runners import (
    executorch_runner,
    onnxruntime_runner,
    openvino_runner,
    torch_runner,
    torchscript_runner,
)
from squeezedet.deployment.runners.protocol import Backend, Runner

#: backend name → :class:`Backend`; for an exported file, ``backend="auto"`` considers the
#: backends that open its suffix in this order (OpenVINO before ONNX Runtime for ``.onnx``).
BACKENDS: dict[str, Backend] = {b.name: b for b in (
    torch_runner.BACKEND,
    torchscript_runner.BACKEND,
    openvino_runner.BACKEND,
    onnxruntime_runner.BACKEND,
    executorch_runner.BACKEND,
)}

#: checkpoint files: what the torch backend opens, and what the converting backends convert
CHECKPOINT_SUFFIXES = torch_runner.CHECKPOINT_SUFFIXES

#: backend → builder(conversion, precision, threads) of the runners ``auto`` compares for a
#: checkpoint (the backends with :attr:`Backend.convert`), PyTorch first: the reference and fallback
CANDIDATE_BUILDERS: dict[str, Callable[[Any, str, int | None], Runner]] = {
    b.name: b.convert for b in sorted(BACKENDS.values(), key=lambda b: b.module is not None)
    if b.convert is not None
}


def suffixes() -> set[str]:
    """Every file type some backend opens."""
    return {s for b in BACKENDS.values() for s in b.suffixes}
