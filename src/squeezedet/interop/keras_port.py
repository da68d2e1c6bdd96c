"""The Keras port (omni-us/squeezedet-keras): ``.h5`` weights saved by Keras 2 (``save_weights``
or a whole-model ``save``), read with h5py (``pip install 'squeezedet[keras]'``).

Facts from its code (``main/model/squeezeDet.py``, ``main/config/create_config.py``,
``main/model/dataGenerator.py``, ``main/model/modelLoading.py``):

- Layers ``fire2/squeeze1x1`` … ``fire11/expand3x3`` and ``conv12`` (ConvDet), each with
  ``kernel:0`` (``[H, W, in, out]``) and ``bias:0``; conv1 has no name of its own, so Keras calls it
  ``conv2d_1`` (Keras 2) or ``conv2d`` (tf.keras) — any one 3×3 convolution outside the fires is
  taken as conv1. In the file: the root's ``layer_names`` attribute, and per layer group its
  ``weight_names`` attribute naming its datasets (under ``model_weights`` for a whole model).
- ConvDet: the original's blocks (``K·C`` classes | ``K`` confidences | ``4·K`` deltas), but classes
  in the order cyclist, pedestrian, car (reordered here to Car, Pedestrian, Cyclist).
- Input: an image read by OpenCV (BGR), resized to 1248×384, then ``(img − mean(img)) / std(img)``
  over all its pixels and channels (``normalization="per_image"``).
- conv1 and the pools: TensorFlow "SAME" padding (``padding="tf"``); anchors: the original's
  shapes and centres ``(j + 1)·W/(gw + 1)``. Only SqueezeDet exists in the port.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from squeezedet.errors import SqueezeDetError
from squeezedet.interop.common import (
    KITTI_CLASSES,
    SourceModel,
    assign,
    convdet_order_from_class_order,
    hwio_to_oihw,
    identity,
    rows,
    squeezenet_layers,
)
from squeezedet.models.detector import SqueezeDet
from squeezedet.ops.anchors import KITTI_ANCHOR_SHAPES

SOURCE_CLASSES = ("cyclist", "pedestrian", "car")
TRAINED_ON = ("whatever its user trained it on: the port publishes no KITTI weights, only an "
              "ImageNet initialisation (imagenet.h5); its recipe is KITTI (cyclist, pedestrian, "
              "car)")

MODELS = {
    "squeezedet": SourceModel("squeezedet", (1248, 384), KITTI_ANCHOR_SHAPES, "per_image",
                              "original", "tf", TRAINED_ON),
}

_CONV1 = re.compile(r"^(conv1|conv2d(_\d+)?)$")


def source_model(model_name: str) -> SourceModel:
    if model_name not in MODELS:
        raise SqueezeDetError(f"the Keras port has SqueezeDet only; use --model squeezedet, not "
                              f"{model_name!r}")
    return MODELS[model_name]


def _text(v: object) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def read(path: str | Path) -> dict[str, np.ndarray]:
    """``{"<layer>/kernel": …, "<layer>/bias": …}`` from a Keras 2 ``.h5`` file; conv1 (whatever
    Keras named it) as ``conv1/…``."""
    try:
        import h5py
    except ImportError:
        raise SqueezeDetError("reading Keras .h5 files needs h5py: pip install 'squeezedet[keras]'"
                              ) from None
    p = Path(path)
    if not p.is_file():
        raise SqueezeDetError(f"{p}: file not found")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise SqueezeDetError(f"{p}: not a readable HDF5 file ({exc})") from None
    out: dict[str, np.ndarray] = {}
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        found: dict[str, np.ndarray] = {}
        if "layer_names" in root.attrs:
            for layer in root.attrs["layer_names"]:
                group = root[_text(layer)]
                for wname in group.attrs.get("weight_names", []):
                    found[_text(wname)] = np.asarray(group[_text(wname)])
        else:  # no Keras attributes: every dataset by its path
            def visit(name: str, obj: object) -> None:
                if isinstance(obj, h5py.Dataset):
                    found[name] = np.asarray(obj)
            root.visititems(visit)
    for wname, value in found.items():
        m = re.match(r"^(?:.*/)?((?:fire\d+/\w+)|conv12|conv1|conv2d(?:_\d+)?)/(kernel|bias)(?::0)?$",
                     wname)
        if m is None:
            out[wname] = value  # reported as unknown
            continue
        layer, kind = m.group(1), m.group(2)
        if _CONV1.match(layer):
            if f"conv1/{kind}" in out:
                raise SqueezeDetError(f"{p}: more than one candidate for conv1 (unnamed "
                                      f"convolutions {layer!r} and another)")
            layer = "conv1"
        out[f"{layer}/{kind}"] = value
    return out


def mapping(model: SqueezeDet) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    order = convdet_order_from_class_order(model.num_anchors, SOURCE_CLASSES, KITTI_CLASSES)
    out: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {}
    for ours, theirs in squeezenet_layers(model):
        kernel: Callable[[np.ndarray], np.ndarray] = hwio_to_oihw
        bias: Callable[[np.ndarray], np.ndarray] = identity
        if ours == "convdet":
            kernel, bias = rows(order, hwio_to_oihw), rows(order)
        out[f"{ours}.weight"] = (f"{theirs}/kernel", kernel)
        out[f"{ours}.bias"] = (f"{theirs}/bias", bias)
    return out


def convert(tensors: dict[str, np.ndarray], model: SqueezeDet, where: str) -> dict:
    return assign(model, tensors, mapping(model), lambda n: False, where)
