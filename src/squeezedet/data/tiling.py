"""Tiling geometry for large images (aerial, microscopy): overlapping windows.

A tile of ``(tw, th)`` pixels is moved in steps of ``round(tw * (1 - overlap))`` (at least 1); the
last tile of a row (column) is placed flush with the right (bottom) edge, so every pixel is covered
and no tile leaves the image. An image smaller than the tile along an axis gets one window of the
image's own length there (no padding; the window is then resized to the network like any image).

For training, every window is one sample (see :class:`squeezedet.data.dataset.DetectionDataset`),
with the objects of its image as :func:`clip_objects_to_window` sees them;
for prediction, :func:`squeezedet.inference.tiled.predict_tiled` runs a detector on every window.
Choose an overlap at least as large as the largest object, so that every object lies wholly inside
some tile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.samples import IGNORE_OCCLUSION
from squeezedet.errors import SqueezeDetError

#: Least fraction of an object's area inside a tile for the object to be a target of the tile.
MIN_VISIBLE = 0.5


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of the windows along one axis of ``length`` pixels.

    >>> tile_origins(256, 64, 0.25)   # stride 48, the last one flush with the edge
    [0, 48, 96, 144, 192]
    >>> tile_origins(50, 64, 0.25)
    [0]
    """
    if tile <= 0 or length <= 0:
        raise SqueezeDetError(
            f"tile and image sizes must be positive (tile {tile}, image {length})")
    if not 0.0 <= overlap < 1.0:
        raise SqueezeDetError(f"the tile overlap must be in [0, 1), got {overlap}")
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    origins = list(range(0, length - tile + 1, stride))
    if origins[-1] != length - tile:
        origins.append(length - tile)
    return origins


def tile_windows(image_size: tuple[int, int], tile: tuple[int, int],
                 overlap: float) -> list[tuple[int, int, int, int]]:
    """Windows ``(x0, y0, x1, y1)`` (pixels, end exclusive) covering an image of ``(W, H)``, in
    row-major order (top row first, left to right)."""
    width, height = image_size
    tw, th = tile
    xs = tile_origins(width, tw, overlap)
    ys = tile_origins(height, th, overlap)
    return [(x, y, min(x + tw, width), min(y + th, height)) for y in ys for x in xs]


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
