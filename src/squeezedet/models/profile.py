"""Model size and cost: parameters, bytes, FLOPs of one forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from squeezedet.models.detector import SqueezeDet


@dataclass(frozen=True)
class ModelProfile:
    """Figures of one model at one input size; FLOPs count a multiply-add as 2."""

    name: str
    params: int
    trainable_params: int
    size_mb: float
    gflops: float
    input_size: tuple[int, int]
    grid: tuple[int, int]
    anchors: int

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.name, "params": self.params, "trainable_params": self.trainable_params,
            "size_mb": round(self.size_mb, 3), "gflops": round(self.gflops, 3),
            "input_size": list(self.input_size), "grid": list(self.grid), "anchors": self.anchors,
        }


def count_flops(model: nn.Module, input_size: tuple[int, int]) -> int:
    """FLOPs of convolutions and linear layers for one ``(W, H)`` image (multiply-add = 2).

    Pooling, ReLU and concatenation are not counted (well under 1 % of the total here).
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2 * k * output.numel()
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * output.numel()

    meta = _to_meta(model)  # shapes only: no memory, no compute
    for m in meta.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        meta(torch.zeros(1, 3, input_size[1], input_size[0], device="meta"))
    return total


def _to_meta(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("meta").eval()


def profile_model(model: SqueezeDet, input_size: tuple[int, int] | None = None) -> ModelProfile:
    """Parameters, fp32 size in MB, GFLOPs, grid and anchor count of ``model``.

    MB here is 2^20 bytes, as the paper counts it (7.9 MB for SqueezeDet).
    """
    size = input_size or model.input_size
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    grid = model.compute_grid_size(size)
    return ModelProfile(
        name=model.name, params=params, trainable_params=trainable, size_mb=params * 4 / 2**20,
        gflops=count_flops(model, size) / 1e9, input_size=(int(size[0]), int(size[1])),
        grid=grid, anchors=grid[0] * grid[1] * model.num_anchors,
    )
