"""Pascal VOC data sets: one XML file per image.

Layouts: the VOC devkit's (``ROOT/Annotations/*.xml``, ``ROOT/JPEGImages/*``,
``ROOT/ImageSets/Main/{train,val}.txt``) or a flat folder of XML files next to their images (what
labelImg writes). The image of ``a.xml`` is looked up, in order, as the ``filename`` of the XML,
then by the XML's ``filename`` stem and then by its own stem with any image extension, in
``JPEGImages/``, the XML's folder, ``images/`` and ``ROOT``.

Quirks of real files that are tolerated: a ``filename`` whose extension (or folder) differs from
the image on disk; a missing ``filename``; a missing, empty or zero ``size`` (then read from the
image); float coordinates (``"123.5"``); ``difficult``/``truncated`` given as ``0``/``1``,
``"0.0"`` or missing; surrounding whitespace in names.

Coordinates: VOC boxes are 1-based inclusive pixel indices, so ``(xmin, ymin, xmax, ymax)`` becomes
the continuous box ``(xmin - 1, ymin - 1, xmax, ymax)`` (as in Detectron2), clamped at 0 for files
that wrote 0-based values; the writer does the inverse. ``difficult`` objects are kept as ignored
objects (see :mod:`squeezedet.data.samples`). Class names: the object names, sorted.

Split: ``ImageSets/Main/train.txt`` and ``val.txt`` when both exist, else the deterministic split of
:func:`squeezedet.data.splits.resolve_splits`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from squeezedet.data.files import check_box, copy_image, find_image_by_stem, image_size, raise_or_skip
from squeezedet.data.kitti import read_split_file
from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.samples import IGNORE_OCCLUSION, DataSource, Sample, is_ignored
from squeezedet.data.splits import resolve_splits
from squeezedet.errors import DataError


def annotation_dir(root: Path) -> Path:
    """``ROOT/Annotations`` when it exists, else ``ROOT`` (a flat folder)."""
    return root / "Annotations" if (root / "Annotations").is_dir() else root


def _number(elem: ET.Element | None, tag: str, path: Path, line: int | None,
            default: float | None = None) -> float | None:
    text = None if elem is None else elem.findtext(tag)
    if text is None or not text.strip():
        if default is None:
            raise DataError(path, f"<{tag}> is missing", line)
        return default
    try:
        return float(text.strip())
    except ValueError:
        raise DataError(path, f"<{tag}> is not a number: {text.strip()!r}", line) from None


def _find_image(root: Path, xml_path: Path, filename: str | None) -> Path | None:
    folders = [root / "JPEGImages", xml_path.parent, root / "images", root]
    if filename:
        name = Path(filename.replace("\\", "/")).name
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
        stems = [Path(name).stem, xml_path.stem]
    else:
        stems = [xml_path.stem]
    for stem in stems:
        for folder in folders:
            found = find_image_by_stem(folder, stem)
            if found is not None:
                return found
    return None


def read_voc_file(path: Path, root: Path) -> Sample:
    """One VOC XML file as a :class:`Sample` (see the module docstring for the conventions)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        tree = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DataError(path, f"not well-formed XML ({exc})", exc.position[0]) from None
    except OSError as exc:
        raise DataError(path, f"cannot read the file ({exc})") from None
    if tree.tag != "annotation":
        raise DataError(path, f"not a VOC annotation: the root element is <{tree.tag}>", 1)
    lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"<object[\s>]", text)]
    filename = (tree.findtext("filename") or "").strip() or None
    image = _find_image(root, path, filename)
    if image is None:
        raise DataError(path, f"no image found for this annotation (filename {filename!r}); "
                        "expected it in JPEGImages/ or next to the XML file")
    size_elem = tree.find("size")
    width = _number(size_elem, "width", path, None, 0.0) or 0.0
    height = _number(size_elem, "height", path, None, 0.0) or 0.0
    size = (int(width), int(height)) if width > 0 and height > 0 else None
    objects = []
    for k, obj in enumerate(tree.findall("object")):
        line = lines[k] if k < len(lines) else None
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(path, "an <object> has no <name>", line)
        box_elem = obj.find("bndbox")
        if box_elem is None:
            raise DataError(path, f"object {name!r} has no <bndbox>", line)
        xmin, ymin, xmax, ymax = (_number(box_elem, t, path, line)
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
        assert xmin is not None and ymin is not None and xmax is not None and ymax is not None
        box = check_box((max(xmin - 1.0, 0.0), max(ymin - 1.0, 0.0), xmax, ymax), path, line)
        difficult = _number(obj, "difficult", path, line, 0.0)
        objects.append(KittiObject(type=name, box=box, truncated=0.0,
                                   occluded=IGNORE_OCCLUSION if difficult else 0))
    return Sample(path.stem, image, tuple(objects), size, label_file=path)


def read_voc(root: Path, skip_bad: bool = False) -> DataSource:
    """Every annotation of a VOC data set (see the module docstring)."""
    ann = annotation_dir(root)
    samples: list[Sample] = []
    errors: list[DataError] = []
    for path in sorted(ann.glob("*.xml")):
        try:
            samples.append(read_voc_file(path, root))
        except DataError as exc:
            errors.append(exc)
    classes = tuple(sorted({o.type for s in samples for o in s.objects}))
    ids = [s.image_id for s in samples]
    sets = root / "ImageSets" / "Main"
    explicit = None
    rule = ""
    if (sets / "train.txt").is_file() and (sets / "val.txt").is_file():
        explicit = {}
        unreadable = {e.path.stem for e in errors if e.path is not None}
        for name in ("train", "val"):
            listed = read_split_file(sets / f"{name}.txt")
            known = set(ids)
            for image_id, line in listed:
                if image_id not in known and image_id not in unreadable:
                    errors.append(DataError(sets / f"{name}.txt",
                                            f"id {image_id} is listed but has no annotation "
                                            f"{ann / (image_id + '.xml')}", line))
            explicit[name] = [i for i, _ in listed if i in known]
        rule = f"{sets}/train.txt and val.txt"
    skipped = raise_or_skip(errors, skip_bad)
    splits, rule = resolve_splits(ids, explicit, rule)
    return DataSource("voc", root, samples, classes, splits, rule, "ap", skipped)


def write_voc(splits: Mapping[str, Sequence[Sample]], classes: Sequence[str], dst: Path) -> None:
    """Write a VOC devkit layout: ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``.

    Objects of other classes than ``classes`` are left out; ignored objects get ``difficult`` 1.
    """
    keep = {c.lower() for c in classes}
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for split, samples in splits.items():
        (dst / "ImageSets" / "Main" / f"{split}.txt").write_text(
            "".join(f"{s.image_id}\n" for s in samples))
        for s in samples:
            if s.image_id in written:
                continue
            written.add(s.image_id)
            image = copy_image(s.image_path, dst / "JPEGImages" / s.image_id)
            width, height = s.size or image_size(image)
            parts = [
                "<annotation>",
                "  <folder>JPEGImages</folder>",
                f"  <filename>{escape(image.name)}</filename>",
                f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
            ]
            for o in s.objects:
                if o.type.lower() not in keep:
                    continue
                x1, y1, x2, y2 = o.box
                parts += [
                    "  <object>",
                    f"    <name>{escape(o.type)}</name>",
                    f"    <truncated>{int(o.truncated > 0)}</truncated>",
                    f"    <difficult>{int(is_ignored(o))}</difficult>",
                    f"    <bndbox><xmin>{x1 + 1:g}</xmin><ymin>{y1 + 1:g}</ymin>"
                    f"<xmax>{x2:g}</xmax><ymax>{y2:g}</ymax></bndbox>",
                    "  </object>",
                ]
            parts.append("</annotation>")
            (dst / "Annotations" / f"{s.image_id}.xml").write_text("\n".join(parts) + "\n")
