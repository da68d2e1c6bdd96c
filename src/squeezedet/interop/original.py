"""The original SqueezeDet (BichenWuUCB/squeezeDet, TensorFlow 1): KITTI checkpoints such as
``model.ckpt-87000`` for SqueezeDet and SqueezeDet+.

Facts from its code (``src/nets/squeezeDet.py``, ``squeezeDetPlus.py``, ``src/nn_skeleton.py``,
``src/config/kitti_*_config.py``):

- Variables ``<layer>/kernels`` (``[H, W, in, out]``) and ``<layer>/biases`` for ``conv1``,
  ``fire2 … fire11`` × ``squeeze1x1 / expand1x1 / expand3x3`` and ``conv12`` (ConvDet). The
  checkpoint also holds ``global_step``, ``iou`` and Momentum slots (``…/Momentum``): not weights.
- ConvDet's channels are our layout (the original's): class logits ``K·C`` | confidences ``K`` |
  deltas ``4·K``. Classes: car, pedestrian, cyclist.
- Input: BGR minus the per-channel means 103.939, 116.779, 123.68 (our ``normalization="caffe"``).
- SqueezeDet at 1248×384: conv1 3×3/2 and the pools use TensorFlow's "SAME" padding
  (``padding="tf"``: on even sizes conv1 pads only after, where a symmetric pad of 1 would sample
  one pixel earlier). SqueezeDet+ at 1242×375: conv1 7×7/2 and pools "VALID" (ours already).
- Anchors: the nine KITTI shapes, centres ``(j + 1)·W/(gw + 1)`` (``anchor_centers="original"``).
- conv1 was frozen during training (``freeze=True``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from squeezedet.errors import SqueezeDetError
from squeezedet.interop.common import SourceModel, assign, hwio_to_oihw, squeezenet_layers
from squeezedet.interop.tf_bundle import DTYPES, TensorBundle
from squeezedet.models.detector import SqueezeDet
from squeezedet.ops.anchors import KITTI_ANCHOR_SHAPES

TRAINED_ON = ("KITTI 2D object detection (Car, Pedestrian, Cyclist), by the paper's authors: a "
              "random half of KITTI's 7,481 training images, from the Caffe ImageNet SqueezeNet")

MODELS = {
    "squeezedet": SourceModel("squeezedet", (1248, 384), KITTI_ANCHOR_SHAPES, "caffe", "original",
                              "tf", TRAINED_ON, freeze_stem=True),
    "squeezedet_plus": SourceModel("squeezedet_plus", (1242, 375), KITTI_ANCHOR_SHAPES, "caffe",
                                   "original", "tf", TRAINED_ON, freeze_stem=True),
}

#: Optimiser and training state in the original's checkpoints: not weights.
_AUX_NAMES = {"global_step", "iou", "learning_rate", "beta1_power", "beta2_power"}
_AUX_SUFFIXES = ("/Momentum", "/Adam", "/Adam_1", "/RMSProp", "/RMSProp_1",
                 "/ExponentialMovingAverage")


def ignored(name: str) -> bool:
    return name in _AUX_NAMES or name.endswith(_AUX_SUFFIXES) or name.startswith("_CHECKPOINTABLE")


def read(path: str | Path) -> dict[str, np.ndarray]:
    """The numeric tensors of a TensorFlow checkpoint (prefix, ``.index`` or folder)."""
    bundle = TensorBundle(path)
    out: dict[str, np.ndarray] = {}
    for name, e in bundle.entries.items():
        if ignored(name):
            continue  # never read (Momentum slots are as big as the weights)
        # a tensor this reader cannot decode stays listed, to be reported by name
        out[name] = bundle.read(name) if e.dtype in DTYPES and not e.sliced else np.empty(0)
    return out


def mapping(model: SqueezeDet) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """Our parameter → (the original's variable, conversion)."""
    out: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {}
    for ours, theirs in squeezenet_layers(model):
        out[f"{ours}.weight"] = (f"{theirs}/kernels", hwio_to_oihw)
        out[f"{ours}.bias"] = (f"{theirs}/biases", lambda a: a)
    return out


def convert(tensors: dict[str, np.ndarray], model: SqueezeDet, where: str) -> dict:
    hint = ""
    conv1 = tensors.get("conv1/kernels")
    if conv1 is not None and conv1.ndim == 4:
        other = "squeezedet_plus" if model.name == "squeezedet" else "squeezedet"
        if (conv1.shape[0] == 7) != (model.name == "squeezedet_plus"):
            hint = f"conv1 is {conv1.shape[0]}x{conv1.shape[1]}: try --model {other}"
    return assign(model, tensors, mapping(model), ignored, where, hint)


def source_model(model_name: str) -> SourceModel:
    if model_name not in MODELS:
        raise SqueezeDetError(f"the original SqueezeDet's checkpoints are for squeezedet and "
                              f"squeezedet_plus, not {model_name!r}")
    return MODELS[model_name]
