"""Data sets in KITTI, COCO, Pascal VOC and YOLO formats: detection, reading, writing, opening.

:func:`detect_format` tells the format from a folder (what ``data_format: auto`` does):

- ``kitti``: ``ROOT/training/label_2/`` exists;
- ``voc``: ``ROOT/Annotations/*.xml`` or ``*.xml`` files in ``ROOT``;
- ``coco``: a COCO instances ``*.json`` in ``ROOT/annotations/`` or ``ROOT``;
- ``yolo``: ``ROOT/labels/``, a ``*.yaml`` with ``names``, a class-names file (``classes.txt``,
  ``obj.names``) or ``train.txt``.

:func:`load_source` reads a folder into a :class:`~squeezedet.data.samples.DataSource` (the format
modules :mod:`~squeezedet.data.voc`, :mod:`~squeezedet.data.coco`, :mod:`~squeezedet.data.yolo`
document their layouts, quirks and split rules; KITTI's split is ``ImageSets/{train,val}.txt``,
else the deterministic split). :func:`open_dataset` builds the training and validation data sets
for :func:`squeezedet.train.train`; :func:`write_source` writes a source in any format (``squeezedet
convert``).

Class names come from the data in its order (KITTI: the three classes of the original, Car,
Pedestrian and Cyclist, for training; every type but DontCare for conversion); ``classes`` in the
configuration (``--classes a,b,c``) selects and orders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from squeezedet.config import augment_names
from squeezedet.data.dataset import DetectionDataset
from squeezedet.data.files import copy_image, raise_or_skip
from squeezedet.data.kitti_format import KITTI_TYPES, read_kitti_file, write_kitti_file
from squeezedet.data.samples import DataSource, Sample, select_classes
from squeezedet.data.splits import resolve_splits
from squeezedet.errors import DataError, SqueezeDetError, check_output_dir

FORMATS = ("kitti", "coco", "voc", "yolo")


def detect_format(root: str | Path) -> str:
    """The format of the data set in ``root`` (see the module docstring)."""
    from squeezedet.data.coco import instance_files
    from squeezedet.data.yolo import NAME_FILES, _yaml_config

    root = Path(root)
    if not root.is_dir():
        raise SqueezeDetError(f"data set folder {root} does not exist")
    if (root / "training" / "label_2").is_dir():
        return "kitti"
    if any((root / "Annotations").glob("*.xml")) or any(root.glob("*.xml")):
        return "voc"
    if instance_files(root):
        return "coco"
    if ((root / "labels").is_dir() or _yaml_config(root) is not None
            or any((root / n).is_file() for n in NAME_FILES) or any(root.glob("*.names"))
            or (root / "train.txt").is_file()):
        return "yolo"
    raise SqueezeDetError(
        f"cannot tell the format of {root}: expected training/label_2/ (KITTI), Annotations/*.xml "
        "(VOC), annotations/*.json (COCO) or labels/ with classes.txt (YOLO); name it with "
        "--format kitti|coco|voc|yolo"
    )


def resolve_format(name: str, root: str | Path) -> str:
    """``name`` checked against :data:`FORMATS`, or detected from ``root`` when ``"auto"``."""
    name = (name or "auto").lower()
    if name == "auto":
        return detect_format(root)
    if name not in FORMATS:
        raise SqueezeDetError(f"unknown data format {name!r}; use auto, {', '.join(FORMATS)}")
    return name


def read_kitti(root: Path, skip_bad: bool = False) -> DataSource:
    """A KITTI-layout data set as a source (every labelled image; split from ``ImageSets``)."""
    from squeezedet.data.kitti import find_images, labelled_ids, read_split_file

    ids, orphans = labelled_ids(root)
    images = find_images(root / "training" / "image_2")
    errors = [DataError(root / "training" / "label_2" / f"{i}.txt", "no image for this label")
              for i in orphans]
    samples = []
    for image_id in ids:
        label_file = root / "training" / "label_2" / f"{image_id}.txt"
        try:
            objects = read_kitti_file(label_file)
        except DataError as exc:
            errors.append(exc)
            continue
        samples.append(Sample(image_id, images[image_id], tuple(objects), label_file=label_file))
    skipped = raise_or_skip(errors, skip_bad)
    found = {o.type for s in samples for o in s.objects if o.type.lower() != "dontcare"}
    order = {t: i for i, t in enumerate(KITTI_TYPES)}
    classes = tuple(sorted(found, key=lambda t: (order.get(t, len(order)), t)))
    explicit = None
    sets = root / "ImageSets"
    if (sets / "train.txt").is_file() and (sets / "val.txt").is_file():
        known = {s.image_id for s in samples}
        explicit = {n: [i for i, _ in read_split_file(sets / f"{n}.txt") if i in known]
                    for n in ("train", "val")}
    splits, rule = resolve_splits([s.image_id for s in samples], explicit,
                                  "ImageSets/train.txt and val.txt")
    return DataSource("kitti", root, samples, classes, splits, rule, "kitti", skipped)


def load_source(root: str | Path, data_format: str = "auto", skip_bad: bool = False) -> DataSource:
    """Read the data set in ``root`` (format named or ``"auto"``)."""
    from squeezedet.data.coco import read_coco
    from squeezedet.data.voc import read_voc
    from squeezedet.data.yolo import read_yolo

    root = Path(root)
    fmt = resolve_format(data_format, root)
    readers = {"kitti": read_kitti, "coco": read_coco, "voc": read_voc, "yolo": read_yolo}
    return readers[fmt](root, skip_bad)


def open_dataset(cfg: Any, root: str | Path, need_val: bool = True) -> tuple[Any, Any]:
    """Training (augmented) and validation data sets of ``root`` for a
    :class:`~squeezedet.config.TrainConfig` (``data_format``, ``classes``, ``tile`` ...).

    An untiled KITTI data set gives :class:`~squeezedet.data.kitti.KittiDataset` objects, exactly as
    before; everything else a :class:`~squeezedet.data.dataset.DetectionDataset`. Splits are named by
    ``cfg.train_split`` / ``cfg.val_split`` (``"train"``, ``"val"`` or ``"all"``).
    """
    from squeezedet.data.kitti import DEFAULT_CLASSES, KittiDataset
    from squeezedet.models.registry import network_input_size

    root = Path(root)
    size = network_input_size(cfg.model, cfg.input_size)
    crop = getattr(cfg, "crop", None)
    if crop is not None and (crop[0] > size[0] or crop[1] > size[1]):
        raise SqueezeDetError(f"crop {crop[0]}x{crop[1]} must fit in the input size "
                              f"{size[0]}x{size[1]} (the windows are cut from the images "
                              "resized to it); set input_size or a smaller crop")
    fmt = resolve_format(cfg.data_format, root)
    tile = getattr(cfg, "tile", None)
    augment = augment_names(getattr(cfg, "augment", ""))
    overlap = float(getattr(cfg, "tile_overlap", 0.2))
    if fmt == "kitti" and tile is None:
        classes = cfg.classes or DEFAULT_CLASSES
        train = KittiDataset(root, cfg.train_split, classes, size, train=True,
                             skip_bad=cfg.skip_bad, drift=cfg.drift, flip_prob=cfg.flip_prob,
                             seed=cfg.seed, crop=crop, augment=augment)
        val = KittiDataset(root, cfg.val_split, classes, size, train=False,
                           skip_bad=cfg.skip_bad) if need_val else None
        return train, val
    source = load_source(root, fmt, cfg.skip_bad)
    requested = cfg.classes
    if fmt == "kitti" and requested is None:
        requested = DEFAULT_CLASSES
    classes = select_classes(requested, source.classes, root)
    train_ds = DetectionDataset(
        source.split(cfg.train_split), classes, size, train=True, drift=cfg.drift,
        flip_prob=cfg.flip_prob, seed=cfg.seed, tile=tile, tile_overlap=overlap,
        skip_bad=cfg.skip_bad, metric=source.metric, name=f"{root} ({fmt}, {cfg.train_split})",
        skipped=source.skipped, crop=crop, augment=augment)
    val_ds = None
    if need_val:
        val_ds = DetectionDataset(
            source.split(cfg.val_split), classes, size, train=False, tile=tile,
            tile_overlap=overlap, skip_bad=cfg.skip_bad, metric=source.metric,
            name=f"{root} ({fmt}, {cfg.val_split})")
    return train_ds, val_ds


def write_kitti(splits: Mapping[str, Sequence[Sample]], classes: Sequence[str], dst: Path) -> None:
    """Write a KITTI layout (``training/image_2``, ``training/label_2``, ``ImageSets``); objects of
    other classes are left out, ignored ones keep ``occluded`` 3; images other than PNG/JPEG are
    re-encoded as PNG. The 3-D fields get KITTI's "unknown" values."""
    from squeezedet.data.images import IMAGE_EXTENSIONS

    keep = {c.lower() for c in classes} | {"dontcare"}
    (dst / "training" / "image_2").mkdir(parents=True, exist_ok=True)
    (dst / "training" / "label_2").mkdir(parents=True, exist_ok=True)
    (dst / "ImageSets").mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for split, samples in splits.items():
        (dst / "ImageSets" / f"{split}.txt").write_text("".join(f"{s.image_id}\n" for s in samples))
        for s in samples:
            if s.image_id in written:
                continue
            written.add(s.image_id)
            copy_image(s.image_path, dst / "training" / "image_2" / s.image_id, IMAGE_EXTENSIONS)
            write_kitti_file(dst / "training" / "label_2" / f"{s.image_id}.txt",
                             [o for o in s.objects if o.type.lower() in keep])


def write_source(source: DataSource, data_format: str, dst: str | Path,
                 classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``source`` (its train and val splits) to ``dst`` in ``data_format``.

    ``classes`` selects and orders the classes (default: all of the source). Returns a summary:
    ``{"format", "classes", "images": {split: n}, "objects": n, "dropped_ignored": n}``.
    """
    from squeezedet.data.coco import write_coco
    from squeezedet.data.voc import write_voc
    from squeezedet.data.yolo import write_yolo

    fmt = data_format.lower()
    if fmt not in FORMATS:
        raise SqueezeDetError(f"unknown data format {data_format!r}; use {', '.join(FORMATS)}")
    dst = check_output_dir(dst, "destination")
    if dst.exists() and any(dst.iterdir()):
        raise SqueezeDetError(f"{dst} exists and is not empty; choose a new output folder")
    dst.mkdir(parents=True, exist_ok=True)
    chosen = select_classes(classes, source.classes, source.root)
    if classes is not None:
        present = {o.type.lower() for s in source.samples for o in s.objects}
        missing = [c for c in chosen if c.lower() not in present]
        if missing:
            raise SqueezeDetError(f"{source.root}: --classes: no object of class "
                                  f"{', '.join(repr(c) for c in missing)} in the data; choose "
                                  "classes the data has")
    splits: dict[str, list[Sample]] = {name: source.split(name) for name in ("train", "val")
                                       if name in source.splits}
    dropped = 0
    if fmt == "kitti":
        write_kitti(splits, chosen, dst)
    elif fmt == "voc":
        write_voc(splits, chosen, dst)
    elif fmt == "coco":
        write_coco(splits, chosen, dst)
    else:
        dropped = write_yolo(splits, chosen, dst)
    keep = {c.lower() for c in chosen}
    n_objects = sum(1 for s in source.samples for o in s.objects if o.type.lower() in keep)
    return {"format": fmt, "classes": list(chosen),
            "images": {k: len(v) for k, v in splits.items()}, "objects": n_objects,
            "dropped_ignored": dropped}
