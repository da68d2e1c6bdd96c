"""Anchor shapes by k-means over box sizes with the ``1 - IoU`` distance (YOLOv2's recipe).

Boxes are compared by shape only, as if they shared a centre: the IoU of ``(w1, h1)`` and
``(w2, h2)`` is ``min(w1, w2) * min(h1, h2) / (w1 h1 + w2 h2 - min(w1, w2) * min(h1, h2))``.
Initialisation is k-means++ (each next centre drawn with probability proportional to the squared
distance to the nearest chosen one), the update is the mean ``(w, h)`` of each cluster, and an
empty cluster is re-seeded with the box farthest from its centre. The best of ``n_init`` seeded
runs (highest mean best IoU) is returned; results depend only on the boxes and the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from squeezedet.errors import SqueezeDetError


def iou_wh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Centre-aligned IoU ``[N, K]`` of shapes ``a [N, 2]`` and ``b [K, 2]`` (``(w, h)`` > 0)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(a[:, None, 0], b[None, :, 0]) * np.minimum(a[:, None, 1], b[None, :, 1])
    union = (a[:, 0] * a[:, 1])[:, None] + (b[:, 0] * b[:, 1])[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def mean_best_iou(wh: np.ndarray, shapes: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Mean over boxes ``wh [N, 2]`` of the IoU with the best-fitting anchor shape."""
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    if len(wh) == 0:
        return float("nan")
    return float(iou_wh(wh, np.asarray(shapes, dtype=np.float64)).max(axis=1).mean())


def _kmeans_pp(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        d = 1.0 - iou_wh(wh, np.array(centres)).max(axis=1)
        weights = d**2
        total = weights.sum()
        if total <= 0:  # every box already coincides with a centre
            centres.append(wh[rng.integers(len(wh))])
            continue
        centres.append(wh[rng.choice(len(wh), p=weights / total)])
    return np.array(centres, dtype=np.float64)


def _lloyd(wh: np.ndarray, centres: np.ndarray, max_iter: int) -> np.ndarray:
    assign = None
    for _ in range(max_iter):
        iou = iou_wh(wh, centres)
        new = iou.argmax(axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        dist = 1.0 - iou[np.arange(len(wh)), assign]
        for j in range(len(centres)):
            members = assign == j
            if members.any():
                centres[j] = wh[members].mean(axis=0)
            else:  # re-seed an empty cluster with the worst-fitting box
                far = int(dist.argmax())
                centres[j] = wh[far]
                dist[far] = 0.0
    return centres


def kmeans_anchors(
    wh: np.ndarray, k: int = 9, seed: int = 0, n_init: int = 5, max_iter: int = 300
) -> tuple[np.ndarray, float]:
    """``k`` anchor shapes for boxes of sizes ``wh [N, 2]`` (``(w, h)`` in input pixels).

    Returns:
        ``(shapes float64 [k, 2] sorted by area, mean best IoU of the boxes with them)``.

    Raises :class:`SqueezeDetError` when there are fewer distinct boxes than ``k``.
    """
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh[:, 0] > 0) & (wh[:, 1] > 0)]
    if k <= 0:
        raise SqueezeDetError(f"the number of anchor shapes must be positive, got {k}")
    distinct = len(np.unique(wh, axis=0))
    if distinct < k:
        raise SqueezeDetError(
            f"k-means needs at least k={k} distinct box sizes, the data has {distinct}; "
            "use a smaller --k or more data"
        )
    best: tuple[np.ndarray, float] | None = None
    for run in range(n_init):
        rng = np.random.default_rng([seed, run])
        centres = _lloyd(wh, _kmeans_pp(wh, k, rng), max_iter)
        score = mean_best_iou(wh, centres)
        if best is None or score > best[1] + 1e-12:
            best = (centres, score)
    assert best is not None
    shapes = best[0][np.argsort(best[0][:, 0] * best[0][:, 1], kind="stable")]
    return shapes, best[1]
