"""Vectorised box pairing shared by the KITTI evaluator and its error analysis."""

from __future__ import annotations

import numpy as np


def cross_pairs(
    a_start: np.ndarray, a_count: np.ndarray, b_start: np.ndarray, b_count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (ia, ib) of every a and b of the same image, ordered by image, a, then b."""
    n = a_count * b_count
    total = int(n.sum())
    img = np.repeat(np.arange(len(n)), n)
    k = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    nb = b_count[img]
    return a_start[img] + k // nb, b_start[img] + k % nb


def box_overlap(det: np.ndarray, other: np.ndarray, union: bool) -> np.ndarray:
    """The devkit's ``boxoverlap``: IoU (``union``) or intersection / detection area.

    ``det``, ``other``: (P, 4) xyxy float64 pairs. Returns (P,) float64, 0 where the intersection's
    width or height is <= 0.
    """
    w = np.minimum(det[:, 2], other[:, 2]) - np.maximum(det[:, 0], other[:, 0])
    h = np.minimum(det[:, 3], other[:, 3]) - np.maximum(det[:, 1], other[:, 1])
    ok = (w > 0) & (h > 0)
    inter = w * h
    det_area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
    if union:
        other_area = (other[:, 2] - other[:, 0]) * (other[:, 3] - other[:, 1])
        denom = det_area + other_area - inter
    else:
        denom = det_area
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, inter / np.where(ok, denom, 1.0), 0.0)
