"""Models registered by name, each built by a typed keyword-only builder.

>>> import squeezedet
>>> squeezedet.list_models()
['resnet50_convdet', 'squeezedet', 'squeezedet_plus', 'vgg16_convdet']
>>> model = squeezedet.create_model("squeezedet", num_classes=3)

Anchor shapes are given in input pixels for the model's default input size; with another
``input_size`` and no explicit ``anchor_shapes`` the defaults are scaled with the input (the image
is resized to the network size, so objects scale alike).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from squeezedet.errors import SqueezeDetError
from squeezedet.models.backbones import (
    PADDINGS,
    ResNet50Backbone,
    SqueezeNetBackbone,
    VGG16Backbone,
)
from squeezedet.models.detector import NORMALIZATIONS, SqueezeDet
from squeezedet.models.layers import Backbone
from squeezedet.ops.anchors import ANCHOR_CENTERS, KITTI_ANCHOR_SHAPES, scale_anchor_shapes

KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")

RESNET_ANCHOR_SHAPES: tuple[tuple[float, float], ...] = (
    (94, 49), (225, 161), (170, 91), (390, 181), (41, 32),
    (128, 64), (298, 164), (232, 99), (65, 42),
)


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is: its builder, default input size and anchors, paper figures."""

    name: str
    builder: Callable[..., SqueezeDet]
    default_input_size: tuple[int, int]
    default_anchor_shapes: tuple[tuple[float, float], ...]
    description: str


_REGISTRY: dict[str, ModelInfo] = {}


def _register(name: str, input_size: tuple[int, int],
              anchors: tuple[tuple[float, float], ...], description: str
              ) -> Callable[[Callable[..., SqueezeDet]], Callable[..., SqueezeDet]]:
    def wrap(fn: Callable[..., SqueezeDet]) -> Callable[..., SqueezeDet]:
        _REGISTRY[name] = ModelInfo(name, fn, input_size, anchors, description)
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; unknown names raise an error that lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SqueezeDetError(
            f"unknown model {name!r}{hint}; known models: {', '.join(list_models())}"
        ) from None


def network_input_size(name: str, input_size: Sequence[int] | None = None) -> tuple[int, int]:
    """``input_size`` as ``(W, H)``, or the default input size of model ``name`` without one."""
    size = input_size or model_info(name).default_input_size
    return int(size[0]), int(size[1])


def create_model(name: str, **kwargs: Any) -> SqueezeDet:
    """Build the registered model ``name``; keyword arguments go to its builder."""
    return model_info(name).builder(**kwargs)


def _resolve(
    name: str,
    num_classes: int | None,
    class_names: Sequence[str] | None,
    input_size: tuple[int, int] | None,
    anchor_shapes: Sequence[Sequence[float]] | None,
) -> tuple[int, tuple[str, ...], tuple[int, int], tuple[tuple[float, float], ...]]:
    info = _REGISTRY[name]
    if class_names is not None:
        names = tuple(class_names)
        if num_classes is not None and num_classes != len(names):
            raise SqueezeDetError(
                f"num_classes={num_classes} but {len(names)} class names were given"
            )
    elif num_classes is None or num_classes == len(KITTI_CLASSES):
        names = KITTI_CLASSES
    else:
        names = tuple(f"class{i}" for i in range(num_classes))
    size = tuple(int(v) for v in (input_size or info.default_input_size))
    if len(size) != 2 or min(size) < 16:
        raise SqueezeDetError(f"input size must be (W, H) with both at least 16 pixels, got {size}")
    if anchor_shapes is None:
        shapes = scale_anchor_shapes(info.default_anchor_shapes, info.default_input_size, size)
    else:
        shapes = tuple((float(w), float(h)) for w, h in anchor_shapes)
        if not shapes or any(w <= 0 or h <= 0 for w, h in shapes):
            raise SqueezeDetError("anchor shapes must be positive (w, h) pairs")
    return len(names), names, size, shapes


def _finish(model: SqueezeDet, pretrained: str | Path | bool, freeze_stem: bool | None,
            init_new: Callable[[SqueezeDet], None] | None = None) -> SqueezeDet:
    """Initialise, load ImageNet weights when asked, and freeze the stem (default: iff pretrained)."""
    if init_new is not None:
        init_new(model)
    if pretrained:
        from squeezedet.models.pretrained import load_backbone_weights

        load_backbone_weights(model, pretrained)
    if freeze_stem is None:
        freeze_stem = bool(pretrained)
    model.freeze_stem(freeze_stem)
    return model


def _build(
    name: str,
    backbone: Backbone,
    num_classes: int | None,
    class_names: Sequence[str] | None,
    input_size: tuple[int, int] | None,
    anchor_shapes: Sequence[Sequence[float]] | None,
    pretrained: str | Path | bool,
    freeze_stem: bool | None,
    dropout: float,
    normalization: str,
    new_layers_init: Callable[[SqueezeDet], None] | None = None,
    anchor_centers: str = "original",
) -> SqueezeDet:
    """The body shared by the builders: resolve settings, initialise, wrap in the detector."""
    c, names, size, shapes = _resolve(name, num_classes, class_names, input_size, anchor_shapes)
    _check_choice("normalization", normalization, tuple(NORMALIZATIONS))
    _check_choice("anchor_centers", anchor_centers, ANCHOR_CENTERS)
    _init_scratch(backbone)
    model = SqueezeDet(backbone, num_classes=c, anchor_shapes=shapes, input_size=size,
                       class_names=names, dropout=dropout, normalization=normalization, name=name,
                       anchor_centers=anchor_centers)
    return _finish(model, pretrained, freeze_stem, new_layers_init if pretrained else None)


def _check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise SqueezeDetError(f"{key} must be one of {', '.join(choices)} (got {value!r})")


def _squeezenet(version: str, padding: str) -> SqueezeNetBackbone:
    _check_choice("padding", padding, PADDINGS)
    return SqueezeNetBackbone(version, padding=padding)


def _torch_padding_only(name: str, padding: str) -> None:
    if padding != "torch":
        raise SqueezeDetError(f"padding={padding!r} exists for the SqueezeNet models only; "
                              f"{name} has padding='torch'")


def _init_scratch(model: nn.Module) -> None:
    """He initialisation for backbone convolutions (ReLU follows each), biases zero."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@_register("squeezedet", (1248, 384), KITTI_ANCHOR_SHAPES,
           "SqueezeNet v1.1 backbone + fire10/11 + ConvDet 768 (2.08 M parameters)")
def squeezedet(
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    input_size: tuple[int, int] | None = None,
    anchor_shapes: Sequence[Sequence[float]] | None = None,
    pretrained: str | Path | bool = False,
    freeze_stem: bool | None = None,
    dropout: float = 0.5,
    normalization: str = "torchvision",
    anchor_centers: str = "original",
    padding: str = "torch",
) -> SqueezeDet:
    """SqueezeDet (SqueezeNet v1.1 backbone), 1248×384, 78×24 grid by default.

    ``pretrained``: a SqueezeNet 1.1 state dict file in torchvision's key layout, the original
    SqueezeDet's Caffe-converted ImageNet pickle (``.pkl``, e.g. ``squeezenet_v1.1.pkl``), ``True``
    for torchvision's published file (downloaded once, hash-checked), or ``False`` to start from
    scratch. ``anchor_centers``: ``"original"`` or ``"cell"``; ``padding``: ``"torch"`` or ``"tf"``
    (the original TensorFlow graph's conv1 and pools, see
    :class:`~squeezedet.models.backbones.SqueezeNetBackbone`).
    """
    return _build("squeezedet", _squeezenet("1.1", padding),
                  num_classes, class_names, input_size, anchor_shapes, pretrained, freeze_stem,
                  dropout, normalization,
                  new_layers_init=_init_new_fires, anchor_centers=anchor_centers)


@_register("squeezedet_plus", (1242, 375), KITTI_ANCHOR_SHAPES,
           "SqueezeNet v1.0 backbone, squeeze ratio 0.75 + fire10/11 + ConvDet 512 (7.02 M)")
def squeezedet_plus(
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    input_size: tuple[int, int] | None = None,
    anchor_shapes: Sequence[Sequence[float]] | None = None,
    pretrained: str | Path | bool = False,
    freeze_stem: bool | None = None,
    dropout: float = 0.5,
    normalization: str = "torchvision",
    anchor_centers: str = "original",
    padding: str = "torch",
) -> SqueezeDet:
    """SqueezeDet+ (SqueezeNet v1.0 layout, squeeze ratio 0.75), 1242×375, 76×22 grid by default.

    ``pretrained``: a state dict in torchvision's SqueezeNet 1.0 key layout with this backbone's
    (wider squeeze) shapes, or the original's Caffe-converted ImageNet pickle
    (``squeezenet_v1.0_SR_0.750.pkl``); torchvision's own 1.0 file does not fit and is refused with
    a message.
    """
    return _build("squeezedet_plus", _squeezenet("1.0", padding),
                  num_classes, class_names, input_size, anchor_shapes, pretrained, freeze_stem,
                  dropout, normalization,
                  new_layers_init=_init_new_fires, anchor_centers=anchor_centers)


@_register("vgg16_convdet", (1248, 384), KITTI_ANCHOR_SHAPES,
           "VGG16 conv1_1–conv5_3 + ConvDet 512 (15.0 M parameters)")
def vgg16_convdet(
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    input_size: tuple[int, int] | None = None,
    anchor_shapes: Sequence[Sequence[float]] | None = None,
    pretrained: str | Path | bool = False,
    freeze_stem: bool | None = None,
    dropout: float = 0.5,
    normalization: str = "torchvision",
    anchor_centers: str = "original",
    padding: str = "torch",
) -> SqueezeDet:
    """VGG16-ConvDet: VGG16 convolutions without pool5 and fc, then ConvDet 512 → K·(C+5).

    ``pretrained``: a VGG16 state dict in torchvision's key layout (``features.N.weight``).
    """
    _torch_padding_only("vgg16_convdet", padding)
    return _build("vgg16_convdet", VGG16Backbone(),
                  num_classes, class_names, input_size, anchor_shapes, pretrained, freeze_stem,
                  dropout, normalization, anchor_centers=anchor_centers)


@_register("resnet50_convdet", (1248, 384), RESNET_ANCHOR_SHAPES,
           "ResNet-50 through conv4_x, frozen batch norm + ConvDet 1024")
def resnet50_convdet(
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    input_size: tuple[int, int] | None = None,
    anchor_shapes: Sequence[Sequence[float]] | None = None,
    pretrained: str | Path | bool = False,
    freeze_stem: bool | None = None,
    dropout: float = 0.5,
    normalization: str = "torchvision",
    anchor_centers: str = "original",
    padding: str = "torch",
) -> SqueezeDet:
    """ResNet50-ConvDet: ResNet-50 conv1 … conv4_x (1024 channels) with frozen batch-norm statistics.

    ``pretrained``: a ResNet-50 state dict in torchvision's key layout (``layer3.5.conv3.weight``).
    """
    _torch_padding_only("resnet50_convdet", padding)
    return _build("resnet50_convdet", ResNet50Backbone(),
                  num_classes, class_names, input_size, anchor_shapes, pretrained, freeze_stem,
                  dropout, normalization, anchor_centers=anchor_centers)


def _init_new_fires(model: SqueezeDet) -> None:
    """The original's initialisation of the new fire10/11 layers: N(0, 0.01), biases 0."""
    for m in model.backbone.get_submodule("extra").modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
