"""Building blocks shared by the backbones."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Fire(nn.Module):
    """SqueezeNet Fire module: squeeze 1×1 → ReLU → [expand 1×1, expand 3×3] → ReLU → concat.

    Attribute names follow torchvision (``squeeze``, ``expand1x1``, ``expand3x3``) so that its
    published ImageNet weights load by key. Output channels: ``e1 + e3``.
    """

    def __init__(self, in_channels: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, kernel_size=3, padding=1)
        self.out_channels = e1 + e3

    def forward(self, x: Tensor) -> Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.cat((torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))), dim=1)


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, stored as buffers (never trained).

    Key names match ``nn.BatchNorm2d`` (``weight``, ``bias``, ``running_mean``, ``running_var``)
    so ImageNet state dicts load into it.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def conv_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1,
              padding: int = 0) -> list[nn.Module]:
    """A convolution with bias followed by ReLU, as a list of modules for ``nn.Sequential``."""
    return [nn.Conv2d(in_channels, out_channels, kernel, stride, padding), nn.ReLU(inplace=True)]
