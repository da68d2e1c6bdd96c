"""Building blocks shared by the backbones."""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import Tensor, nn


class Backbone(nn.Module):
    """A feature extractor under ConvDet: the channel count of its output and the names of its
    stem modules (those the original recipe keeps frozen)."""

    out_channels: int
    stem: tuple[str, ...]


M = TypeVar("M", bound=nn.Module)


def with_memory_format(module: M, memory_format: torch.memory_format) -> M:
    """``module.to(memory_format=...)`` (PyTorch's type stubs leave that keyword out)."""
    return module.to(memory_format=memory_format)  # type: ignore[call-overload]


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
        #: batch norm between the squeeze convolution and its ReLU while training with
        #: ``squeeze_bn`` (:func:`add_squeeze_bn`); folded away before a model is saved
        self.squeeze_bn: nn.BatchNorm2d | None = None

    def forward(self, x: Tensor) -> Tensor:
        s = self.squeeze(x)
        if self.squeeze_bn is not None:
            s = self.squeeze_bn(s)
        s = s.relu_()
        if not torch.is_inference_mode_enabled():
            # ReLU in place on the concatenation: no separate rectified copies of the two halves
            return torch.cat((self.expand1x1(s), self.expand3x3(s)), dim=1).relu_()
        # inference: each half is rectified straight into its place in the output and freed
        # before the other is computed (peak: output + one half, not output + both halves)
        e1 = self.expand1x1(s)
        n, c1, h, w = e1.shape
        layout = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                  else torch.contiguous_format)
        out = torch.empty((n, self.out_channels, h, w), dtype=e1.dtype, device=e1.device,
                          memory_format=layout)
        torch.clamp_min(e1, 0, out=out[:, :c1])
        del e1
        torch.clamp_min(self.expand3x3(s), 0, out=out[:, c1:])
        return out


def add_squeeze_bn(model: nn.Module) -> int:
    """Put a fresh ``nn.BatchNorm2d`` between each Fire module's squeeze convolution and its ReLU
    (training only: :func:`fold_squeeze_bn` takes it out again); returns how many were added.

    Normalising the squeeze outputs lets a SqueezeNet trained from scratch learn much more per
    step, for ~3 % more time a step: the squeeze outputs are the Fire modules' smallest tensors
    (16–96 channels). Batch norm after the expand convolutions as well made a CPU step 1.75×
    as long.
    """
    added = 0
    for m in model.modules():
        if isinstance(m, Fire) and m.squeeze_bn is None:
            conv = m.squeeze
            m.squeeze_bn = nn.BatchNorm2d(conv.out_channels).to(conv.weight.device)
            added += 1
    return added


def has_squeeze_bn(model: nn.Module) -> bool:
    """Whether any Fire module of ``model`` has a batch norm after its squeeze convolution."""
    return any(isinstance(m, Fire) and m.squeeze_bn is not None for m in model.modules())


@torch.no_grad()
def fold_squeeze_bn(model: M) -> M:
    """Fold each Fire module's squeeze batch norm (its running statistics and affine terms) into
    the squeeze convolution and remove it, in place: ``W' = W·γ/√(σ² + ε)``,
    ``b' = (b − μ)·γ/√(σ² + ε) + β``. The result is SqueezeNet's Fire module again and computes
    what the model computed in eval mode. Returns ``model``."""
    for m in model.modules():
        if isinstance(m, Fire) and m.squeeze_bn is not None:
            bn, conv = m.squeeze_bn, m.squeeze
            assert bn.running_mean is not None and bn.running_var is not None
            scale = bn.running_var.double().add(bn.eps).rsqrt()
            if bn.weight is not None:
                scale = scale * bn.weight.double()
            bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
            shift = (bias - bn.running_mean.double()) * scale
            if bn.bias is not None:
                shift = shift + bn.bias.double()
            weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
            conv.weight.copy_(weight)
            if conv.bias is None:
                conv.bias = nn.Parameter(shift.to(conv.weight.dtype))
            else:
                conv.bias.copy_(shift)
            m.squeeze_bn = None
    return model


class FastDropout(nn.Module):
    """Element-wise dropout with the semantics of ``nn.Dropout``, cheaper on the CPU.

    Torch's CPU dropout draws one Bernoulli sample per element (~17 ms for SqueezeDet's
    ``8×768×12×39`` fire11 output, a tenth of a bf16 training step). Here each element takes 16
    bits of a 64-bit random integer (4 elements per draw) and is kept when they fall below
    ``round((1 − p)·2^16)``; kept elements are scaled by the inverse of that keep probability, so
    the expected output equals the input exactly. The drop probability is ``p`` rounded to a
    multiple of ``2^-16``. Seeded by torch's CPU generator like any other op. On other devices, and
    in eval mode, it is ``nn.functional.dropout``.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.keep_levels = max(1, round((1.0 - self.p) * 65536))

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, 2**63 - 1)
        bits = words.view(torch.int16)[:n]  # uniform over [-2^15, 2^15)
        keep = bits < (self.keep_levels - 32768)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            b, c, h, w = x.shape
            keep = keep.view(b, h, w, c).permute(0, 3, 1, 2)  # same memory order as x
        else:
            keep = keep.view(x.shape)
        return x * keep * (65536.0 / self.keep_levels)


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, stored as buffers (never trained).

    Key names match ``nn.BatchNorm2d`` (``weight``, ``bias``, ``running_mean``, ``running_var``)
    so ImageNet state dicts load into it.
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
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


def tf_same_pads(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of a length-``n`` input: ``(before, after)``, the odd pixel
    after (``ceil(n / stride)`` outputs)."""
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


class TFSameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's ``padding="SAME"``: the padding depends on the input size
    and an odd total puts the extra pixel at the bottom/right — for a 3×3 stride-2 convolution of
    an even-sized input, 0 before and 1 after, where ``nn.Conv2d(padding=1)`` pads 1 on both sides
    (same output size, sampled one pixel to the left and up). Same parameters as ``nn.Conv2d``."""

    tf_same = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = int(self.kernel_size[0]), int(self.kernel_size[1])
        top, bottom = tf_same_pads(int(x.shape[-2]), kh, int(self.stride[0]))
        left, right = tf_same_pads(int(x.shape[-1]), kw, int(self.stride[1]))
        x = nn.functional.pad(x, (left, right, top, bottom))
        return self._conv_forward(x, self.weight, self.bias)


class TFSameMaxPool2d(nn.MaxPool2d):
    """Max pooling with TensorFlow's ``padding="SAME"`` (see :class:`TFSameConv2d`). For inputs
    that are ReLU outputs (≥ 0), as everywhere in SqueezeNet: the padding is zeros, which never
    exceed a window's real values, so the result is TensorFlow's."""

    tf_same = True

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__(kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        k, s = int(self.kernel_size), int(self.stride)  # type: ignore[arg-type]
        top, bottom = tf_same_pads(int(x.shape[-2]), k, s)
        left, right = tf_same_pads(int(x.shape[-1]), k, s)
        return nn.functional.max_pool2d(nn.functional.pad(x, (left, right, top, bottom)), k, s)


def output_length(n: int, layer: nn.Module, dim: int) -> int:
    """Output length along ``dim`` (-1 width, -2 height) of a Conv2d or MaxPool2d for input ``n``,
    by PyTorch's formula (with its ceil-mode rule: the last window starts inside the input), or
    TensorFlow's ``ceil(n / stride)`` for the "SAME" layers above."""
    def pair(v: Any) -> int:
        return int(v[dim]) if isinstance(v, (tuple, list)) else int(v)

    kernel, stride = pair(layer.kernel_size), pair(layer.stride)
    if getattr(layer, "tf_same", False):
        return -(-n // stride)
    padding, dilation = pair(layer.padding), pair(layer.dilation)
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    if isinstance(layer, nn.MaxPool2d) and layer.ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= n + padding:
            out -= 1
        return out
    return span // stride + 1
