"""The KITTI object detection data set (and any data set laid out like it).

Layout under ``ROOT``::

    training/image_2/000000.png      images (.png, .jpg or .jpeg; any size, 8/16-bit, gray/RGB(A))
    training/label_2/000000.txt      KITTI label files (15 fields a line; 16 with a score)
    ImageSets/train.txt, val.txt     optional splits: one id per line

``split="train"`` (or any other name) reads ``ImageSets/<split>.txt``; ``split="all"`` or ``None``
uses every label file that has an image. ``squeezedet split ROOT`` writes a deterministic split.

All label files of the split are parsed once when the data set is built, so malformed labels,
labels without an image and ids listed in a split file but missing are reported up front as
:class:`DataError` (file and line). Images are decoded when a sample is loaded. With
``skip_bad=True`` such samples are left out instead and the messages kept in :attr:`skipped`.

Only the configured classes (matched case-insensitively) become training targets; every object of
a label file, DontCare, Van and the rest included, stays available through :meth:`ground_truth`
for the evaluator.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from squeezedet.data.augment import MOSAIC_PROB, build_pipeline
from squeezedet.data.dataset import SampleSet
from squeezedet.data.files import raise_or_skip
from squeezedet.data.images import IMAGE_EXTENSIONS
from squeezedet.data.kitti_format import KITTI_TYPES, KittiObject, read_kitti_file
from squeezedet.data.splits import make_split
from squeezedet.data.transforms import Compose
from squeezedet.errors import DataError, SqueezeDetError

DEFAULT_CLASSES = ("Car", "Pedestrian", "Cyclist")

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def find_images(image_dir: Path) -> dict[str, Path]:
    """Map id (file stem) -> image path for the images of a folder; ``.png`` is preferred over
    ``.jpg`` over ``.jpeg`` when an id has several (extensions matched case-insensitively)."""
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    found: dict[str, tuple[int, Path]] = {}
    for path in image_dir.iterdir():
        r = rank.get(path.suffix.lower())
        if r is None or not path.is_file():
            continue
        if path.stem not in found or r < found[path.stem][0]:
            found[path.stem] = (r, path)
    return {stem: path for stem, (_, path) in found.items()}


def _layout(root: str | Path) -> tuple[Path, Path, Path]:
    """``(root, image_dir, label_dir)``; raises a clear error when the layout is not KITTI's."""
    root = Path(root)
    if not root.is_dir():
        raise SqueezeDetError(f"data set folder {root} does not exist")
    image_dir = root / "training" / "image_2"
    label_dir = root / "training" / "label_2"
    for folder, what in ((label_dir, "label files"), (image_dir, "images")):
        if not folder.is_dir():
            raise SqueezeDetError(
                f"{root} is not a KITTI-layout data set: the folder {folder} for the {what} is "
                "missing (expected ROOT/training/image_2/*.png and ROOT/training/label_2/*.txt)"
            )
    return root, image_dir, label_dir


def labelled_ids(root: str | Path) -> tuple[list[str], list[str]]:
    """Ids (sorted) with both a label file and an image, and ids of label files without an image."""
    _, image_dir, label_dir = _layout(root)
    images = find_images(image_dir)
    label_ids = sorted(p.stem for p in label_dir.glob("*.txt") if p.is_file())
    return [i for i in label_ids if i in images], [i for i in label_ids if i not in images]


def read_split_file(path: Path) -> list[tuple[str, int]]:
    """Ids of a split file with their line numbers; blank lines skipped.

    Raises :class:`DataError` on a line with more than one field or a repeated id.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is dropped
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the split file ({exc})") from None
    ids: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 1:
            raise DataError(path, f"expected one image id per line, found {line.strip()!r}", lineno)
        if parts[0] in seen:
            raise DataError(
                path, f"id {parts[0]} is listed twice (first on line {seen[parts[0]]})", lineno
            )
        seen[parts[0]] = lineno
        ids.append((parts[0], lineno))
    return ids


def write_split(
    root: str | Path, val_fraction: float = 0.5, seed: int = 0, overwrite: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """Write ``ROOT/ImageSets/train.txt`` and ``val.txt`` from the labelled images of ``ROOT``.

    Returns ``(train_ids, val_ids, label_ids_without_image)``; the latter are left out. Refuses to
    replace existing split files unless ``overwrite``.
    """
    root = Path(root)
    ids, orphans = labelled_ids(root)
    train_ids, val_ids = make_split(ids, val_fraction, seed)
    sets = root / "ImageSets"
    targets = {"train": sets / "train.txt", "val": sets / "val.txt"}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise SqueezeDetError(
            f"{' and '.join(existing)} already exist(s); pass --overwrite to replace the split"
        )
    sets.mkdir(exist_ok=True)
    for name, chosen in (("train", train_ids), ("val", val_ids)):
        targets[name].write_text("".join(f"{i}\n" for i in chosen))
    return train_ids, val_ids, orphans


def _canonical_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Class names with KITTI's spelling where a name matches a KITTI type case-insensitively."""
    if isinstance(classes, str):
        classes = [classes]
    canonical = {t.lower(): t for t in KITTI_TYPES}
    names = tuple(canonical.get(c.strip().lower(), c.strip()) for c in classes)
    if not names or any(not n for n in names):
        raise SqueezeDetError(
            f"the list of classes to train on is empty or has a blank name: {classes!r}"
        )
    lowered = [n.lower() for n in names]
    dupes = sorted({n for n in lowered if lowered.count(n) > 1})
    if dupes:
        raise SqueezeDetError(f"classes listed twice (case-insensitively): {', '.join(dupes)}")
    if "dontcare" in lowered:
        raise SqueezeDetError("DontCare marks regions to ignore; it cannot be a class to train on")
    return names


class KittiDataset(SampleSet):
    """KITTI-layout object detection data set returning network-ready samples.

    Args:
        root: the data set folder (see the module docstring for the layout).
        split: name of a split file ``ROOT/ImageSets/<split>.txt``; ``"all"`` or ``None`` for every
            labelled image.
        classes: object types to train on, in label-index order; matched case-insensitively.
        input_size: network input ``(W, H)`` in pixels.
        train: apply the random augmentation (drift, flip) before the resize.
        skip_bad: leave out bad samples (recorded in :attr:`skipped`) instead of raising.
        drift: largest shift ``(dx, dy)`` in original-image pixels.
        flip_prob: probability of a horizontal flip.
        crop: ``(W, H)``, at most ``input_size``: training samples are random windows of this
            size cut from the image resized to ``input_size`` (objects keep their input-size
            scale; :class:`~squeezedet.data.transforms.RandomCrop`); ``None``: whole images.
        seed: base seed of the augmentation; sample ``i`` of epoch ``e`` draws from a generator
            seeded with ``(seed, e, i)``, so results do not depend on the number of workers.

    ``dataset[i]`` is ``(image, target)``: ``image`` ``uint8 [3, H, W]`` RGB at the input size;
    ``target`` holds ``boxes`` (``float32 [N, 4]``, ``(x1, y1, x2, y2)`` in input-size pixels),
    ``labels`` (``int64 [N]``, indices into :attr:`classes`), ``image_id`` (str) and
    ``orig_size`` (``(H0, W0)`` of the file's image).

    Bad images found while loading (with ``skip_bad``) are logged as warnings and added to
    :attr:`skipped` of the process that loaded them; with DataLoader workers that is the worker's
    copy, so the main process sees only the problems found at construction (label problems).

    Call :meth:`set_epoch` before each epoch so that the augmentation differs between epochs. The
    epoch is an attribute of the data set object, so with a DataLoader it reaches the workers only
    when they are (re)started for the epoch, i.e. with ``persistent_workers=False`` (the default).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        classes: Sequence[str] = DEFAULT_CLASSES,
        input_size: tuple[int, int] = (1248, 384),
        train: bool = False,
        skip_bad: bool = False,
        drift: tuple[int, int] = (150, 100),
        flip_prob: float = 0.5,
        seed: int = 0,
        crop: tuple[int, int] | None = None,
        augment: Sequence[str] = (),
    ) -> None:
        self.root, self.image_dir, self.label_dir = _layout(root)
        self.split = split
        self.classes: tuple[str, ...] = _canonical_classes(classes)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.train = bool(train)
        self.skip_bad = bool(skip_bad)
        self.seed = int(seed)
        self.epoch = 0
        self.transforms: Compose = build_pipeline(self.input_size, self.train, drift, flip_prob,
                                                   crop, augment)
        self.mosaic = MOSAIC_PROB if self.train and "mosaic" in augment else 0.0
        self.skipped: list[str] = []
        self._bad: set[int] = set()
        self._class_index = {c.lower(): i for i, c in enumerate(self.classes)}

        images = find_images(self.image_dir)
        errors: list[DataError] = []
        self.ids: list[str] = []
        self._image_paths: list[Path] = []
        self._objects: list[list[KittiObject]] = []
        for image_id, where in self._listed_ids():
            label_path = self.label_dir / f"{image_id}.txt"
            try:
                if not label_path.is_file():
                    if where is None:
                        raise DataError(label_path, "label file not found")
                    raise DataError(
                        where[0],
                        f"id {image_id} is listed but its label file {label_path} does not exist",
                        where[1],
                    )
                objects = read_kitti_file(label_path)
                if image_id not in images:
                    raise DataError(
                        label_path,
                        f"no image for this label: expected {self.image_dir / image_id}"
                        f" with one of {', '.join(IMAGE_EXTENSIONS)}",
                    )
            except DataError as exc:
                errors.append(exc)
                continue
            self.ids.append(image_id)
            self._image_paths.append(images[image_id])
            self._objects.append(objects)
        self.skipped += raise_or_skip(errors, self.skip_bad)
        self._targets = [self._filter(objects) for objects in self._objects]

    def _listed_ids(self) -> list[tuple[str, tuple[Path, int] | None]]:
        """Ids of the split with where each was listed (split file and line), or ``None``."""
        if self.split is None or self.split == "all":
            return [(p.stem, None) for p in sorted(self.label_dir.glob("*.txt")) if p.is_file()]
        if not _SPLIT_NAME.match(self.split):
            raise SqueezeDetError(f"invalid split name {self.split!r}; use e.g. 'train' or 'val'")
        split_file = self.root / "ImageSets" / f"{self.split}.txt"
        if not split_file.is_file():
            raise SqueezeDetError(
                f"no split file {split_file}: run `squeezedet split {self.root}` to write a "
                "train/val split, or use split 'all' for every labelled image"
            )
        return [(i, (split_file, line)) for i, line in read_split_file(split_file)]

    def label_of(self, obj: KittiObject) -> int | None:
        """The class index of ``obj`` for the training classes (matched case-insensitively);
        ``None`` for other types."""
        return self._class_index.get(obj.type.lower())

    def label_path(self, i: int) -> Path:
        """Path of sample ``i``'s label file."""
        return self.label_dir / f"{self.ids[self._index(i)]}.txt"

    def _describe(self) -> str:
        return f"{self.root} (split {self.split})"

    def __repr__(self) -> str:
        return (
            f"KittiDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"classes={self.classes}, input_size={self.input_size}, train={self.train})"
        )

