"""The network-ready data sets and their batches: :class:`SampleSet` (what every data set
shares: indexing, augmentation generators, loading, skipping unreadable images, the tensors),
:class:`DetectionDataset` (the samples of any format's :class:`~squeezedet.data.samples.DataSource`
split) and :func:`collate`, which batches the samples of every data set, KITTI's
(:class:`~squeezedet.data.kitti.KittiDataset`) included.

Tiling (``tile=(W, H)``, ``tile_overlap=P``): each image is cut into overlapping windows (see
:func:`squeezedet.data.tiling.tile_windows`) and every window is one sample, with the id
``"{image_id}@{x0}_{y0}"``. An object whose box keeps at least half of its area inside a window is a
target of that window (its box clipped to the window, ``truncated`` raised to the part cut off); an
object with less than half inside but some area is kept as an ignored object, so that detecting
the visible part is not counted as a false positive; the rest is dropped. ``orig_size`` and
:meth:`DetectionDataset.ground_truth` then refer to the window's pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from squeezedet.data.augment import MOSAIC_PROB, build_pipeline, mosaic
from squeezedet.data.box_fitting import fit_boxes_to_image
from squeezedet.data.files import image_size
from squeezedet.data.images import load_image
from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.samples import Sample, is_ignored
from squeezedet.data.tiling import clip_objects_to_window, tile_windows
from squeezedet.data.transforms import Compose
from squeezedet.errors import DataError, SqueezeDetError

log = logging.getLogger(__name__)


class SampleSet(Dataset):
    """What :class:`DetectionDataset` and :class:`~squeezedet.data.kitti.KittiDataset` share:
    indexing, per-(seed, epoch, index) augmentation generators, skipping unreadable images and
    turning a transformed sample into tensors.

    Subclasses set ``ids``, ``classes``, ``seed``, ``epoch``, ``skip_bad``, ``skipped``,
    ``transforms``, ``_image_paths``, ``_objects``, ``_targets``, ``_bad`` and, when tiling,
    ``_windows``, and implement :meth:`label_of` and :meth:`_describe`.
    """

    ids: list[str]
    classes: tuple[str, ...]
    input_size: tuple[int, int]
    train: bool
    seed: int
    epoch: int
    skip_bad: bool
    skipped: list[str]
    transforms: Compose
    _image_paths: list[Path]
    _objects: list[list[KittiObject]]
    _targets: list[tuple[np.ndarray, np.ndarray]]
    _bad: set[int]
    _windows: list[tuple[int, int, int, int] | None] | None = None  # None: whole images
    mosaic: float = 0.0  # the share of samples made a mosaic of four (augment=mosaic)

    def window(self, i: int) -> tuple[int, int, int, int] | None:
        """The tile ``(x0, y0, x1, y1)`` of sample ``i`` in its image's pixels (``None``: whole)."""
        i = self._index(i)
        return None if self._windows is None else self._windows[i]

    def load(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample ``i`` before the transforms: image (or tile) ``uint8 [H0, W0, 3]`` RGB and a
        target with NumPy ``boxes`` in its pixels and ``labels``. Raises :class:`DataError`."""
        i = self._index(i)
        image = load_image(self._image_paths[i])
        window = self.window(i)
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

    def set_augmentation(self, drift: tuple[int, int], flip_prob: float,
                         crop: tuple[int, int] | None, augment: Sequence[str]) -> None:
        """Replace the training augmentation (:func:`squeezedet.data.augment.build_pipeline`),
        e.g. with a recipe's, chosen after the data was opened and checked."""
        self.transforms = build_pipeline(self.input_size, self.train, drift, flip_prob, crop,
                                         augment)
        self.mosaic = MOSAIC_PROB if self.train and "mosaic" in augment else 0.0

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

    def target_boxes(self, i: int) -> np.ndarray:
        """Sample ``i``'s training boxes, ``float32 [N, 4]`` xyxy in its image's (or tile's)
        pixels, before any transform."""
        return self._targets[i][0]

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

    def _transformed(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample ``i`` (the next readable one when it is bad and skipped) through the transforms."""
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
        return self.transforms(image, target, rng)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Sample ``key``: an index (augmented as the epoch :meth:`set_epoch` chose) or an
        ``(epoch, index)`` pair (:class:`squeezedet.engine.EpochBatchSampler`'s)."""
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        i = self._index(i)
        rng = np.random.default_rng([self.seed, int(epoch), i])
        image, target = self._transformed(i, rng)
        if self.mosaic > 0 and rng.random() < self.mosaic:  # with three samples drawn at random
            others = [self._transformed(int(j), rng) for j in rng.integers(len(self.ids), size=3)]
            size = (image.shape[1], image.shape[0])
            image, target = mosaic([(image, target), *others], size, rng)
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
        augment: extra training augmentation (:func:`squeezedet.data.augment.build_pipeline`;
            ``"mosaic"``: :data:`~squeezedet.data.augment.MOSAIC_PROB` of the samples are four in
            one, the three others drawn from the sample's generator).
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
        augment: Sequence[str] = (),
    ) -> None:
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
        self.transforms: Compose = build_pipeline(self.input_size, self.train, drift, flip_prob,
                                                   crop, augment)
        self.mosaic = MOSAIC_PROB if self.train and "mosaic" in augment else 0.0
        self.skipped: list[str] = list(skipped)
        self._bad: set[int] = set()
        self._class_index = {c.lower(): i for i, c in enumerate(self.classes)}

        self.samples: list[Sample] = list(samples)  # the whole images, for the data check
        self.ids: list[str] = []
        self._image_paths: list[Path] = []
        windows: list[tuple[int, int, int, int] | None] = []
        self._objects: list[list[KittiObject]] = []
        for sample in samples:
            if self.tile is None:
                self.ids.append(sample.image_id)
                self._image_paths.append(sample.image_path)
                windows.append(None)
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
                windows.append(window)
                self._objects.append(clip_objects_to_window(sample.objects, window))
        self._windows = windows
        self._targets = [self._filter(objects) for objects in self._objects]

    def label_of(self, obj: KittiObject) -> int | None:
        """The class index of ``obj`` for the training classes; ``None`` for other classes and
        ignored objects."""
        if is_ignored(obj):
            return None
        return self._class_index.get(obj.type.lower())

    def _describe(self) -> str:
        return str(self.name)

    def __repr__(self) -> str:
        return (f"DetectionDataset({self.name!r}, n={len(self)}, classes={self.classes}, "
                f"input_size={self.input_size}, train={self.train}, tile={self.tile})")


def collate(
    batch: Sequence[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stack images to ``uint8 [B, 3, H, W]``; targets stay a list (their box counts differ)."""
    images = torch.stack([image for image, _ in batch])
    return images, [target for _, target in batch]
