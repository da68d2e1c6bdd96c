"""Training boxes fitted to their image: clipped to it, or left out with the reason why.

Used when a sample is loaded (:class:`~squeezedet.data.dataset.SampleSet`), by the data check
before training (:mod:`squeezedet.data.check`) and by the box statistics for anchors
(:mod:`squeezedet.data.box_statistics`), so that all three agree box for box.
"""

from __future__ import annotations

import numpy as np

from squeezedet.data.transforms import MIN_CLIPPED_SIZE

#: Why a training box is left out (see :func:`fit_boxes_to_image`).
OUTSIDE, ZERO_AREA, CLIPPED_AWAY = "outside the image", "zero area", "clipped to nothing"



def fit_boxes_to_image(boxes: np.ndarray, size: tuple[int, int]
                       ) -> tuple[np.ndarray, np.ndarray, list[str | None], np.ndarray]:
    """The training boxes of an image of ``size = (W, H)``: each box clipped to ``[0, W] × [0, H]``,
    and left out when it has zero width or height (:data:`ZERO_AREA`), does not overlap the image
    (:data:`OUTSIDE`), or keeps less than :data:`MIN_CLIPPED_SIZE` pixels of width or height after
    the clipping (:data:`CLIPPED_AWAY`).

    Args:
        boxes: ``[N, 4]`` xyxy in the image's pixels, ``x2 >= x1`` and ``y2 >= y1``.

    Returns:
        ``(kept float32 [M, 4], keep bool [N], reasons, clipped bool [N])``: ``reasons[i]`` is
        ``None`` for a kept box, else why it was left out; ``clipped[i]`` marks kept boxes that the
        image border cut.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = float(size[0]), float(size[1])
    fitted = np.stack([np.clip(b[:, 0], 0, width), np.clip(b[:, 1], 0, height),
                       np.clip(b[:, 2], 0, width), np.clip(b[:, 3], 0, height)], axis=1)
    fw, fh = fitted[:, 2] - fitted[:, 0], fitted[:, 3] - fitted[:, 1]
    cut = (fitted != b).any(axis=1)
    reasons: list[str | None] = []
    for i in range(len(b)):
        if b[i, 2] <= b[i, 0] or b[i, 3] <= b[i, 1]:
            reasons.append(ZERO_AREA)
        elif fw[i] <= 0 or fh[i] <= 0:
            reasons.append(OUTSIDE)
        elif cut[i] and (fw[i] < MIN_CLIPPED_SIZE or fh[i] < MIN_CLIPPED_SIZE):
            reasons.append(CLIPPED_AWAY)
        else:
            reasons.append(None)
    keep = np.array([r is None for r in reasons], dtype=bool)
    return fitted[keep].astype(np.float32), keep, reasons, cut & keep
