"""The PyTorch port (QiuJueqin/SqueezeDet-PyTorch): ``squeezedet_kitti_epoch280.pth``.

Facts from its code (``src/model/squeezedet.py``, ``src/datasets/kitti.py``,
``src/utils/boxes.py``, ``src/utils/model.py``):

- The file is ``{"epoch": N, "state_dict": …}`` of ``SqueezeDetWithLoss``: keys
  ``base.features.<i>.…`` and ``base.convdet.…`` (a ``module.`` prefix when saved from
  DataParallel). ``features`` is torchvision's SqueezeNet 1.1 (conv1 3×3/2 padding 1, ceil-mode
  pools; Fire keys ``squeeze``/``expand1x1``/``expand3x3``, kernels ``[out, in, H, W]``) plus
  fire10 and fire11 at indices 13 and 14 — ours are ``backbone.extra.0`` and ``.1``.
- ConvDet output: ``C + 5`` values per anchor, anchor-major (class logits, confidence, deltas);
  ours are the original's blocks. Classes: Car, Pedestrian, Cyclist.
- Input: RGB, ``(x − mean) / std`` with the KITTI means 93.877, 98.801, 95.923 and deviations
  78.782, 80.130, 81.200 (``normalization="kitti"``), at 1248×384 (grid 78×24).
- Anchors: its own nine shapes, centres ``(j + ½)·W/gw`` (``anchor_centers="cell"``).
- Only SqueezeDet was released (its SqueezeDet+ differs from the paper's: conv1 padding 3).

Its box arithmetic uses the "+1" pixel convention (a box of width ``w`` spans ``cx ± (w − 1)/2``);
ours spans ``cx ± w/2``, so imported boxes are half a pixel larger on each side.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from squeezedet.errors import SqueezeDetError
from squeezedet.interop.common import (
    SourceModel,
    assign,
    convdet_order_from_anchor_major,
    identity,
    rows,
)
from squeezedet.models.detector import SqueezeDet

TRAINED_ON = ("KITTI 2D object detection (Car, Pedestrian, Cyclist), by the port's author: a "
              "random half of KITTI's training images (3,740), from torchvision's ImageNet "
              "SqueezeNet 1.1")

ANCHOR_SHAPES: tuple[tuple[float, float], ...] = (
    (34, 30), (75, 45), (38, 90), (127, 68), (80, 174), (196, 97),
    (194, 178), (283, 156), (381, 185),
)

MODELS = {
    "squeezedet": SourceModel("squeezedet", (1248, 384), ANCHOR_SHAPES, "kitti", "cell", "torch",
                              TRAINED_ON),
}


def source_model(model_name: str) -> SourceModel:
    if model_name not in MODELS:
        raise SqueezeDetError(f"the PyTorch port released SqueezeDet only (its SqueezeDet+ is "
                              f"another network); use --model squeezedet, not {model_name!r}")
    return MODELS[model_name]


def read(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict of a ``.pth`` file, keys without ``module.`` and ``base.``."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise SqueezeDetError(f"{p}: file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
        # torch's own message runs over several lines (and suggests weights_only=False): name it
        raise SqueezeDetError(f"{p}: not a readable PyTorch file ({type(exc).__name__}); expected "
                              "the port's .pth checkpoint, saved by torch.save, not truncated") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SqueezeDetError(f"{p}: expected the port's checkpoint ({{'epoch', 'state_dict'}}) or "
                              "a state dict")
    out = {}
    for key, value in obj.items():
        name = key.removeprefix("module.").removeprefix("base.")
        out[name] = value.detach().float().numpy()
    return out


def _source_path(ours: str) -> str:
    # backbone.features.N.… → features.N.…; backbone.extra.0/1 → features.13/14; convdet stays
    if ours.startswith("backbone.extra."):
        i, rest = ours.removeprefix("backbone.extra.").split(".", 1)
        return f"features.{13 + int(i)}.{rest}"
    return ours.removeprefix("backbone.")


def mapping(model: SqueezeDet) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    order = convdet_order_from_anchor_major(model.num_anchors, model.num_classes)
    out: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {}
    for name in model.state_dict():
        convert = rows(order) if name.startswith("convdet.") else identity
        out[name] = (_source_path(name), convert)
    return out


def convert(tensors: dict[str, np.ndarray], model: SqueezeDet, where: str) -> dict:
    return assign(model, tensors, mapping(model), lambda n: False, where)
