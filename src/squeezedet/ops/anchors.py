"""Anchors: a pure function of (grid, image size, shapes).

Order is (row, column, anchor shape), the same order in which the head's predictions are
flattened. Centres follow the original SqueezeDet: column ``j`` at ``(j + 1) * W / (gw + 1)`` and row
``i`` at ``(i + 1) * H / (gh + 1)`` — evenly spaced with the borders excluded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: KITTI anchor shapes (w, h) in input pixels at 1248×384, from the original SqueezeDet config.
KITTI_ANCHOR_SHAPES: tuple[tuple[float, float], ...] = (
    (36, 37), (366, 174), (115, 59), (162, 87), (38, 90),
    (258, 173), (224, 108), (78, 170), (72, 43),
)
#: The input size the KITTI shapes were chosen for, (W, H).
KITTI_ANCHOR_INPUT_SIZE = (1248, 384)


def make_anchors(
    grid_size: tuple[int, int],
    image_size: tuple[int, int],
    shapes: Sequence[Sequence[float]],
    device: torch.device | str | None = None,
) -> Tensor:
    """Anchor boxes for every grid cell and shape.

    Args:
        grid_size: ``(gw, gh)`` columns and rows of the output grid.
        image_size: ``(W, H)`` network input size in pixels.
        shapes: ``K`` anchor ``(w, h)`` in input pixels.

    Returns:
        ``float32 [gh * gw * K, 4]`` xyxy boxes, ordered by row, then column, then shape.
    """
    gw, gh = grid_size
    width, height = image_size
    wh = torch.as_tensor(shapes, dtype=torch.float32, device=device).reshape(-1, 2)
    cx = torch.arange(1, gw + 1, dtype=torch.float32, device=device) * width / (gw + 1)
    cy = torch.arange(1, gh + 1, dtype=torch.float32, device=device) * height / (gh + 1)
    k = wh.shape[0]
    cy_, cx_ = torch.meshgrid(cy, cx, indexing="ij")  # [gh, gw]
    centres = torch.stack((cx_, cy_), dim=-1)[:, :, None, :].expand(gh, gw, k, 2)
    half = (wh / 2)[None, None].expand(gh, gw, k, 2)
    boxes = torch.cat((centres - half, centres + half), dim=-1)
    return boxes.reshape(-1, 4)


def scale_anchor_shapes(
    shapes: Sequence[Sequence[float]], from_size: tuple[int, int], to_size: tuple[int, int]
) -> tuple[tuple[float, float], ...]:
    """Rescale anchor ``(w, h)`` chosen for input ``from_size (W, H)`` to input ``to_size``."""
    sx = to_size[0] / from_size[0]
    sy = to_size[1] / from_size[1]
    return tuple((float(w) * sx, float(h) * sy) for w, h in shapes)
