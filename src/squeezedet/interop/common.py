"""What the weight importers share: the source layer names of a SqueezeNet detector, the layout
conversions, ConvDet channel orders, and the one error that lists every problem with a file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from squeezedet.errors import SqueezeDetError
from squeezedet.models.detector import (  # noqa: F401 - convdet_order_...: part of this API
    SqueezeDet,
    convdet_order_from_class_order,
)
from squeezedet.models.pretrained import squeezenet_layers  # noqa: F401 - part of this API

KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")


@dataclass(frozen=True)
class SourceModel:
    """How a source's model was built: what the imported model must be set to, to give the
    source's detections."""

    model: str
    input_size: tuple[int, int]  # (W, H) the source ran at
    anchor_shapes: tuple[tuple[float, float], ...]
    normalization: str
    anchor_centers: str
    padding: str
    trained_on: str
    freeze_stem: bool | None = None  # what the source's own training froze (for fine-tuning)
    class_names: tuple[str, ...] = KITTI_CLASSES


def hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    """A TensorFlow/Keras kernel ``[H, W, in, out]`` → PyTorch's ``[out, in, H, W]``."""
    if kernel.ndim != 4:
        return kernel  # left as is: the shape check names it
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def convdet_order_from_anchor_major(num_anchors: int, num_classes: int) -> Tensor:
    """Index ``i`` such that ``ours = theirs[i]`` along ConvDet's output channels, where theirs
    holds ``C + 5`` values per anchor, anchor-major (classes, confidence, 4 deltas: the PyTorch
    port) and ours is the original's blocks (``K·C`` classes | ``K`` confidences | ``4·K`` deltas)."""
    k, c = num_anchors, num_classes
    per = c + 5
    cls = [a * per + j for a in range(k) for j in range(c)]
    conf = [a * per + c for a in range(k)]
    deltas = [a * per + c + 1 + d for a in range(k) for d in range(4)]
    return torch.tensor(cls + conf + deltas, dtype=torch.long)


def _names(items: Iterable[str], limit: int = 8) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def assign(model: SqueezeDet, tensors: Mapping[str, np.ndarray],
           mapping: Mapping[str, tuple[str, Callable[[np.ndarray], np.ndarray]]],
           ignored: Callable[[str], bool], where: str, hint: str = "") -> dict[str, Tensor]:
    """Our state dict from the source's tensors: every parameter of ``model`` must be in
    ``mapping``; every source tensor must be used or ``ignored``. Missing, unknown and mis-shaped
    tensors are reported together in one :class:`SqueezeDetError`."""
    target = model.state_dict()
    state: dict[str, Tensor] = {}
    missing, shaped = [], []
    for ours, (theirs, convert) in mapping.items():
        if theirs not in tensors:
            missing.append(theirs)
            continue
        value = convert(np.asarray(tensors[theirs]))
        if tuple(value.shape) != tuple(target[ours].shape):
            shaped.append(f"{theirs} {list(np.asarray(tensors[theirs]).shape)} "
                          f"(expected {list(_source_shape(target[ours].shape, tensors, theirs, convert))})")
            continue
        state[ours] = torch.from_numpy(np.array(value, dtype=np.float32))
    used = {theirs for theirs, _ in mapping.values()}
    unknown = sorted(n for n in tensors if n not in used and not ignored(n))
    unmapped = sorted(set(target) - set(mapping))
    problems = []
    if missing:
        problems.append(f"missing {_names(sorted(missing))}")
    if shaped:
        problems.append(f"wrong shape: {_names(shaped, 4)}")
    if unknown:
        problems.append(f"unknown {_names(unknown)}")
    if unmapped:  # a bug of ours, not of the file
        problems.append(f"no source for {_names(unmapped)}")
    if problems:
        raise SqueezeDetError(f"{where}: does not fit {model.name}: " + "; ".join(problems)
                              + (f". {hint}" if hint else ""))
    return state


def _source_shape(ours: Sequence[int], tensors: Mapping[str, np.ndarray], name: str,
                  convert: Callable[[np.ndarray], np.ndarray]) -> tuple[int, ...]:
    """The source-layout shape that would convert to ``ours`` (for the error message)."""
    src = np.asarray(tensors[name])
    if src.ndim == 4 and len(ours) == 4 and convert is hwio_to_oihw:
        o, i, h, w = ours
        return (h, w, i, o)
    return tuple(ours)


def identity(a: np.ndarray) -> np.ndarray:
    return a


def rows(index: Tensor, then: Callable[[np.ndarray], np.ndarray] = identity
         ) -> Callable[[np.ndarray], np.ndarray]:
    """A conversion that applies ``then`` and reorders the output channels (axis 0) by ``index``
    (the ConvDet kernel or bias; a wrong channel count is left for the shape check)."""
    idx = index.numpy()

    def convert(a: np.ndarray) -> np.ndarray:
        a = then(a)
        if a.ndim >= 1 and a.shape[0] == len(idx):
            return a[idx]
        return a

    return convert
