"""Helpers the format readers and writers share: finding and sizing images, checking boxes,
collecting bad samples, copying images and naming files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from squeezedet.data.images import load_image
from squeezedet.errors import DataError

log = logging.getLogger(__name__)

#: Image file extensions the readers of other formats accept (case-insensitive), preferred first.
ANY_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


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
