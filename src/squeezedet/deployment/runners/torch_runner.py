"""The ``torch`` backend: a checkpoint (``.pt``) in eager PyTorch.

``precision="bf16"`` runs under CPU/CUDA bf16 autocast, ``channels_last`` (default on CPU) uses
oneDNN's fast NHWC convolutions and ``compile=True`` wraps the model in :func:`torch.compile`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from squeezedet.deployment.runners.conversion import Conversion
from squeezedet.deployment.runners.protocol import Backend, Runner, warn_if_emulated
from squeezedet.errors import SqueezeDetError

#: checkpoint files (``.sqz``: ``squeezedet compress``)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".sqz")


class TorchRunner:
    """Eager PyTorch execution of a checkpoint.

    Args:
        checkpoint: a ``.pt`` path or a loaded checkpoint dict.
        device: ``"cpu"``, ``"cuda"``, …
        precision: ``"fp32"`` or ``"bf16"`` (autocast; output returned as float32).
        channels_last: NHWC memory format (default: on for the CPU, where oneDNN is ~2–4× faster
            with it for this network).
        compile: wrap the model in :func:`torch.compile` (slow first call).
        banded: run under ``torch.inference_mode``, where SqueezeNet backbones compute their first
            stage in horizontal bands on large inputs (exact; faster and leaner, see
            :func:`~squeezedet.models.backbones.banded_forward`); ``False``: the plain layer-by-layer
            forward under ``torch.no_grad`` (the benchmark's baseline).
    """

    runs_torch = True

    def __init__(self, checkpoint: str | Path | dict[str, Any], device: str = "cpu", *,
                 precision: str = "fp32", channels_last: bool | None = None,
                 compile: bool = False, banded: bool = True) -> None:
        from squeezedet.checkpoint import model_from_checkpoint
        from squeezedet.models.layers import with_memory_format

        if precision not in ("fp32", "bf16"):
            raise SqueezeDetError(
                f"the torch backend runs fp32 or bf16, not {precision!r}; for int8 export the "
                "model (squeezedet export --format onnx --precision int8)"
            )
        self.device = torch.device(device)
        self.precision = precision
        #: bf16 on a CPU that converts it to fp32 and back around fp32 arithmetic (slower)
        self.emulated = warn_if_emulated(precision, self.device)
        self.model = model_from_checkpoint(checkpoint).to(self.device).eval()
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        if self.channels_last:
            self.model = with_memory_format(self.model, torch.channels_last)
        self.meta = self.model.metadata()
        self.banded = banded
        self._forward: Callable[[Tensor], Tensor] = self.model
        if compile:
            self._forward = torch.compile(self.model)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, images: Tensor) -> Tensor:
        with torch.inference_mode() if self.banded else torch.no_grad():
            # uint8 pixels go to the model as they are (it converts them while normalising)
            x = images.to(self.device, None if images.dtype == torch.uint8 else torch.float32)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                out = self._forward(x)
            return out.float()


def _open(path: Path, device: str, *, precision: str | None = None,
          threads: int | None = None) -> Runner:
    return TorchRunner(path, device, precision=precision or "fp32")


def _convert(conv: Conversion, precision: str, threads: int | None) -> Runner:
    return TorchRunner(conv.ckpt, "cpu", precision=precision)


BACKEND = Backend("torch", CHECKPOINT_SUFFIXES, _open, convert=_convert,
                  convert_precisions=("fp32", "bf16"), title="PyTorch")
