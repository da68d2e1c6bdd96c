"""What every data format is read into: annotated samples (:class:`Sample`), a data set as read
from disk (:class:`DataSource`), the objects to ignore and the choice of classes to train on.

Every reader of :mod:`squeezedet.data.formats` (KITTI, COCO, VOC, YOLO) turns its files into a
:class:`DataSource`: a list of :class:`Sample` (image path, objects as
:class:`~squeezedet.data.kitti_format.KittiObject` with boxes in original-image pixels ``(x1, y1, x2,
y2)``), the class names in the data's own order and the train/val split. One data set class
(:class:`~squeezedet.data.dataset.DetectionDataset`) then serves them all.

Convention for objects to ignore. Formats without KITTI's truncation and occlusion levels get
``truncated=0`` and ``occluded=0``, except that an object the annotation marks to be ignored (VOC
``difficult``, COCO ``iscrowd``) gets ``occluded=IGNORE_OCCLUSION`` (3, KITTI's "unknown"
occlusion): the KITTI evaluator ignores such an object at every difficulty, and
:func:`squeezedet.eval.voc.evaluate_ap` treats it as a VOC "difficult" object (a detection matching
it is neither a true nor a false positive). Ignored objects are not training targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from squeezedet.data.kitti_format import KittiObject
from squeezedet.errors import SqueezeDetError

#: ``occluded`` value marking an object to ignore in training and evaluation (VOC difficult, COCO
#: crowd, objects cut by a tile border): KITTI's "unknown" occlusion level.
IGNORE_OCCLUSION = 3


@dataclass(frozen=True)
class Sample:
    """One annotated image: ``objects`` boxes in original-image pixels ``(x1, y1, x2, y2)``;
    ``size`` is ``(W, H)`` when the annotation states it (else read from the image on demand);
    ``label_file`` the file that holds its annotation (for messages; ``None``: none)."""

    image_id: str
    image_path: Path
    objects: tuple[KittiObject, ...]
    size: tuple[int, int] | None = None
    label_file: Path | None = None


@dataclass
class DataSource:
    """A data set as read from disk, before class selection and transforms.

    ``classes``: every class name of the data in the data's order (COCO category ids, the YOLO
    names file, ...). ``splits`` maps ``"train"``, ``"val"`` (and ``"all"``) to sample indices.
    ``split_rule`` says in words where the split came from. ``skipped``: messages of bad samples
    left out with ``skip_bad``. ``metric``: ``"kitti"`` when the data has KITTI's difficulty
    fields, else ``"ap"`` (COCO-style AP).
    """

    format: str
    root: Path
    samples: list[Sample]
    classes: tuple[str, ...]
    splits: dict[str, list[int]]
    split_rule: str
    metric: str = "ap"
    skipped: list[str] = field(default_factory=list)

    def split(self, name: str | None) -> list[Sample]:
        """The samples of split ``name`` (``"all"`` or ``None``: every sample)."""
        if name is None or name == "all":
            return list(self.samples)
        if name not in self.splits:
            raise SqueezeDetError(
                f"{self.root}: no split {name!r} in this {self.format} data set; "
                f"known: {', '.join(sorted(self.splits))} ({self.split_rule})"
            )
        return [self.samples[i] for i in self.splits[name]]


def is_ignored(obj: KittiObject) -> bool:
    """Whether an object is marked to be ignored (see the module docstring)."""
    return int(obj.occluded) >= IGNORE_OCCLUSION



def select_classes(requested: Sequence[str] | None, available: Sequence[str],
                   root: Path | str = "") -> tuple[str, ...]:
    """Class names to train on: ``requested`` (in its order, spelled as in the data; matched
    exactly, else case-insensitively) or, when ``None``, every class of ``available``.

    Raises :class:`SqueezeDetError` for a name the data does not have, listing the ones it has.
    """
    if requested is None:
        if not available:
            raise SqueezeDetError(f"{root}: the data set has no objects, so no classes to train on")
        return tuple(available)
    if isinstance(requested, str):
        requested = [requested]
    by_lower = {c.lower(): c for c in available}
    chosen: list[str] = []
    for name in requested:
        name = name.strip()
        if name in available:
            chosen.append(name)
        elif name.lower() in by_lower:
            chosen.append(by_lower[name.lower()])
        else:
            raise SqueezeDetError(
                f"{root}: no class {name!r} in the data; its classes are: {', '.join(available)}"
            )
    if len({c.lower() for c in chosen}) != len(chosen) or not chosen:
        raise SqueezeDetError(f"classes must be distinct and at least one: {list(requested)}")
    return tuple(chosen)
