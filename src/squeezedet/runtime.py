"""Runners: one interface over the ways a trained model can be executed.

A runner takes RGB images with values 0–255, ``float32 [B, 3, H, W]`` at the network input size,
and returns the raw ConvDet output ``[B, K·(C+5), gh, gw]`` as a CPU/GPU torch tensor. It carries
``meta``, the model description of :meth:`SqueezeDet.metadata` (classes, input size, anchors,
normalisation), which is all the post-processing needs.

Backends: ``torch`` (a ``.pt`` checkpoint). Exported formats (ONNX Runtime, OpenVINO) register
themselves in :data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from squeezedet.errors import SqueezeDetError


class Runner(Protocol):
    """Executes a model: images ``[B, 3, H, W]`` RGB 0–255 → raw head ``[B, K·(C+5), gh, gw]``."""

    meta: dict[str, Any]
    device: torch.device

    def __call__(self, images: Tensor) -> Tensor: ...


class TorchRunner:
    """Eager PyTorch execution of a checkpoint (channels-last on CPU)."""

    def __init__(self, checkpoint: str | Path | dict[str, Any], device: str = "cpu") -> None:
        from squeezedet.checkpoint import model_from_checkpoint

        self.device = torch.device(device)
        self.model = model_from_checkpoint(checkpoint).to(self.device).eval()
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.meta = self.model.metadata()

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(self.device, torch.float32)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)


#: backend name → (file suffixes it opens, factory(path, device) → Runner)
BACKENDS: dict[str, tuple[tuple[str, ...], Callable[[Path, str], Runner]]] = {
    "torch": ((".pt", ".pth", ".ckpt"), lambda p, d: TorchRunner(p, d)),
}


def load_runner(weights: str | Path, backend: str = "auto", device: str = "cpu") -> Runner:
    """A runner for ``weights``; ``backend="auto"`` picks by file type."""
    path = Path(weights)
    if not path.exists():
        raise SqueezeDetError(f"{path}: weights file not found")
    if backend == "auto":
        for name, (suffixes, _) in BACKENDS.items():
            if path.suffix.lower() in suffixes:
                backend = name
                break
        else:
            raise SqueezeDetError(
                f"{path}: unknown weights type {path.suffix!r}; known: "
                + ", ".join(s for suffixes, _ in BACKENDS.values() for s in suffixes)
            )
    if backend not in BACKENDS:
        raise SqueezeDetError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
    return BACKENDS[backend][1](path, device)
