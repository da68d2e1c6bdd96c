"""The SqueezeDet detector: backbone → dropout → ConvDet, plus the anchor and head layout.

``forward`` takes RGB images with values 0–255 (float or uint8, ``[B, 3, H, W]`` at the network
input size), normalises them inside the model (so exported models need no separate
pre-processing) and returns the raw ConvDet output ``[B, K·(C+1+4), gh, gw]``.

ConvDet channel layout (the original's, so its released weights convert): channels ``[0, K·C)``
are class logits with anchor ``k`` owning ``k·C … k·C+C−1``; ``[K·C, K·C+K)`` the confidence
logits; the last ``4·K`` the deltas, anchor-major ``(δx, δy, δw, δh)``. :meth:`split_head` flattens
them in (row, column, anchor) order, the order of :func:`~squeezedet.ops.anchors.make_anchors`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from squeezedet.models.layers import Backbone, FastDropout, output_length
from squeezedet.ops.anchors import ANCHOR_CENTERS, make_anchors

#: Pixel normalisations, RGB order, in 0–255 units. "torchvision" matches the ImageNet weights
#: torchvision publishes; "caffe" is the original SqueezeDet's BGR mean subtraction; "kitti" is the
#: PyTorch port's (RGB minus KITTI channel means, over KITTI channel deviations); "per_image" is the
#: Keras port's per-image standardisation (minus the image's mean over all pixels and channels,
#: over their population standard deviation), in BGR order.
NORMALIZATIONS: dict[str, dict[str, object]] = {
    "torchvision": {
        "mean": (0.485 * 255, 0.456 * 255, 0.406 * 255),
        "std": (0.229 * 255, 0.224 * 255, 0.225 * 255),
        "bgr": False,
    },
    "caffe": {"mean": (123.68, 116.779, 103.939), "std": (1.0, 1.0, 1.0), "bgr": True},
    "kitti": {"mean": (93.877, 98.801, 95.923), "std": (78.782, 80.130, 81.200), "bgr": False},
    "per_image": {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "bgr": True, "per_image": True},
}


@dataclass(frozen=True)
class HeadOutput:
    """ConvDet output split per anchor; ``A = gh · gw · K`` in (row, column, anchor) order."""

    class_logits: Tensor  # [B, A, C]
    conf_logits: Tensor  # [B, A]
    deltas: Tensor  # [B, A, 4]


class SqueezeDet(nn.Module):
    """A ConvDet detector on a stride-16 backbone.

    Args:
        backbone: feature extractor with ``out_channels`` and ``stem``.
        num_classes: C.
        anchor_shapes: K anchor ``(w, h)`` in input pixels.
        input_size: ``(W, H)`` network input.
        class_names: names of the C classes.
        dropout: dropout probability before ConvDet (training only).
        normalization: a key of :data:`NORMALIZATIONS`.
        anchor_centers: ``"original"`` or ``"cell"`` (see :func:`~squeezedet.ops.anchors.make_anchors`).
    """

    pixel_mean: Tensor
    pixel_std: Tensor
    anchors: Tensor

    def __init__(
        self,
        backbone: Backbone,
        *,
        num_classes: int,
        anchor_shapes: Sequence[Sequence[float]],
        input_size: tuple[int, int],
        class_names: Sequence[str] | None = None,
        dropout: float = 0.5,
        normalization: str = "torchvision",
        name: str = "squeezedet",
        anchor_centers: str = "original",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if len(anchor_shapes) < 1:
            raise ValueError("at least one anchor shape is needed")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)}")
        if anchor_centers not in ANCHOR_CENTERS:
            raise ValueError(f"anchor_centers must be one of {ANCHOR_CENTERS}")
        self.name = name
        self.backbone = backbone
        self.num_classes = num_classes
        self.anchor_shapes = tuple((float(w), float(h)) for w, h in anchor_shapes)
        self.num_anchors = len(self.anchor_shapes)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.class_names = tuple(class_names or (f"class{i}" for i in range(num_classes)))
        if len(self.class_names) != num_classes:
            raise ValueError("class_names must have num_classes entries")
        self.normalization = normalization
        norm = NORMALIZATIONS[normalization]
        self.bgr = bool(norm["bgr"])
        self.per_image = bool(norm.get("per_image", False))
        self.anchor_centers = anchor_centers
        self.register_buffer("pixel_mean", torch.tensor(norm["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(norm["std"]).view(1, 3, 1, 1), persistent=False)
        self.dropout = FastDropout(dropout)
        out = self.num_anchors * (num_classes + 1 + 4)
        self.convdet = nn.Conv2d(backbone.out_channels, out, kernel_size=3, padding=1)
        nn.init.normal_(self.convdet.weight, std=1e-4)
        if self.convdet.bias is not None:
            nn.init.zeros_(self.convdet.bias)
        self.grid_size = self.compute_grid_size(self.input_size)
        self.register_buffer("anchors", make_anchors(self.grid_size, self.input_size, self.anchor_shapes,
                                                   centers=anchor_centers),
                             persistent=False)

    def anchors_for(self, size: tuple[int, int]) -> Tensor:
        """The anchors ``[A, 4]`` of an input of ``size = (W, H)``: :attr:`anchors` at the
        model's input size, else those of the grid ``size`` gives (e.g. a training crop; kept for
        the next call)."""
        size = (int(size[0]), int(size[1]))
        if size == self.input_size:
            return self.anchors
        cache: dict[tuple[int, int], Tensor] = self.__dict__.setdefault("_anchors_by_size", {})
        anchors = cache.get(size)
        if anchors is None or anchors.device != self.anchors.device:
            anchors = make_anchors(self.compute_grid_size(size), size, self.anchor_shapes,
                                   centers=self.anchor_centers).to(self.anchors.device)
            cache[size] = anchors
        return anchors

    def compute_grid_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """Output grid ``(gw, gh)`` for an input ``(W, H)``.

        Computed from the convolution and pooling arithmetic of the backbone's
        ``resolution_path()``; a backbone without one is run on meta tensors instead (which
        imports much of torch's symbolic machinery: ~80 MiB more resident memory).
        """
        path = getattr(self.backbone, "resolution_path", None)
        if path is None:
            x = torch.empty(1, 3, input_size[1], input_size[0], device="meta")
            y = _meta_copy(self.backbone)(x)
            return int(y.shape[-1]), int(y.shape[-2])
        width, height = input_size
        for layer in path():
            width = output_length(width, layer, -1)
            height = output_length(height, layer, -2)
        if width < 1 or height < 1:
            raise ValueError(f"input size {input_size[0]}x{input_size[1]} is too small for "
                             f"{self.name}")
        return width, height

    def image_stats(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image mean and population standard deviation over all pixels and channels,
        ``[B, 1, 1, 1]`` each (the "per_image" normalisation's statistics)."""
        var, mean = torch.var_mean(images.float(), dim=(1, 2, 3), correction=0, keepdim=True)
        return mean, var.sqrt()

    def normalize(self, images: Tensor, stats: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """RGB 0–255 ``[B, 3, H, W]`` (float, or uint8) → the backbone's input scale and channel
        order, as a new tensor. ``stats``: the whole images' :meth:`image_stats` when ``images``
        is a band of them (per-image normalisation only)."""
        if self.per_image:
            mean, std = self.image_stats(images) if stats is None else stats
        else:
            mean, std = self.pixel_mean, self.pixel_std
        x = images.float()
        # in place where .float() already copied (uint8 input): one full-size copy fewer
        x = x - mean if x is images else x.sub_(mean)
        x.div_(std)
        if self.bgr:
            x = x.flip(1)
        return x

    def forward(self, images: Tensor) -> Tensor:
        """Raw ConvDet output ``[B, K·(C+5), gh, gw]`` for RGB 0–255 images ``[B, 3, H, W]``
        (float, or uint8)."""
        if getattr(self.backbone, "normalizes_in_bands", False):
            # a backbone that may run its first stage in bands normalises each band's rows
            # itself: the whole normalised image never exists at once
            prepare: Callable[[Tensor], Tensor] = self.normalize
            if self.per_image:  # the statistics are the whole image's, not each band's
                prepare = functools.partial(self.normalize, stats=self.image_stats(images))
            features = self.backbone(images, prepare=prepare)
        else:
            features = self.backbone(self.normalize(images))
        return self.convdet(self.dropout(features))

    def split_head(self, out: Tensor) -> HeadOutput:
        """Split ``[B, K·(C+5), gh, gw]`` into per-anchor class logits, confidence logits and deltas."""
        return split_head(out, self.num_anchors, self.num_classes)

    def frozen_modules(self) -> tuple[str, ...]:
        """Names (relative to the model) of the modules the original kept frozen."""
        return tuple(f"backbone.{n}" for n in self.backbone.stem)

    def freeze_stem(self, freeze: bool = True) -> None:
        """Stop (or restart) training of the backbone's stem layers."""
        modules = dict(self.named_modules())
        for name in self.frozen_modules():
            for p in modules[name].parameters():
                p.requires_grad_(not freeze)

    def metadata(self) -> dict[str, object]:
        """Everything needed to rebuild this model, for checkpoints and exported files."""
        return {
            "model": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "input_size": list(self.input_size),
            "anchor_shapes": [list(s) for s in self.anchor_shapes],
            "grid_size": list(self.grid_size),
            "normalization": self.normalization,
            "pixel_mean": [float(v) for v in NORMALIZATIONS[self.normalization]["mean"]],  # type: ignore[attr-defined]
            "pixel_std": [float(v) for v in NORMALIZATIONS[self.normalization]["std"]],  # type: ignore[attr-defined]
            "bgr": self.bgr,
            "anchor_centers": self.anchor_centers,
            "padding": getattr(self.backbone, "padding", "torch"),
        }


def split_head(out: Tensor, num_anchors: int, num_classes: int) -> HeadOutput:
    """Split a raw ConvDet output ``[B, K·(C+5), gh, gw]`` (layout in the module docstring) into
    per-anchor tensors in (row, column, anchor) order."""
    b, _, gh, gw = out.shape
    k, c = num_anchors, num_classes
    x = out.permute(0, 2, 3, 1)  # [B, gh, gw, ch]
    a = gh * gw * k
    return HeadOutput(
        class_logits=x[..., : k * c].reshape(b, a, c),
        conf_logits=x[..., k * c : k * c + k].reshape(b, a),
        deltas=x[..., k * c + k :].reshape(b, a, 4),
    )


def convdet_order_from_class_order(num_anchors: int, source_classes: Sequence[str],
                                   classes: Sequence[str]) -> Tensor:
    """Index ``i`` with ``ours = theirs[i]`` over ConvDet's output channels when both use the
    original's blocks but list the classes in another order (the Keras port: cyclist,
    pedestrian, car; a fine-tuning checkpoint with its classes in another order)."""
    k, c = num_anchors, len(classes)
    lower = [s.lower() for s in source_classes]
    perm = [lower.index(name.lower()) for name in classes]
    cls = [a * c + perm[j] for a in range(k) for j in range(c)]
    return torch.tensor(cls + list(range(k * c, k * (c + 5))), dtype=torch.long)


def _meta_copy(module: nn.Module) -> nn.Module:
    """A structural copy of ``module`` on the meta device (no memory, no compute)."""
    import copy

    clone = copy.deepcopy(module)
    return clone.to("meta")
