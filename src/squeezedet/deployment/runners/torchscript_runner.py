"""The ``torchscript`` backend: a ``.torchscript`` file written by ``squeezedet export --format
torchscript``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from squeezedet.deployment.runners.protocol import Backend, Runner, one_line, read_metadata
from squeezedet.errors import SqueezeDetError


class TorchScriptRunner:
    """A TorchScript file (``.torchscript``) with its metadata file."""

    runs_torch = True

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.meta = read_metadata(path)
        self.precision = str(self.meta.get("precision", "fp32"))
        try:
            self.module = torch.jit.load(str(path), map_location=self.device).eval()
        except (RuntimeError, ValueError, OSError) as exc:
            raise SqueezeDetError(f"{path}: not a loadable TorchScript file ({one_line(exc)})"
                                  ) from None

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(self.device, torch.float32)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module(x).float()


def _open(path: Path, device: str, *, precision: str | None = None,
          threads: int | None = None) -> Runner:
    return TorchScriptRunner(path, device)


BACKEND = Backend("torchscript", (".torchscript",), _open, title="TorchScript")
