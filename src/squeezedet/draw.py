"""Drawing detections on images: class-coloured boxes with the class name and score.

Pure Pillow (``ImageDraw`` and its default font); the input image is never modified. Boxes are
``(x1, y1, x2, y2)`` in the image's own pixels, continuous coordinates (pixel ``i`` covers
``[i, i + 1)``), as everywhere in the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Box colours (RGB) by class index; class ``i`` gets ``PALETTE[i % len(PALETTE)]``. The first three
#: are the KITTI classes' (Car, Pedestrian, Cyclist): blue, red, green.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 140, 255), (255, 60, 60), (40, 200, 70), (255, 180, 0), (170, 80, 255),
    (0, 210, 200), (255, 110, 190), (140, 140, 140), (120, 90, 40), (0, 90, 140),
)


def class_colour(label: int) -> tuple[int, int, int]:
    """The RGB colour of class index ``label``."""
    return PALETTE[int(label) % len(PALETTE)]


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background`` (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


#: the smallest label text a box's size may ask for, pixels
MIN_LABEL_FONT = 9


def label_font_size(box_height: float, largest: int) -> int:
    """The label text height for a box ``box_height`` pixels high: 40 % of it, at least
    :data:`MIN_LABEL_FONT` and at most ``largest`` (the image's size), so that the labels of small,
    dense objects (tree crowns in an aerial photo) do not cover their neighbours."""
    return int(min(largest, max(MIN_LABEL_FONT, round(0.4 * box_height))))


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` pixels (the fixed bitmap font on old Pillow versions)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no size argument
        return ImageFont.load_default()


def draw_detections(
    image: np.ndarray | Image.Image,
    boxes: Sequence[Sequence[float]] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    *,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """A copy of ``image`` with every given detection drawn.

    Args:
        image: ``uint8 [H, W, 3]`` RGB array or a Pillow image.
        boxes: ``[N, 4]`` xyxy in the image's pixels.
        scores: ``[N]`` detection scores in ``[0, 1]`` (printed with two decimals).
        labels: ``[N]`` class indices into ``class_names``.
        line_width: box outline in pixels (default: about 1/400 of the image's mean side, ≥ 2).
        font_size: label text height in pixels (default: about 3.5 % of the image's height,
            ≥ 11, and at most 40 % of the box's height, ≥ 9: :func:`label_font_size`).

    Returns:
        An RGB Pillow image of the same size. Lower-scoring boxes are drawn first, so the best
        ones end up on top; each label sits above its box (inside it when there is no room).
    """
    canvas = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(
        np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
    canvas = canvas.copy()
    width, height = canvas.size
    if line_width is None:
        line_width = max(2, round((width + height) / 2 / 400))
    largest = max(11, round(0.035 * height)) if font_size is None else font_size
    draw = ImageDraw.Draw(canvas)
    boxes_a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores_a = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels_a = np.asarray(labels, dtype=np.int64).reshape(-1)
    if not len(boxes_a) == len(scores_a) == len(labels_a):
        raise ValueError("boxes, scores and labels must have the same length")
    for i in np.argsort(scores_a, kind="stable"):
        x1, y1, x2, y2 = boxes_a[i]
        colour = class_colour(labels_a[i])
        draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=colour,
                       width=line_width)
        label = int(labels_a[i])
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        text = f"{name} {scores_a[i]:.2f}"
        font = _font(largest if font_size is not None else label_font_size(y2 - y1, largest))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 4, bottom - top + 4
        tx = min(max(0.0, x1), max(0.0, width - tw))
        ty = y1 - th if y1 - th >= 0 else y1
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=colour)
        draw.text((tx + 2 - left, ty + 2 - top), text, fill=_text_colour(colour), font=font)
    return canvas
