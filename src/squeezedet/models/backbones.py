"""Feature extractors with output stride 16, in the key layouts torchvision publishes.

Each backbone has ``out_channels`` and ``stem`` (the module names frozen by the original when it
started from ImageNet weights).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn

from squeezedet.models.layers import (
    Backbone,
    Fire,
    FrozenBatchNorm2d,
    TFSameConv2d,
    TFSameMaxPool2d,
    conv_relu,
    output_length,
)

#: Padding conventions of the SqueezeNet backbones: "torch" (symmetric, ceil-mode pools) and "tf"
#: (the original TensorFlow graph's "SAME"/"VALID" layers, exactly).
PADDINGS = ("torch", "tf")


class SqueezeNetBackbone(Backbone):
    """SqueezeNet ``features`` (torchvision indices) plus two new Fire modules (fire10, fire11).

    ``version="1.1"`` is SqueezeDet's backbone: conv1 3×3/2 (padding 1) and ceil-mode pools, the
    PyTorch equivalent of TensorFlow "SAME" padding (1248×384 → 78×24).
    ``version="1.0"`` is SqueezeDet+'s: conv1 7×7/2 without padding, floor-mode pools, squeeze
    ratio 0.75 (1242×375 → 76×22).

    ``padding="tf"`` reproduces the original TensorFlow graph exactly: for version 1.1, conv1 and
    the pools use TensorFlow's "SAME" rule (:class:`~squeezedet.models.layers.TFSameConv2d`; the
    same grid, conv1 sampled one pixel further right and down on even sizes); for version 1.0
    ("VALID" everywhere in the original) it changes nothing. Models with it run their first stage
    whole, never in bands.

    conv1's ReLU comes after the first max-pool, not before: ReLU and max commute (the largest of
    rectified values is the rectified largest), so outputs and gradients are the same, and the
    ReLU and its backward touch a quarter of the elements — the network's largest tensor (conv1
    and its first stage were 14 % of an AVX2 training step; this took ~30 % off that stage).
    The modules hold no weights, so torchvision's key layout is unchanged.
    """

    def __init__(self, version: str = "1.1", padding: str = "torch") -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.version = version
        self.padding = padding
        if version == "1.1":
            tf = padding == "tf"

            def pool() -> nn.MaxPool2d:
                if tf:
                    return TFSameMaxPool2d(kernel_size=3, stride=2)
                return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)

            conv1 = (TFSameConv2d(3, 64, 3, stride=2) if tf
                     else nn.Conv2d(3, 64, 3, stride=2, padding=1))
            layers: list[nn.Module] = [
                conv1,                                              # 0: conv1
                pool(), nn.ReLU(inplace=True),                      # 1, 2: ReLU after the pool
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),        # 3, 4: fire2, fire3
                pool(),                                             # 5
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),   # 6, 7: fire4, fire5
                pool(),                                             # 8
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),   # 9, 10: fire6, fire7
                Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),   # 11, 12: fire8, fire9
            ]
            self.extra = nn.Sequential(Fire(512, 96, 384, 384), Fire(768, 96, 384, 384))
            self.out_channels = 768
        elif version == "1.0":
            def pool() -> nn.MaxPool2d:
                return nn.MaxPool2d(kernel_size=3, stride=2)

            layers = [
                nn.Conv2d(3, 96, 7, stride=2),                      # 0: conv1
                pool(), nn.ReLU(inplace=True),                      # 1, 2: ReLU after the pool
                Fire(96, 96, 64, 64), Fire(128, 96, 64, 64),        # 3, 4: fire2, fire3
                Fire(128, 192, 128, 128),                           # 5: fire4
                pool(),                                             # 6
                Fire(256, 192, 128, 128),                           # 7: fire5
                Fire(256, 288, 192, 192), Fire(384, 288, 192, 192), # 8, 9: fire6, fire7
                Fire(384, 384, 256, 256),                           # 10: fire8
                pool(),                                             # 11
                Fire(512, 384, 256, 256),                           # 12: fire9
            ]
            self.extra = nn.Sequential(Fire(512, 384, 256, 256), Fire(512, 384, 256, 256))
            self.out_channels = 512
        else:
            raise ValueError(f"unknown SqueezeNet version {version!r}; use '1.0' or '1.1'")
        self.features = nn.Sequential(*layers)
        self.stem = ("features.0",)

    def resolution_path(self) -> list[nn.Module]:
        """The layers that set the output resolution, in order (Fire modules keep it)."""
        return [m for m in self.features if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]

    #: :meth:`forward` takes the input normalisation as ``prepare`` (see ``SqueezeDet.forward``)
    normalizes_in_bands = True

    def forward(self, x: Tensor, prepare: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Features of ``x``; with ``prepare`` (the input normalisation), of ``prepare(x)``."""
        if (torch.is_inference_mode_enabled() and x.device.type == "cpu"
                and x.shape[-2] * x.shape[-1] >= BAND_MIN_PIXELS
                and not (self.padding == "tf" and self.version == "1.1")):
            # the layers before the second pool hold the network's largest tensors: run them in
            # horizontal bands on the CPU (exact; 1248x384 inference peaks ~50 MiB lower; a GPU
            # would only pay more kernel launches)
            pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
            head = list(self.features)[:pools[1] + 1]
            bands = max(2, -(-x.shape[-2] * x.shape[-1] // BAND_PIXELS))
            x = banded_forward(head, x, bands, prepare)
            return self.extra(self.features[pools[1] + 1:](x))
        return self.extra(self.features(x if prepare is None else prepare(x)))


#: CPU inference (``torch.inference_mode``) on inputs of at least this many pixels runs SqueezeNet's
#: first stage (up to the second pool) in horizontal bands (:func:`banded_forward`) of about
#: :data:`BAND_PIXELS` input pixels each: 8 bands at 1248x384 (4 bands peaked ~7 MiB higher, for
#: ~1.5 ms less).
BAND_MIN_PIXELS = 250_000
BAND_PIXELS = 60_000


def _rows_needed(layer: nn.Module, out0: int, out1: int) -> tuple[int, int]:
    """Input rows ``[i0, i1)`` (before clipping to the image) that output rows ``[out0, out1)`` of
    ``layer`` read."""
    if isinstance(layer, nn.Conv2d):
        k, s, p = int(layer.kernel_size[0]), int(layer.stride[0]), int(layer.padding[0])
        return s * out0 - p, s * (out1 - 1) + k - p
    if isinstance(layer, nn.MaxPool2d):
        k, s = int(layer.kernel_size), int(layer.stride)  # type: ignore[arg-type]
        return s * out0, s * (out1 - 1) + k
    if isinstance(layer, Fire):
        return out0 - 1, out1 + 1
    return out0, out1  # ReLU


def _rows_out(layer: nn.Module, h: int) -> int:
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
        return output_length(h, layer, -2)
    return h  # ReLU, Fire


def _pad_rows(x: Tensor, top: int, bottom: int) -> Tensor:
    return nn.functional.pad(x, (0, 0, top, bottom)) if top or bottom else x


def banded_forward(layers: list[nn.Module], x: Tensor, bands: int,
                   prepare: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``nn.Sequential(*layers)(x)`` computed in ``bands`` horizontal bands of output rows: the
    same numbers with a fraction of the memory. ``prepare``: an element-wise function applied to
    each band's input rows first (the input normalisation), i.e. the result is that of
    ``prepare(x)``.

    ``layers``: Conv2d, ReLU, MaxPool2d (no padding) and :class:`Fire`. For each band the rows
    each layer must produce are worked out backwards (a convolution's output rows ``[o0, o1)``
    read input rows ``[s·o0 − p, s·(o1 − 1) + k − p)``; a pool's ``[s·o0, s·(o1 − 1) + k)``, cut
    at the end where ceil mode makes a partial window; a Fire's ``[o0 − 1, o1 + 1)``), then run
    forwards with zero rows standing for the padding outside the image, inserted right before
    the layer that pads — never at the input, since ``relu(squeeze(0))`` is not 0.
    """
    heights = [x.shape[-2]]
    width, channels = x.shape[-1], x.shape[-3]
    for layer in layers:
        heights.append(_rows_out(layer, heights[-1]))
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            width = output_length(width, layer, -1)
        channels = getattr(layer, "out_channels", channels)
    # the result is allocated before the first band and each band is copied into it: a band's
    # output kept alive inside the heap hole its large first convolution left would stop the next
    # band from reusing that hole (~10 MiB more resident memory per band), and no final cat
    device = x.device.type
    dtype = (torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device)
             else x.dtype if prepare is None else torch.float32)
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    out = torch.empty((*x.shape[:-3], channels, heights[-1], width), dtype=dtype, device=x.device,
                      memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    edges = [round(i * heights[-1] / bands) for i in range(bands + 1)]
    for o0, o1 in zip(edges[:-1], edges[1:], strict=True):
        if o1 <= o0:
            continue
        plan = []  # per layer: (rows it produces, its raw input rows, its clipped input rows)
        for layer, h_in in zip(reversed(layers), reversed(heights[:-1]), strict=True):
            r0, r1 = _rows_needed(layer, o0, o1)
            c0, c1 = max(r0, 0), min(r1, h_in)
            plan.append(((o0, o1), (r0, r1), (c0, c1)))
            o0, o1 = c0, c1
        t = x[..., o0:o1, :] if prepare is None else prepare(x[..., o0:o1, :])
        for layer, ((n0, n1), (r0, r1), (c0, c1)) in zip(layers, reversed(plan), strict=True):
            top, bottom = c0 - r0, r1 - c1
            if isinstance(layer, nn.Conv2d):
                t = nn.functional.conv2d(_pad_rows(t, top, bottom), layer.weight, layer.bias,
                                         layer.stride, (0, int(layer.padding[1])))
            elif isinstance(layer, nn.MaxPool2d):
                t = nn.functional.max_pool2d(t, layer.kernel_size, layer.stride, 0,
                                             ceil_mode=layer.ceil_mode)
            elif isinstance(layer, Fire):
                s = layer.squeeze(t).relu_()
                e3 = nn.functional.conv2d(_pad_rows(s, top, bottom), layer.expand3x3.weight,
                                          layer.expand3x3.bias, 1, (0, 1))
                e1 = layer.expand1x1(s[..., n0 - c0:n1 - c0, :])
                t = torch.cat((e1, e3), dim=1).relu_()
            else:
                t = layer(t)
            if t.shape[-2] != n1 - n0:  # a layer this function does not know how to band
                raise RuntimeError(f"banded_forward: {type(layer).__name__} gave {t.shape[-2]} "
                                   f"rows, expected {n1 - n0}")
        out[..., n0:n1, :].copy_(t)
        del t
    return out



class VGG16Backbone(Backbone):
    """VGG16 convolutions conv1_1 … conv5_3 without pool5 (torchvision ``features`` indices 0–29)."""

    def __init__(self) -> None:
        super().__init__()
        cfg: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                512, 512, 512, "M", 512, 512, 512]
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                layers += conv_relu(c, int(v), 3, padding=1)
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.out_channels = 512
        # the original froze conv1_x and conv2_x
        self.stem = ("features.0", "features.2", "features.5", "features.7")

    def resolution_path(self) -> list[nn.Module]:
        """The layers that set the output resolution, in order."""
        return [m for m in self.features if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1×1 → 3×3 → 1×1, ×4 expansion) with frozen batch norm; stride on the 3×3."""

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = FrozenBatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(out)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride=stride, bias=False), FrozenBatchNorm2d(out)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn1(self.conv1(x)).relu()
        y = self.bn2(self.conv2(y)).relu()
        y = self.bn3(self.conv3(y))
        identity = x if self.downsample is None else self.downsample(x)
        return (y + identity).relu()


class ResNet50Backbone(Backbone):
    """ResNet-50 through conv4_x (``layer3``, 1024 channels, stride 16), batch norm frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(64, 64, 3, 1)
        self.layer2 = self._stage(256, 128, 4, 2)
        self.layer3 = self._stage(512, 256, 6, 2)
        self.out_channels = 1024
        # the original froze conv1 and conv2_x
        self.stem = ("conv1", "layer1")

    @staticmethod
    def _stage(in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [Bottleneck(in_channels, width, stride)]
        layers += [Bottleneck(width * 4, width) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def resolution_path(self) -> list[nn.Module]:
        """The layers that set the output resolution, in order: the stem and each block's 3×3
        (the 1×1 convolutions keep the size; the shortcut matches the 3×3)."""
        blocks = [cast(Bottleneck, b) for stage in (self.layer1, self.layer2, self.layer3)
                  for b in stage]
        return [self.conv1, self.maxpool, *(b.conv2 for b in blocks)]

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.bn1(self.conv1(x)).relu())
        return self.layer3(self.layer2(self.layer1(x)))
