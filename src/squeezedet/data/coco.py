"""COCO data sets: an instances JSON file (``images``, ``annotations``, ``categories``) and a
folder of images.

Files: every ``*.json`` in ``ROOT/annotations/`` or ``ROOT/`` with those three keys. When one file
name contains ``train`` and another ``val`` (e.g. ``instances_train2017.json`` and
``instances_val2017.json``), they are the splits; with a single file, the deterministic split of
:func:`squeezedet.data.splits.resolve_splits` is used.

Images: ``file_name`` is looked up relative to, in order, ``ROOT/<part>/``, ``ROOT/images/<part>/``,
``ROOT/images/``, ``ROOT/`` and the JSON file's folder, where ``<part>`` is the JSON's stem without
``instances_`` (``train2017``). The sample id is ``file_name`` without its extension (folders joined
with ``_``).

Boxes: ``bbox = [x, y, w, h]`` in continuous pixels → ``(x, y, x + w, y + h)``. ``iscrowd`` objects
are kept as ignored objects (see :mod:`squeezedet.data.samples`). Class names: the categories, by id.
Images without annotations are kept (as background images).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from squeezedet.data.files import check_box, copy_image, image_size, raise_or_skip, safe_id
from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.samples import IGNORE_OCCLUSION, DataSource, Sample, is_ignored
from squeezedet.data.splits import resolve_splits
from squeezedet.errors import DataError, SqueezeDetError


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc.msg})", exc.lineno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the file ({exc})") from None


def is_instances_file(path: Path) -> bool:
    """Whether a JSON file looks like a COCO instances file (checked on its first 64 kB)."""
    try:
        with path.open("rb") as f:
            head = f.read(65536).decode("utf-8", errors="replace")
    except OSError:
        return False
    return '"images"' in head or '"annotations"' in head or '"categories"' in head


def instance_files(root: Path) -> list[Path]:
    """Candidate instances files of ``root`` (``annotations/*.json``, then ``*.json``)."""
    found = []
    for folder in (root / "annotations", root):
        if folder.is_dir():
            found += [p for p in sorted(folder.glob("*.json")) if is_instances_file(p)]
    return found


def polygon_bbox(segmentation: Any) -> list[float] | None:
    """``[x, y, w, h]`` around the polygons of a COCO ``segmentation`` (a list of flat
    ``[x1, y1, x2, y2, ...]`` lists); ``None`` for run-length masks or anything else."""
    if not isinstance(segmentation, list) or not segmentation:
        return None
    xs: list[float] = []
    ys: list[float] = []
    for polygon in segmentation:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            return None
        try:
            xs += [float(v) for v in polygon[0::2]]
            ys += [float(v) for v in polygon[1::2]]
        except (TypeError, ValueError):
            return None
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _image_folders(root: Path, json_path: Path) -> list[Path]:
    part = json_path.stem.removeprefix("instances_")
    return [root / part, root / "images" / part, root / "images", root, json_path.parent]


def read_coco_file(path: Path, root: Path, skip_bad: bool = False
                   ) -> tuple[list[Sample], list[str], list[DataError]]:
    """Samples, category names (by id) and bad-sample errors of one instances file."""
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(path, "not a COCO instances file: no list of 'images'")
    try:
        cats = sorted(data.get("categories", []), key=lambda c: int(c["id"]))
        names = {int(c["id"]): str(c["name"]).strip() for c in cats}
        images = {int(im["id"]): im for im in data["images"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"malformed 'categories' or 'images' entry ({exc!r})") from None
    objects: dict[int, list[KittiObject]] = {i: [] for i in images}
    errors: list[DataError] = []
    bad_images: set[int] = set()
    for ann in data.get("annotations", []):
        try:
            image_id = int(ann["image_id"])
            where = f"annotation {ann.get('id', '?')} (image {image_id})"
            if image_id not in images:
                raise DataError(path, f"{where}: unknown image_id")
            cat = int(ann["category_id"])
            if cat not in names:
                raise DataError(path, f"{where}: unknown category_id {cat}")
            bbox = ann["bbox"] if "bbox" in ann else polygon_bbox(ann.get("segmentation"))
            if bbox is None:
                raise DataError(path, f"{where}: no 'bbox' (and no polygon 'segmentation' to take "
                                "one from)")
            x, y, w, h = (float(v) for v in bbox)
        except DataError as exc:
            errors.append(exc)
            continue
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(DataError(path, f"malformed annotation {ann!r:.80} ({exc!r})"))
            continue
        try:
            box = check_box((x, y, x + w, y + h), path, None, f"{where}: bbox")
        except DataError as exc:
            errors.append(exc)
            bad_images.add(image_id)
            continue
        crowd = bool(ann.get("iscrowd", 0))
        objects[image_id].append(KittiObject(type=names[cat], box=box,
                                             occluded=IGNORE_OCCLUSION if crowd else 0))
    folders = _image_folders(root, path)
    samples = []
    for image_id, im in images.items():
        if image_id in bad_images:
            continue
        file_name = str(im.get("file_name", "")).replace("\\", "/")
        found = next((f / file_name for f in folders if (f / file_name).is_file()), None)
        if found is None:
            errors.append(DataError(path, f"image {image_id}: file {file_name!r} not found in "
                                    f"{', '.join(str(f) for f in folders[:3])} or {root}"))
            continue
        w, h = im.get("width"), im.get("height")
        try:
            size = (int(w), int(h)) if w and h else None
        except (TypeError, ValueError):
            errors.append(DataError(path, f"image {image_id}: width and height must be whole "
                                    f"numbers, found {w!r} and {h!r}"))
            continue
        if size is not None and min(size) <= 0:
            size = None  # read from the image
        sid = safe_id(str(Path(file_name).with_suffix("")))
        samples.append(Sample(sid, found, tuple(objects[image_id]), size, label_file=path))
    return samples, [names[k] for k in names], errors


def read_coco(root: Path, skip_bad: bool = False) -> DataSource:
    """A COCO data set (see the module docstring for the files, splits and conventions)."""
    files = instance_files(root)
    if not files:
        raise SqueezeDetError(f"{root}: no COCO instances file (annotations/*.json)")
    train_files = [p for p in files if "train" in p.stem.lower()]
    val_files = [p for p in files if "val" in p.stem.lower()]
    if len(files) > 1 and not (len(train_files) == 1 and len(val_files) == 1):
        raise SqueezeDetError(
            f"{root}: found several COCO files ({', '.join(p.name for p in files)}); expected "
            "one, or one with 'train' and one with 'val' in its name"
        )
    parts = [("train", train_files[0]), ("val", val_files[0])] if len(files) > 1 else \
        [("all", files[0])]
    samples: list[Sample] = []
    explicit: dict[str, list[str]] = {}
    classes: list[str] = []
    errors: list[DataError] = []
    for split, path in parts:
        found, names, errs = read_coco_file(path, root, skip_bad)
        errors += errs
        for name in names:
            if name not in classes:
                classes.append(name)
        seen = {s.image_id for s in samples}
        for s in found:
            if s.image_id in seen:  # the same file in both splits: keep one sample
                continue
            samples.append(s)
        explicit[split] = [s.image_id for s in found]
    skipped = raise_or_skip(errors, skip_bad)
    ids = [s.image_id for s in samples]
    if "all" in explicit:
        splits, rule = resolve_splits(ids, None, "")
    else:
        splits, rule = resolve_splits(ids, explicit, f"{parts[0][1].name} and {parts[1][1].name}")
    return DataSource("coco", root, samples, tuple(classes), splits, rule, "ap", skipped)


def write_coco(splits: Mapping[str, Sequence[Sample]], classes: Sequence[str], dst: Path) -> None:
    """Write ``annotations/instances_<split>.json`` and ``images/`` (objects of ``classes`` only;
    ignored objects get ``iscrowd`` 1; ``category_id`` is the class index + 1)."""
    (dst / "annotations").mkdir(parents=True, exist_ok=True)
    (dst / "images").mkdir(parents=True, exist_ok=True)
    cat = {c.lower(): i + 1 for i, c in enumerate(classes)}
    copied: dict[str, Path] = {}
    for split, samples in splits.items():
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for n, s in enumerate(samples, start=1):
            if s.image_id not in copied:
                copied[s.image_id] = copy_image(s.image_path, dst / "images" / s.image_id)
            path = copied[s.image_id]
            width, height = s.size or image_size(path)
            images.append({"id": n, "file_name": path.name, "width": width, "height": height})
            for o in s.objects:
                if o.type.lower() not in cat:
                    continue
                x1, y1, x2, y2 = o.box
                annotations.append({
                    "id": len(annotations) + 1, "image_id": n, "category_id": cat[o.type.lower()],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(is_ignored(o)),
                })
        data = {"images": images, "annotations": annotations,
                "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}
        (dst / "annotations" / f"instances_{split}.json").write_text(json.dumps(data, indent=1))
