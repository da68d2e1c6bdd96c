"""Box deltas relative to anchors: :func:`encode` and :func:`decode`, an exact pair.

With anchor ``(a_cx, a_cy, a_w, a_h)`` and box ``(cx, cy, w, h)``::

    δx = (cx − a_cx) / a_w      δy = (cy − a_cy) / a_h
    δw = ln(w / a_w)            δh = ln(h / a_h)

Decoding uses :func:`safe_exp` for the sizes, so huge predicted deltas never produce ``inf`` (nor
``inf · 0 = NaN`` in the gradient).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from squeezedet.ops.boxes import clip_boxes, cxcywh_to_xyxy, xyxy_to_cxcywh

#: Above this point the exponential continues as its tangent line.
EXP_THRESHOLD = 1.0


def safe_exp(x: Tensor, threshold: float = EXP_THRESHOLD) -> Tensor:
    """``exp(x)`` for ``x ≤ threshold``, else ``e^t · (x − t + 1)``: continuous in value and slope.

    The exponential is only evaluated on ``min(x, threshold)``, so no overflow reaches either the
    value or the gradient.
    """
    t = torch.as_tensor(threshold, dtype=x.dtype, device=x.device)
    below = torch.exp(torch.minimum(x, t))
    above = math.exp(threshold) * (x - t + 1.0)
    return torch.where(x > t, above, below)


def encode(boxes: Tensor, anchors: Tensor) -> Tensor:
    """Deltas ``[..., 4]`` (δx, δy, δw, δh) that take ``anchors`` to ``boxes`` (both xyxy ``[..., 4]``).

    Boxes must have positive width and height.
    """
    b = xyxy_to_cxcywh(boxes)
    a = xyxy_to_cxcywh(anchors)
    return torch.stack(
        (
            (b[..., 0] - a[..., 0]) / a[..., 2],
            (b[..., 1] - a[..., 1]) / a[..., 3],
            torch.log(b[..., 2] / a[..., 2]),
            torch.log(b[..., 3] / a[..., 3]),
        ),
        dim=-1,
    )


def decode(
    deltas: Tensor, anchors: Tensor, image_size: tuple[int, int] | None = None
) -> Tensor:
    """Boxes xyxy ``[..., 4]`` from deltas ``[..., 4]`` and anchors xyxy (broadcastable).

    When ``image_size`` ``(W, H)`` is given the boxes are clipped to the image.
    """
    a = xyxy_to_cxcywh(anchors)
    cx = a[..., 0] + deltas[..., 0] * a[..., 2]
    cy = a[..., 1] + deltas[..., 1] * a[..., 3]
    w = a[..., 2] * safe_exp(deltas[..., 2])
    h = a[..., 3] * safe_exp(deltas[..., 3])
    boxes = cxcywh_to_xyxy(torch.stack((cx, cy, w, h), dim=-1))
    if image_size is not None:
        boxes = clip_boxes(boxes, image_size[0], image_size[1])
    return boxes
