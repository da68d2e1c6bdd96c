"""Format-independent pieces of the data sets: annotated samples, class selection, tiling and the
network-ready :class:`DetectionDataset`.

Every reader of :mod:`squeezedet.data.formats` (KITTI, COCO, VOC, YOLO) turns its files into a
:class:`DataSource`: a list of :class:`Sample` (image path, objects as
:class:`~squeezedet.data.kitti_format.KittiObject` with boxes in original-image pixels ``(x1, y1, x2,
y2)``), the class names in the data's own order and the train/val split. One data set class then
serves them all, with the interface of :class:`~squeezedet.data.kitti.KittiDataset`.

Convention for objects to ignore. Formats without KITTI's truncation and occlusion levels get
``truncated=0`` and ``occluded=0``, except that an object the annotation marks to be ignored (VOC
``difficult``, COCO ``iscrowd``) gets ``occluded=IGNORE_OCCLUSION`` (3, KITTI's "unknown"
occlusion): the KITTI evaluator ignores such an object at every difficulty, and
:func:`squeezedet.eval.voc.evaluate_ap` treats it as a VOC "difficult" object (a detection matching
it is neither a true nor a false positive). Ignored objects are not training targets.

Tiling (``tile=(W, H)``, ``tile_overlap=P``): each image is cut into overlapping windows (see
:func:`squeezedet.data.tiling.tile_windows`) and every window is one sample, with the id
``"{image_id}@{x0}_{y0}"``. An object whose box keeps at least half of its area inside a window is a
target of that window (its box clipped to the window, ``truncated`` raised to the part cut off); an
object with less than half inside but some area is kept as an ignored object, so that detecting
the visible part is not counted as a false positive; the rest is dropped. ``orig_size`` and
:meth:`DetectionDataset.ground_truth` then refer to the window's pixels.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from squeezedet.data.images import load_image
from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.transforms import MIN_CLIPPED_SIZE, Compose, build_transforms
from squeezedet.errors import DataError, SqueezeDetError

log = logging.getLogger(__name__)

#: ``occluded`` value marking an object to ignore in training and evaluation (VOC difficult, COCO
#: crowd, objects cut by a tile border): KITTI's "unknown" occlusion level.
IGNORE_OCCLUSION = 3

#: Image file extensions the readers of other formats accept (case-insensitive), preferred first.
ANY_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: Least fraction of an object's area inside a tile for the object to be a target of the tile.
MIN_VISIBLE = 0.5


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


def image_size(path: Path) -> tuple[int, int]:
    """``(W, H)`` of an image file from its header (the pixels are not decoded)."""
    try:
        if Path(path).stat().st_size == 0:
            raise DataError(path, "image file is empty (0 bytes)")
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(path, f"not a readable image ({exc})") from None


def find_image_by_stem(folder: Path, stem: str) -> Path | None:
    """The image ``folder/stem.<ext>`` for the first of :data:`ANY_IMAGE_EXTENSIONS` present
    (extensions compared case-insensitively), or ``None``."""
    if not folder.is_dir():
        return None
    for ext in ANY_IMAGE_EXTENSIONS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


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


def clip_objects_to_window(objects: Sequence[KittiObject], window: tuple[int, int, int, int],
                           min_visible: float = MIN_VISIBLE) -> list[KittiObject]:
    """The objects of an image as seen in ``window = (x0, y0, x1, y1)``, boxes in window pixels.

    An object keeping at least ``min_visible`` of its area inside is kept (box clipped,
    ``truncated`` raised to the cut-off fraction); one with less, but some area inside, is kept as
    ignored (``occluded = IGNORE_OCCLUSION``); the others are dropped. DontCare boxes are clipped.
    """
    x0, y0, x1, y1 = window
    out = []
    for obj in objects:
        bx1, by1, bx2, by2 = obj.box
        cx1, cy1 = max(bx1, x0), max(by1, y0)
        cx2, cy2 = min(bx2, x1), min(by2, y1)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        area = max(bx2 - bx1, 0.0) * max(by2 - by1, 0.0)
        visible = (cx2 - cx1) * (cy2 - cy1) / area if area > 0 else 1.0
        box = (cx1 - x0, cy1 - y0, cx2 - x0, cy2 - y0)
        changes: dict[str, Any] = {"box": box}
        if obj.type.lower() != "dontcare":
            changes["truncated"] = max(obj.truncated, round(1.0 - visible, 4))
            if visible < min_visible:
                changes["occluded"] = IGNORE_OCCLUSION
        out.append(dataclasses.replace(obj, **changes))
    return out


def is_ignored(obj: KittiObject) -> bool:
    """Whether an object is marked to be ignored (see the module docstring)."""
    return int(obj.occluded) >= IGNORE_OCCLUSION


#: Why a training box is left out (see :func:`fit_boxes_to_image`).
OUTSIDE, ZERO_AREA, CLIPPED_AWAY = "outside the image", "zero area", "clipped to nothing"



def fit_boxes_to_image(boxes: np.ndarray, size: tuple[int, int]
                       ) -> tuple[np.ndarray, np.ndarray, list[str | None], np.ndarray]:
    """The training boxes of an image of ``size = (W, H)``: each box clipped to ``[0, W] × [0, H]``,
    and left out when it has zero width or height (:data:`ZERO_AREA`), does not overlap the image
    (:data:`OUTSIDE`), or keeps less than :data:`MIN_CLIPPED_SIZE` pixels of width or height after
    the clipping (:data:`CLIPPED_AWAY`).

    Args:
        boxes: ``[N, 4]`` xyxy in the image's pixels, ``x2 >= x1`` and ``y2 >= y1``.

    Returns:
        ``(kept float32 [M, 4], keep bool [N], reasons, clipped bool [N])``: ``reasons[i]`` is
        ``None`` for a kept box, else why it was left out; ``clipped[i]`` marks kept boxes that the
        image border cut.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = float(size[0]), float(size[1])
    fitted = np.stack([np.clip(b[:, 0], 0, width), np.clip(b[:, 1], 0, height),
                       np.clip(b[:, 2], 0, width), np.clip(b[:, 3], 0, height)], axis=1)
    fw, fh = fitted[:, 2] - fitted[:, 0], fitted[:, 3] - fitted[:, 1]
    cut = (fitted != b).any(axis=1)
    reasons: list[str | None] = []
    for i in range(len(b)):
        if b[i, 2] <= b[i, 0] or b[i, 3] <= b[i, 1]:
            reasons.append(ZERO_AREA)
        elif fw[i] <= 0 or fh[i] <= 0:
            reasons.append(OUTSIDE)
        elif cut[i] and (fw[i] < MIN_CLIPPED_SIZE or fh[i] < MIN_CLIPPED_SIZE):
            reasons.append(CLIPPED_AWAY)
        else:
            reasons.append(None)
    keep = np.array([r is None for r in reasons], dtype=bool)
    return fitted[keep].astype(np.float32), keep, reasons, cut & keep


class SampleSet(Dataset):
    """What :class:`DetectionDataset` and :class:`~squeezedet.data.kitti.KittiDataset` share:
    indexing, per-(seed, epoch, index) augmentation generators, skipping unreadable images and
    turning a transformed sample into tensors.

    Subclasses set ``ids``, ``classes``, ``seed``, ``epoch``, ``skip_bad``, ``skipped``,
    ``transforms``, ``_image_paths``, ``_objects``, ``_targets`` and ``_bad``, and implement
    :meth:`load` and :meth:`_describe`.
    """

    ids: list[str]
    classes: tuple[str, ...]
    seed: int
    epoch: int
    skip_bad: bool
    skipped: list[str]
    transforms: Compose
    _image_paths: list[Path]
    _objects: list[list[KittiObject]]
    _targets: list[tuple[np.ndarray, np.ndarray]]
    _bad: set[int]

    def load(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample ``i`` before the transforms (image ``uint8 [H0, W0, 3]`` and NumPy target)."""
        raise NotImplementedError

    def label_of(self, obj: KittiObject) -> int | None:
        """The class index of ``obj`` when it is a training target, else ``None``."""
        raise NotImplementedError

    def _filter(self, objects: Sequence[KittiObject]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``float32 [N, 4]`` and labels ``int64 [N]`` of the objects that are training
        targets (:meth:`label_of`), in file order."""
        kept = [(obj.box, label) for obj in objects if (label := self.label_of(obj)) is not None]
        boxes = np.array([b for b, _ in kept], dtype=np.float32).reshape(-1, 4)
        labels = np.array([c for _, c in kept], dtype=np.int64)
        return boxes, labels

    def drop_samples(self, indices: set[int]) -> None:
        """Leave out the samples ``indices`` (e.g. those a data check found bad)."""
        if not indices:
            return
        keep = [j for j in range(len(self.ids)) if j not in indices]
        for name in ("ids", "_image_paths", "_objects", "_targets", "_windows"):
            values = getattr(self, name, None)
            if values is not None:
                setattr(self, name, [values[j] for j in keep])
        self._bad = set()
        self.__dict__.pop("_cache", None)

    def _describe(self) -> str:
        """Where the samples come from, for messages."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of ``epoch`` (call before iterating over each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ids)

    def _index(self, i: int) -> int:
        n = len(self.ids)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"sample index {i} out of range for a data set of {n}")
        return i % n

    def image_path(self, i: int) -> Path:
        """Path of sample ``i``'s image file (the whole image when tiling)."""
        return self._image_paths[self._index(i)]

    def ground_truth(self, i: int) -> list[KittiObject]:
        """Every object of sample ``i`` (all types, ignored ones included), boxes in original
        pixels of the image (of the tile when tiling)."""
        return list(self._objects[self._index(i)])

    def class_counts(self) -> dict[str, int]:
        """Number of training objects per class over the whole data set."""
        counts = np.zeros(len(self.classes), dtype=np.int64)
        for _, labels in self._targets:
            counts += np.bincount(labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}

    def rng(self, i: int) -> np.random.Generator:
        """The augmentation generator of sample ``i`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, self._index(i)])

    def cache_images(self, progress: bool = False) -> int:
        """Decode every image once and keep it in memory (read-only), so that epochs after this
        cost only the augmentation; returns the bytes held. Call it before creating DataLoader
        workers: forked workers share the cache. Unreadable images raise, or are skipped and
        counted with ``skip_bad``."""
        cache: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
        indices: Any = range(len(self))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc="caching images", unit="img", leave=False)
        held = 0
        for j in indices:
            sample = self._load_or_skip(j, self.load)
            if sample is None:
                continue
            image, target = sample
            image.setflags(write=False)  # a transform writing in place would corrupt the cache
            cache[j] = (image, target)
            held += image.nbytes
        self._cache = cache
        return held

    def _load_or_skip(self, j: int, load: Any) -> tuple[np.ndarray, dict[str, Any]] | None:
        """``load(j)``; ``None`` for a sample already known bad, or a bad one with ``skip_bad``
        (recorded once in ``skipped``). Without ``skip_bad`` a bad sample raises."""
        if j in self._bad:
            return None
        try:
            return load(j)
        except DataError as exc:
            if not self.skip_bad:
                raise
            self._bad.add(j)
            self.skipped.append(str(exc))
            log.warning("skipping bad sample: %s", exc)
            return None

    def _load_maybe_cached(self, j: int) -> tuple[np.ndarray, dict[str, Any]]:
        cached = getattr(self, "_cache", {}).get(j)
        if cached is None:
            return self.load(j)
        image, target = cached
        return image, {**target, "boxes": target["boxes"].copy(), "labels": target["labels"].copy()}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        i = self._index(i)
        rng = self.rng(i)
        n = len(self.ids)
        for attempt in range(n):
            sample = self._load_or_skip((i + attempt) % n, self._load_maybe_cached)
            if sample is not None:
                image, target = sample
                break
        else:
            raise SqueezeDetError(f"no readable image among the {n} samples of {self._describe()}")
        # boxes cut by the image border are clipped; those with nothing left in it left out (the
        # data check of squeezedet.data.check counts them before training)
        boxes, keep, _, _ = fit_boxes_to_image(target["boxes"], (image.shape[1], image.shape[0]))
        target = {**target, "boxes": boxes, "labels": np.asarray(target["labels"])[keep]}
        image, target = self.transforms(image, target, rng)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        target = {
            "boxes": torch.from_numpy(np.asarray(target["boxes"], dtype=np.float32).reshape(-1, 4)),
            "labels": torch.from_numpy(np.asarray(target["labels"], dtype=np.int64)),
            "image_id": target["image_id"],
            "orig_size": target["orig_size"],
        }
        return tensor, target


class DetectionDataset(SampleSet):
    """Network-ready samples of a :class:`DataSource` split, with the interface of
    :class:`~squeezedet.data.kitti.KittiDataset`.

    Args:
        samples: the annotated images of the split.
        classes: class names to train on, label index order (spelled as in the objects' ``type``).
        input_size: network input ``(W, H)``.
        train: apply the random augmentation (drift, flip) before the resize.
        drift, flip_prob, seed, crop: as for :class:`~squeezedet.data.kitti.KittiDataset`.
        tile: ``(W, H)`` of the windows to cut every image into, or ``None`` for whole images.
        tile_overlap: fraction of a tile shared with its neighbour, in ``[0, 1)``.
        skip_bad: leave out images that cannot be read (recorded in :attr:`skipped`).
        metric: ``"kitti"`` or ``"ap"``; which evaluator :func:`squeezedet.engine.evaluate` uses.
        name: a label for messages (e.g. the root folder and split).

    ``dataset[i]`` is ``(image uint8 [3, H, W] RGB at input_size, target)`` with ``boxes``
    ``float32 [N, 4]`` xyxy input pixels, ``labels`` ``int64 [N]``, ``image_id`` and
    ``orig_size = (H0, W0)`` of the image (of the tile when tiling).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        input_size: tuple[int, int] = (1248, 384),
        train: bool = False,
        drift: tuple[int, int] = (150, 100),
        flip_prob: float = 0.5,
        seed: int = 0,
        tile: tuple[int, int] | None = None,
        tile_overlap: float = 0.2,
        skip_bad: bool = False,
        metric: str = "ap",
        name: str = "",
        skipped: Sequence[str] = (),
        crop: tuple[int, int] | None = None,
    ) -> None:
        from squeezedet.data.tiling import tile_windows

        self.classes: tuple[str, ...] = tuple(classes)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.train = bool(train)
        self.seed = int(seed)
        self.epoch = 0
        self.skip_bad = bool(skip_bad)
        self.metric = metric
        self.name = name
        self.tile = None if tile is None else (int(tile[0]), int(tile[1]))
        self.tile_overlap = float(tile_overlap)
        self.transforms: Compose = build_transforms(self.input_size, self.train, drift, flip_prob,
                                                     crop)
        self.skipped: list[str] = list(skipped)
        self._bad: set[int] = set()
        self._class_index = {c.lower(): i for i, c in enumerate(self.classes)}

        self.samples: list[Sample] = list(samples)  # the whole images, for the data check
        self.ids: list[str] = []
        self._image_paths: list[Path] = []
        self._windows: list[tuple[int, int, int, int] | None] = []
        self._objects: list[list[KittiObject]] = []
        for sample in samples:
            if self.tile is None:
                self.ids.append(sample.image_id)
                self._image_paths.append(sample.image_path)
                self._windows.append(None)
                self._objects.append(list(sample.objects))
                continue
            try:
                size = sample.size or image_size(sample.image_path)
            except DataError as exc:
                if not self.skip_bad:
                    raise
                self.skipped.append(str(exc))
                log.warning("skipping bad sample: %s", exc)
                continue
            for window in tile_windows(size, self.tile, self.tile_overlap):
                self.ids.append(f"{sample.image_id}@{window[0]}_{window[1]}")
                self._image_paths.append(sample.image_path)
                self._windows.append(window)
                self._objects.append(clip_objects_to_window(sample.objects, window))
        self._targets = [self._filter(objects) for objects in self._objects]

    def label_of(self, obj: KittiObject) -> int | None:
        """The class index of ``obj`` for the training classes; ``None`` for other classes and
        ignored objects."""
        if is_ignored(obj):
            return None
        return self._class_index.get(obj.type.lower())

    def window(self, i: int) -> tuple[int, int, int, int] | None:
        """The tile ``(x0, y0, x1, y1)`` of sample ``i`` in its image's pixels (``None``: whole)."""
        return self._windows[self._index(i)]

    def load(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample ``i`` before the transforms: image (or tile) ``uint8 [H0, W0, 3]`` and a target
        with NumPy ``boxes`` in its pixels and ``labels``. Raises :class:`DataError`."""
        i = self._index(i)
        image = load_image(self._image_paths[i])
        window = self._windows[i]
        if window is not None:
            x0, y0, x1, y1 = window
            if image.shape[0] < y1 or image.shape[1] < x1:
                raise DataError(self._image_paths[i],
                                f"image is {image.shape[1]}x{image.shape[0]}, smaller than the "
                                "size its annotation states")
            image = np.ascontiguousarray(image[y0:y1, x0:x1])
        boxes, labels = self._targets[i]
        target = {
            "boxes": boxes.copy(),
            "labels": labels.copy(),
            "image_id": self.ids[i],
            "orig_size": (int(image.shape[0]), int(image.shape[1])),
        }
        return image, target

    def _describe(self) -> str:
        return str(self.name)

    def __repr__(self) -> str:
        return (f"DetectionDataset({self.name!r}, n={len(self)}, classes={self.classes}, "
                f"input_size={self.input_size}, train={self.train}, tile={self.tile})")


#: Fraction of the images that goes to validation when a data set has no split of its own.
VAL_FRACTION = 0.2


def resolve_splits(ids: Sequence[str], explicit: Mapping[str, Sequence[str]] | None,
                   rule: str, seed: int = 0) -> tuple[dict[str, list[int]], str]:
    """Sample indices of ``"train"`` and ``"val"`` for samples with ``ids``.

    ``explicit`` maps split names to the ids the data set lists (every listed id must exist; use
    ``rule`` to say where they came from). Without it, :func:`squeezedet.data.splits.make_split`
    gives a deterministic split with :data:`VAL_FRACTION` of the images in val (with a single
    image, it is in both). Returns ``(splits, rule)``.
    """
    from squeezedet.data.splits import make_split

    position = {image_id: i for i, image_id in enumerate(ids)}
    if explicit:
        splits = {}
        for name, listed in explicit.items():
            missing = [i for i in listed if i not in position]
            if missing:
                raise SqueezeDetError(f"split {name!r} ({rule}) lists {len(missing)} images "
                                      f"that have no annotation, e.g. {missing[0]!r}")
            splits[name] = [position[i] for i in listed]
        return splits, rule
    if len(ids) < 2:
        every = list(range(len(ids)))
        return {"train": every, "val": list(every)}, "a single image: used for train and val"
    train, val = make_split(ids, VAL_FRACTION, seed)
    return ({"train": [position[i] for i in train], "val": [position[i] for i in val]},
            f"no split given: a deterministic split with {VAL_FRACTION:.0%} of the images "
            "(by SHA-256 of the id) in val")


def raise_or_skip(errors: Sequence[DataError], skip_bad: bool) -> list[str]:
    """With ``skip_bad``, the messages of ``errors`` (logged as warnings); else raise the first
    (mentioning how many more there are)."""
    if errors and not skip_bad:
        first = errors[0]
        if len(errors) == 1:
            raise first
        raise first.extended(f" (and {len(errors) - 1} more bad samples; fix them or skip them "
                             "with skip_bad / --skip-bad)")
    for error in errors:
        log.warning("skipping bad sample: %s", error)
    return [str(e) for e in errors]


def check_box(box: tuple[float, float, float, float], path: Path, line: int | None,
              what: str = "box") -> tuple[float, float, float, float]:
    """``box`` if finite with ``x2 >= x1`` and ``y2 >= y1``; else :class:`DataError`."""
    import math

    if not all(math.isfinite(v) for v in box):
        raise DataError(path, f"{what} {box} has a NaN or infinite coordinate", line)
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise DataError(path, f"{what} ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has x2 < x1 or y2 < y1",
                        line)
    return box


def copy_image(src: Path, dst_stem: Path, allowed: Sequence[str] = ANY_IMAGE_EXTENSIONS) -> Path:
    """Copy an image to ``dst_stem`` + its extension (re-encoded as PNG when the extension is not
    in ``allowed``); returns the new path."""
    import shutil

    if src.suffix.lower() in allowed:
        dst = dst_stem.with_name(dst_stem.name + src.suffix)
        shutil.copyfile(src, dst)
        return dst
    dst = dst_stem.with_name(dst_stem.name + ".png")
    Image.fromarray(load_image(src)).save(dst)
    return dst


def safe_id(text: str) -> str:
    """An id usable as a file name: path separators and spaces become ``_``."""
    out = text.replace("\\", "/").strip("/").replace("/", "_").replace(" ", "_")
    return out or "image"
