"""Tiling geometry for large images (aerial, microscopy): overlapping windows.

A tile of ``(tw, th)`` pixels is moved in steps of ``round(tw * (1 - overlap))`` (at least 1); the
last tile of a row (column) is placed flush with the right (bottom) edge, so every pixel is covered
and no tile leaves the image. An image smaller than the tile along an axis gets one window of the
image's own length there (no padding; the window is then resized to the network like any image).

For training, every window is one sample (see :class:`squeezedet.data.base.DetectionDataset`);
for prediction, :func:`squeezedet.inference.tiled.predict_tiled` runs a detector on every window.
Choose an overlap at least as large as the largest object, so that every object lies wholly inside
some tile.
"""

from __future__ import annotations

from squeezedet.errors import SqueezeDetError


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
