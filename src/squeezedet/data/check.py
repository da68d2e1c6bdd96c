"""The data check that runs before training: the whole data set, both splits, in seconds.

:func:`open_checked` opens the training and validation sets of a data folder (any format) and
checks every sample of both before the first step, so that one bad file stops a run at once
instead of hours later, and so that nothing is left out without a word:

- every label line is parsed (all bad lines are collected, not only the first);
- every image's header is read with Pillow's lazy open (its size, without decoding the pixels);
  a PNG must end with its ``IEND`` chunk and a JPEG with its end-of-image marker, else the image
  is decoded to find out whether it is truncated; an image whose size differs from the size its
  annotation states (VOC ``<size>``, COCO ``width``/``height``) is an error too;
- every training box is fitted to its image (:func:`~squeezedet.data.box_fitting.fit_boxes_to_image`):
  boxes cut by the border are clipped and counted; boxes outside the image, of zero area or
  clipped to nothing are left out and counted, per file; objects of classes not trained on are
  counted per class;
- a class asked for with ``classes`` (``--classes``) that has no object in the training split is
  an error, and so is a training split without a single object to learn from.

Bad samples are listed together (``file:line: message``, the first :data:`MAX_LISTED`, then a
count) in a :class:`DataCheckError`; with ``skip_bad`` they are left out instead and the report
says how many and which. :class:`DataReport` holds the counts; :meth:`DataReport.summary_line`
is the line training prints and :meth:`DataReport.write` the ``data_report.json`` of the run
folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from squeezedet.data.box_fitting import CLIPPED_AWAY, OUTSIDE, ZERO_AREA, fit_boxes_to_image
from squeezedet.data.dataset import DetectionDataset, SampleSet
from squeezedet.data.images import image_file_size, load_image
from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.samples import is_ignored
from squeezedet.errors import DataError, SqueezeDetError

#: Bad samples listed in a :class:`DataCheckError` before the rest are only counted.
MAX_LISTED = 20

#: How the files of the image formats end when they are complete.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"

#: Why a box is left out, in the order of the summary line.
REASONS = (OUTSIDE, ZERO_AREA, CLIPPED_AWAY)


def _n(count: int, one: str, many: str | None = None) -> str:
    """``"1 box"``, ``"2 boxes"``, ``"1,234 bad samples"``."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


class DataCheckError(SqueezeDetError):
    """Bad samples found by the data check: the first line says how many and where to look; the
    next lines list them (``file:line: message``)."""


def inspect_image(path: str | Path) -> tuple[int, int]:
    """``(W, H)`` of an image file, from its header, after making sure that the file is complete.

    The pixels are decoded only when the file does not end as its format requires (PNG: the
    ``IEND`` chunk; JPEG: an end-of-image marker in its last 64 bytes; WebP and BMP: the length
    in the header) or its format has no such mark (TIFF, GIF, ...). Raises :class:`DataError`
    naming the file when it is missing, empty, not an image, or truncated.
    """
    path = Path(path)
    size = image_file_size(path)
    try:
        with path.open("rb") as f:
            with Image.open(f) as img:
                width, height = img.size
                fmt = img.format
            complete = _ends_completely(f, fmt, size)
    except UnidentifiedImageError:
        raise DataError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"corrupt image ({exc})") from None
    if width <= 0 or height <= 0:
        raise DataError(path, f"image has no pixels (size {width}x{height})")
    if not complete:
        load_image(path)  # decoding tells: raises DataError when the data are cut short
    return int(width), int(height)


def _ends_completely(f: Any, fmt: str | None, size: int) -> bool:
    """Whether an image file visibly ends where its format says (``False``: decode to know)."""
    if fmt == "PNG":
        f.seek(max(size - len(_PNG_END), 0))
        return bool(f.read() == _PNG_END)
    if fmt in ("JPEG", "MPO"):
        f.seek(max(size - 64, 0))
        return _JPEG_END in f.read()
    if fmt == "WEBP":  # RIFF header: bytes 4..8 hold the file length minus 8
        f.seek(4)
        return int.from_bytes(f.read(4), "little") + 8 <= size
    if fmt == "BMP":  # bytes 2..6 hold the file length
        f.seek(2)
        return int.from_bytes(f.read(4), "little") <= size
    return False


@dataclass
class DataReport:
    """What the data check found (see the module docstring). Counts are over both splits; an
    image in both splits counts once."""

    root: str
    format: str
    classes: tuple[str, ...]
    images: dict[str, int] = field(default_factory=dict)  # split -> images (samples) kept
    targets: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> boxes
    bad: list[str] = field(default_factory=list)  # bad samples ("file:line: message")
    skipped: bool = False  # the bad samples were left out (skip_bad); else the check raised
    left_out: Counter[str] = field(default_factory=Counter)  # reason -> boxes
    other_classes: Counter[str] = field(default_factory=Counter)  # type -> objects
    ignored: int = 0  # difficult / crowd objects (neither trained on nor scored)
    clipped: int = 0  # boxes cut by the image border, kept clipped
    per_file: dict[str, Counter[str]] = field(default_factory=dict)  # file -> what -> count
    boxes: list[dict[str, Any]] = field(default_factory=list)  # every box left out or clipped
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def _count(self, file: str, what: str, n: int = 1) -> None:
        self.per_file.setdefault(file, Counter())[what] += n

    def summary_line(self) -> str:
        """One line: images per split, bad samples, boxes left out (by reason and class),
        boxes clipped, where the details are."""
        n_images = ", ".join(f"{n:,} {split}" for split, n in self.images.items())
        parts = [f"data check of {self.root} ({self.format}): {n_images} images in "
                 f"{self.seconds:.1f} s"]
        if self.bad:
            shown = self.bad[0] + (f" and {len(self.bad) - 1} more" if len(self.bad) > 1 else "")
            parts.append(f"{_n(len(self.bad), 'bad sample')} left out (--skip-bad): {shown}")
        dropped = [f"{self.left_out[r]:,} {r}" for r in REASONS if self.left_out[r]]
        if self.other_classes:
            top = ", ".join(f"{t} {n:,}" for t, n in self.other_classes.most_common(4))
            more = ", ..." if len(self.other_classes) > 4 else ""
            dropped.append(f"{sum(self.other_classes.values()):,} of other classes ({top}{more})")
        if dropped:
            parts.append("boxes left out: " + ", ".join(dropped))
        if self.clipped:
            parts.append(f"{_n(self.clipped, 'box', 'boxes')} clipped to "
                         f"{'its' if self.clipped == 1 else 'their'} image")
        parts += self.notes
        return "; ".join(parts)

    @property
    def noteworthy(self) -> bool:
        """Whether anything was left out, clipped or noted (worth printing even when quiet)."""
        return bool(self.bad or self.clipped or sum(self.left_out.values()) or self.notes)

    def to_json(self) -> dict[str, Any]:
        """Plain types for ``data_report.json``."""
        return {
            "root": self.root, "format": self.format, "classes": list(self.classes),
            "seconds": round(self.seconds, 3), "images": self.images,
            "training_boxes": self.targets,
            "bad_samples": {"left_out": self.skipped, "count": len(self.bad), "list": self.bad},
            "boxes_left_out": {r: self.left_out[r] for r in REASONS},
            "objects_of_other_classes": dict(self.other_classes.most_common()),
            "ignored_objects": self.ignored,
            "boxes_clipped": self.clipped,
            "per_file": {f: dict(c) for f, c in sorted(self.per_file.items())},
            "boxes": self.boxes,
            "notes": self.notes,
            "summary": self.summary_line(),
        }

    def write(self, path: str | Path) -> None:
        """Write :meth:`to_json` as JSON."""
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


@dataclass
class _Image:
    """One whole image of a split and its annotation, as the check sees it."""

    indices: list[int]  # the data set's samples cut from it (one without tiling)
    path: Path
    label_file: Path | None
    objects: Sequence[KittiObject]
    stated_size: tuple[int, int] | None


def _images_of(ds: SampleSet) -> list[_Image]:
    """The whole images behind the samples of a data set (tiles are grouped by image)."""
    if isinstance(ds, DetectionDataset):
        by_path: dict[Path, list[int]] = {}
        for j, p in enumerate(ds._image_paths):
            by_path.setdefault(p, []).append(j)
        out = []
        for s in ds.samples:
            if ds.tile is None or s.image_path in by_path:  # tiling left out unreadable ones
                out.append(_Image(by_path.get(s.image_path, []) if ds.tile is not None else [],
                                  s.image_path, s.label_file, s.objects, s.size))
        if ds.tile is None:  # untiled: sample j is image j
            for j, image in enumerate(out):
                image.indices = [j]
        return out
    label_path = getattr(ds, "label_path", None)
    return [_Image([j], ds._image_paths[j], label_path(j) if label_path else None,
                   ds._objects[j], None) for j in range(len(ds))]


def _not_a_skipped_sample(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("skipping bad sample")


@contextlib.contextmanager
def _quiet_readers() -> Iterator[None]:
    """The readers log each bad sample they skip; the check lists them itself."""
    loggers = [logging.getLogger(f"squeezedet.data.{m}") for m in ("base", "kitti")]
    for logger in loggers:
        logger.addFilter(_not_a_skipped_sample)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(_not_a_skipped_sample)


def check_datasets(splits: dict[str, SampleSet | None], *, skip_bad: bool = False,
                   root: str | Path = "", data_format: str = "",
                   explicit_classes: Sequence[str] | None = None,
                   max_listed: int = MAX_LISTED) -> DataReport:
    """Check the samples of the data sets ``splits`` (``{"train": ds, "val": ds}``) as the module
    docstring says, and leave the bad ones out of them with ``skip_bad`` (else raise
    :class:`DataCheckError`). Label problems the data sets met when they were built with
    ``skip_bad=True`` (their :attr:`skipped`) are part of the report.

    ``explicit_classes``: the classes the user asked for; each must have a training object.
    """
    start = time.perf_counter()
    present = {name: ds for name, ds in splits.items() if ds is not None}
    first = next(iter(present.values()))
    report = DataReport(str(root), data_format, tuple(first.classes))
    bad: list[str] = []
    for ds in present.values():
        bad += [m for m in ds.skipped if m not in bad]
    sizes: dict[Path, tuple[int, int] | DataError] = {}
    seen: set[Path] = set()  # images counted already (an image may be in both splits)
    bad_indices: dict[str, set[int]] = {name: set() for name in present}
    for name, ds in present.items():
        targets: Counter[str] = Counter()
        for image in _images_of(ds):
            if image.path not in sizes:
                try:
                    sizes[image.path] = inspect_image(image.path)
                except DataError as exc:
                    sizes[image.path] = exc
            size = sizes[image.path]
            if not isinstance(size, DataError) and image.stated_size is not None \
                    and tuple(image.stated_size) != size:
                size = DataError(image.label_file or image.path,
                                 f"the annotation states an image of {image.stated_size[0]}x"
                                 f"{image.stated_size[1]}, but {image.path.name} is {size[0]}x"
                                 f"{size[1]}; its boxes may not fit it: fix the size or re-label")
            if isinstance(size, DataError):
                if str(size) not in bad:
                    bad.append(str(size))
                bad_indices[name].update(image.indices)
                continue
            first_time = image.path not in seen
            seen.add(image.path)
            _check_boxes(ds, image, size, report, targets, count=first_time)
        report.targets[name] = {c: targets[c] for c in ds.classes}
    report.bad = bad
    report.skipped = skip_bad
    if bad and not skip_bad:
        raise DataCheckError(_bad_message(bad, root, max_listed))
    for name, ds in present.items():
        ds.drop_samples(bad_indices[name])
        report.images[name] = len(ds)
    if report.images.get("train") == 0:
        left = f" (all {_n(len(bad), 'bad sample')} left out, first {bad[0]})" if bad else ""
        raise SqueezeDetError(f"{root}: the training split has no images{left}")
    _check_classes(report, explicit_classes, root)
    report.seconds = time.perf_counter() - start
    return report


def _check_boxes(ds: SampleSet, image: _Image, size: tuple[int, int], report: DataReport,
                 targets: Counter[str], count: bool) -> None:
    """Count what happens to the objects of one image (see :func:`check_datasets`)."""
    key = str(image.label_file or image.path)
    boxes, where = [], []
    for k, obj in enumerate(image.objects):
        if obj.type.lower() == "dontcare":
            continue
        label = ds.label_of(obj)
        if label is None:
            if not count:
                continue
            if is_ignored(obj) and obj.type.lower() in {c.lower() for c in ds.classes}:
                report.ignored += 1
            else:
                report.other_classes[obj.type] += 1
                report._count(key, "other class")
            continue
        boxes.append(obj.box)
        where.append((k, obj.type, label))
    if not boxes:
        return
    width, height = size
    if all(0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height for x1, y1, x2, y2 in boxes):
        for _, _, label in where:  # every box inside its image (the usual case): nothing to fit
            targets[ds.classes[label]] += 1
        return
    _, _, reasons, clipped = fit_boxes_to_image(np.asarray(boxes), size)
    for (k, cls, label), reason, was_clipped, box in zip(where, reasons, clipped, boxes,
                                                          strict=True):
        if reason is None:
            targets[ds.classes[label]] += 1
        if not count:
            continue
        if reason is not None:
            report.left_out[reason] += 1
            report._count(key, reason)
        elif was_clipped:
            report.clipped += 1
            report._count(key, "clipped")
        if reason is not None or was_clipped:
            report.boxes.append({"file": key, "object": k + 1, "class": cls,
                                 "box": [round(float(v), 2) for v in box],
                                 "image_size": list(size), "what": reason or "clipped"})


def _check_classes(report: DataReport, explicit: Sequence[str] | None, root: str | Path) -> None:
    """Raise when an asked-for class (or every class) has no training object."""
    counts = report.targets.get("train", {})
    have = Counter({**report.other_classes, **{c: n for c, n in counts.items() if n}})
    listing = ", ".join(f"{t} {n:,}" for t, n in have.most_common()) or "none"
    if explicit:
        missing = [c for c in report.classes if counts.get(c, 0) == 0]
        if missing:
            raise SqueezeDetError(
                f"{root}: --classes {','.join(explicit)}: no object of class "
                f"{', '.join(repr(c) for c in missing)} in the training split (objects in the "
                f"data: {listing}); choose classes the data has")
    elif counts and not any(counts.values()):
        raise SqueezeDetError(
            f"{root}: the training split has no object of the classes "
            f"{', '.join(report.classes)} to learn from (objects in the data: {listing}); "
            "choose the classes with --classes")
    else:
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            report.notes.append(f"no training object of class {', '.join(empty)}")


def _bad_message(bad: Sequence[str], root: str | Path, max_listed: int) -> str:
    """The text of a :class:`DataCheckError`: one line for one bad sample, else a first line
    with the count and one line per sample."""
    if len(bad) == 1:
        return f"{bad[0]} (fix it, or leave the sample out with --skip-bad / skip_bad=true)"
    head = (f"{len(bad)} bad samples in {root} (fix them, or leave them out with --skip-bad / "
            "skip_bad=true):")
    lines = [head] + [f"  {m}" for m in bad[:max_listed]]
    if len(bad) > max_listed:
        lines.append(f"  ... and {len(bad) - max_listed} more")
    return "\n".join(lines)


def open_checked(cfg: Any, root: str | Path, need_val: bool = True
                 ) -> tuple[SampleSet, SampleSet | None, DataReport]:
    """The training and validation data sets of ``root`` for a
    :class:`~squeezedet.config.TrainConfig` (as :func:`~squeezedet.data.formats.open_dataset`
    builds them), checked as the module docstring says; returns them with the report.

    Raises :class:`DataCheckError` listing the bad samples (unless ``cfg.skip_bad``), or
    :class:`SqueezeDetError` for classes without objects.
    """
    from squeezedet.data.formats import open_dataset, resolve_format

    start = time.perf_counter()
    fmt = resolve_format(cfg.data_format, root)
    with _quiet_readers():
        # built leniently so that every bad sample is found, not only the first
        train_ds, val_ds = open_dataset(dataclasses.replace(cfg, skip_bad=True), root, need_val)
    report = check_datasets({"train": train_ds, "val": val_ds}, skip_bad=cfg.skip_bad,
                            root=root, data_format=fmt, explicit_classes=cfg.classes)
    for ds in (train_ds, val_ds):
        if ds is not None:
            ds.skip_bad = cfg.skip_bad
            ds.skipped = []
    report.seconds = time.perf_counter() - start
    return train_ds, val_ds, report
