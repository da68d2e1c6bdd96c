"""YOLO (Darknet / Ultralytics) data sets: one text file per image, normalised centre boxes.

A label line is ``class cx cy w h`` with the centre, width and height divided by the image width or
height (so in ``[0, 1]``), class a 0-based index into the class names. A line with more than four
numbers after the class, an even count of them, is a polygon (Ultralytics segments); its bounding
box is used. An image without a label file is a background image.

Class names, first found of: ``names`` of a ``*.yaml`` file in ``ROOT`` (a list, or a mapping from
index to name), ``classes.txt``, ``obj.names``, ``names.txt`` or any ``*.names`` in ``ROOT`` (one
name a line). Without one, the names are the indices (``"0"``, ``"1"``, ...), with a warning.

Images and split, first that applies: ``train``/``val`` entries of that YAML file (a folder, or a
``.txt`` list of image paths, relative to its ``path`` entry or to the YAML's folder);
``ROOT/images/train`` and ``ROOT/images/val`` (or ``valid``); ``ROOT/train.txt`` and
``ROOT/val.txt`` lists; else every image in ``ROOT/images`` (recursively), ``ROOT/obj`` or ``ROOT``
and the deterministic split of :func:`squeezedet.data.splits.resolve_splits`.

The label file of ``.../images/.../a.jpg`` is ``.../labels/.../a.txt`` (the last ``images`` folder
replaced, as Ultralytics does), else ``a.txt`` next to the image. Sample ids are the image stems
(the path below ``ROOT`` joined with ``_`` where stems repeat).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from squeezedet.data.files import (
    ANY_IMAGE_EXTENSIONS,
    check_box,
    copy_image,
    image_size,
    raise_or_skip,
    safe_id,
)
from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.samples import DataSource, Sample
from squeezedet.data.splits import resolve_splits
from squeezedet.errors import DataError, SqueezeDetError

log = logging.getLogger(__name__)

NAME_FILES = ("classes.txt", "obj.names", "names.txt")
#: Tolerance on normalised coordinates (labelling tools write values a hair outside [0, 1]).
NORM_TOLERANCE = 0.01


def _read_text(path: Path) -> str:
    """A text file's contents (a byte-order mark dropped); :class:`DataError` when unreadable."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the file ({exc})") from None


def _yaml_config(root: Path) -> tuple[Path, dict] | None:
    for path in sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml")):
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and "names" in data:
            return path, data
    return None


def class_names(root: Path) -> tuple[list[str] | None, str]:
    """The class names of a YOLO data set and the file they came from (``None``: not found)."""
    config = _yaml_config(root)
    if config is not None:
        path, data = config
        names = data["names"]
        if isinstance(names, dict):
            try:
                names = [names[k] for k in sorted(names, key=int)]
            except (TypeError, ValueError):
                raise DataError(path, "'names' must be a list or a mapping index -> name") from None
        if not isinstance(names, list):
            raise DataError(path, "'names' must be a list or a mapping index -> name")
        return [str(n).strip() for n in names], str(path)
    candidates = [root / n for n in NAME_FILES] + sorted(root.glob("*.names"))
    for path in candidates:
        if path.is_file():
            names = [ln.strip() for ln in _read_text(path).splitlines() if ln.strip()]
            return names, str(path)
    return None, ""


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern)
                  if p.is_file() and p.suffix.lower() in ANY_IMAGE_EXTENSIONS)


def _list_file(path: Path, base: Path) -> list[Path]:
    out = []
    for line in _read_text(path).splitlines():
        if line.strip():
            p = Path(line.strip())
            out.append(p if p.is_absolute() else (base / p))
    return out


def _entry(value: object, base: Path, where: Path) -> list[Path]:
    path = base / str(value)
    if path.is_dir():
        return _images_in(path, True)
    if path.is_file() and path.suffix == ".txt":
        return _list_file(path, base)
    raise DataError(where, f"train/val entry {value!r} is neither a folder nor a .txt list "
                    f"({path} not found)")


def image_lists(root: Path) -> tuple[dict[str, list[Path]], str]:
    """Images per split (``"all"`` when the data set has none) and where the split came from."""
    config = _yaml_config(root)
    if config is not None and "train" in config[1] and "val" in config[1]:
        path, data = config
        base = Path(str(data.get("path") or path.parent))
        if not base.is_absolute():
            base = path.parent / base
        if base.is_dir():
            return ({s: _entry(data[s], base, path) for s in ("train", "val")},
                    f"train/val of {path.name}")
    for val_name in ("val", "valid"):
        if (root / "images" / "train").is_dir() and (root / "images" / val_name).is_dir():
            return ({"train": _images_in(root / "images" / "train", True),
                     "val": _images_in(root / "images" / val_name, True)},
                    f"images/train and images/{val_name}")
    if (root / "train.txt").is_file() and (root / "val.txt").is_file():
        return ({s: _list_file(root / f"{s}.txt", root) for s in ("train", "val")},
                "train.txt and val.txt")
    for folder, recursive in ((root / "images", True), (root / "obj", False), (root, False)):
        if folder.is_dir():
            found = _images_in(folder, recursive)
            if found:
                return {"all": found}, ""
    return {"all": []}, ""


def label_path(image: Path) -> Path:
    """The label file of an image: ``images`` → ``labels`` in the path, else next to it."""
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        candidate = Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")
        if candidate.is_file():
            return candidate
    return image.with_suffix(".txt")


def read_yolo_file(path: Path, size: tuple[int, int], names: Sequence[str]) -> list[KittiObject]:
    """Objects of one label file, boxes in pixels of an image of ``size (W, H)``."""
    text = _read_text(path)
    width, height = size
    objects = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls_value = float(parts[0])
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise DataError(path, f"expected numbers 'class cx cy w h', found {line.strip()!r}",
                            lineno) from None
        if not cls_value.is_integer() or not 0 <= cls_value < len(names):
            raise DataError(path, f"class index {parts[0]} is not one of 0..{len(names) - 1} "
                            f"({len(names)} class names)", lineno)
        if len(values) == 4:
            cx, cy, w, h = values
            box_n = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            box_n = (min(xs), min(ys), max(xs), max(ys))
        else:
            raise DataError(path, f"expected 'class cx cy w h' (5 fields), found {len(parts)} "
                            "fields", lineno)
        if min(values) < -NORM_TOLERANCE or max(values) > 1 + NORM_TOLERANCE:
            raise DataError(path, "coordinates must be normalised to [0, 1] (divided by the image "
                            f"width/height), found {line.strip()!r}", lineno)
        box = (box_n[0] * width, box_n[1] * height, box_n[2] * width, box_n[3] * height)
        objects.append(KittiObject(type=names[int(cls_value)], box=check_box(box, path, lineno)))
    return objects


def read_yolo(root: Path, skip_bad: bool = False) -> DataSource:
    """A YOLO data set (see the module docstring)."""
    names, names_source = class_names(root)
    lists, rule = image_lists(root)
    every: list[Path] = []
    for images in lists.values():
        for p in images:
            if p not in every:
                every.append(p)
    if names is None:
        top = -1
        for image in every:
            lab = label_path(image)
            if lab.is_file():
                for line in _read_text(lab).splitlines():
                    if line.split():
                        try:
                            top = max(top, int(float(line.split()[0])))
                        except ValueError:
                            pass
        names = [str(i) for i in range(top + 1)]
        log.warning("%s: no class names file (classes.txt or data.yaml); classes are named by "
                    "their index", root)
    stems = [p.stem for p in every]
    samples: list[Sample] = []
    by_path: dict[Path, str] = {}
    errors: list[DataError] = []
    for image in every:
        if not image.is_file():
            errors.append(DataError(image, "image file not found (listed in the split)"))
            continue
        sid = image.stem if stems.count(image.stem) == 1 else safe_id(
            str(image.relative_to(root).with_suffix("")) if image.is_relative_to(root)
            else str(image.with_suffix("")))
        try:
            lab = label_path(image)
            size = image_size(image)
            objects = read_yolo_file(lab, size, names) if lab.is_file() else []
        except DataError as exc:
            errors.append(exc)
            continue
        by_path[image] = sid
        samples.append(Sample(sid, image, tuple(objects), size,
                              label_file=lab if lab.is_file() else None))
    skipped = raise_or_skip(errors, skip_bad)
    ids = [s.image_id for s in samples]
    if "all" in lists:
        splits, rule = resolve_splits(ids, None, "")
    else:
        explicit = {s: [by_path[p] for p in images if p in by_path] for s, images in lists.items()}
        splits, rule = resolve_splits(ids, explicit, rule)
    if not samples and not errors:
        raise SqueezeDetError(f"{root}: no images found for a YOLO data set")
    source = DataSource("yolo", root, samples, tuple(names), splits, rule, "ap", skipped)
    if names_source:
        source.split_rule += f"; class names from {names_source}"
    return source


def write_yolo(splits: Mapping[str, Sequence[Sample]], classes: Sequence[str], dst: Path) -> int:
    """Write ``images/<split>/``, ``labels/<split>/``, ``data.yaml`` and ``classes.txt``.

    Objects of other classes, and ignored objects (YOLO has no "difficult" flag), are left out;
    returns how many ignored objects were dropped. Values are written with 6 decimals.
    """
    index = {c.lower(): i for i, c in enumerate(classes)}
    dropped = 0
    for split, samples in splits.items():
        (dst / "images" / split).mkdir(parents=True, exist_ok=True)
        (dst / "labels" / split).mkdir(parents=True, exist_ok=True)
        for s in samples:
            image = copy_image(s.image_path, dst / "images" / split / s.image_id)
            width, height = s.size or image_size(image)
            lines = []
            for o in s.objects:
                if o.type.lower() not in index:
                    continue
                if o.occluded >= 3:
                    dropped += 1
                    continue
                x1, y1, x2, y2 = o.box
                lines.append(f"{index[o.type.lower()]} {(x1 + x2) / 2 / width:.6f} "
                             f"{(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
                             f"{(y2 - y1) / height:.6f}")
            (dst / "labels" / split / f"{s.image_id}.txt").write_text(
                "".join(line + "\n" for line in lines))
    (dst / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    data: dict[str, object] = {"path": "."}
    data.update({split: f"images/{split}" for split in ("train", "val") if split in splits})
    data["names"] = list(classes)
    (dst / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dropped
