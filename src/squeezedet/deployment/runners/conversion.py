"""A checkpoint as the in-memory conversions of ``backend="auto"`` need it.

Each backend that can run a checkpoint (:attr:`Backend.convert
<squeezedet.deployment.runners.protocol.Backend.convert>`) builds its runner from a
:class:`Conversion`: the model, its ONNX graph, the metadata for a precision; the result is checked
against the PyTorch fp32 output on a test image (:meth:`Conversion.check`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from squeezedet.deployment.runners.protocol import Runner
from squeezedet.errors import SqueezeDetError

#: parity tolerance of the in-memory conversion of ``backend="auto"``: max abs difference
#: relative to the largest output magnitude (fp32 runtimes agree to ~1e-6 of it; see export.py).
AUTO_PARITY_RTOL = 1e-3

#: the same for bf16 (8-bit mantissas)
AUTO_PARITY_RTOL_BF16 = 0.05


def probe_image(width: int, height: int) -> Tensor:
    """A smooth, image-like ``float32 [1, 3, H, W]`` 0–255 input: a low-frequency colour field
    plus pixel noise, rounded to whole grey levels (the values uint8 pixels can take)."""
    gen = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 20, generator=gen) * 255,
                                           size=(height, width), mode="bilinear",
                                           align_corners=False)
    return (base + torch.randn(1, 3, height, width, generator=gen) * 8).clamp(0, 255).round()


class Conversion:
    """A checkpoint as the candidates of ``auto`` need it, each part made on first use: its model,
    the model's fp32 output on a test image (the parity reference) and its ONNX graph (a cached
    choice of eager PyTorch needs none of them)."""

    def __init__(self, ckpt: dict[str, Any]) -> None:
        self.ckpt = ckpt
        self._model: Any = None
        self._ref: Tensor | None = None
        self._x: Tensor | None = None
        self._proto: bytes | None = None

    @property
    def model(self) -> Any:
        if self._model is None:
            from squeezedet.checkpoint import model_from_checkpoint

            self._model = model_from_checkpoint(self.ckpt).eval()
        return self._model

    @property
    def input_size(self) -> tuple[int, int]:
        size = (self.ckpt.get("meta") or {}).get("input_size")
        return (int(size[0]), int(size[1])) if size else tuple(self.model.input_size)

    @property
    def x(self) -> Tensor:
        if self._x is None:
            self._x = probe_image(*self.input_size)
        return self._x

    @property
    def ref(self) -> Tensor:
        if self._ref is None:
            with torch.inference_mode():
                self._ref = self.model(self.x)
        return self._ref

    @property
    def proto(self) -> bytes:
        if self._proto is None:
            from squeezedet.deployment.graph import onnx_bytes

            try:
                self._proto = onnx_bytes(self.model)
            except Exception as exc:  # noqa: BLE001 - any exporter failure
                raise SqueezeDetError(f"ONNX conversion failed ({exc})") from None
        return self._proto

    def meta(self, precision: str) -> dict[str, Any]:
        return {**self.model.metadata(), "precision": precision, "outputs": "head"}

    def check(self, runner: Runner, name: str, precision: str) -> str | None:
        """``None`` when ``runner`` reproduces the fp32 model on the test image within
        :data:`AUTO_PARITY_RTOL` (bf16: :data:`AUTO_PARITY_RTOL_BF16`) of the output's magnitude,
        else why not."""
        err = float((runner(self.x) - self.ref).abs().max())
        rtol = AUTO_PARITY_RTOL if precision == "fp32" else AUTO_PARITY_RTOL_BF16
        tol = rtol * float(self.ref.abs().max())
        if err <= tol:
            return None
        return f"{name} disagrees with PyTorch (max abs diff {err:.3g} > {tol:.3g})"
