"""The KITTI evaluator's matching machinery: all images' objects as flat arrays, the candidate
(ground truth, detection) pairs of one class and difficulty, the devkit's two matching passes and
its score thresholds. The rules are listed in :mod:`squeezedet.eval.kitti`, which drives these.

The implementation is vectorised: the overlaps of all (ground truth, detection) pairs of all images
are computed once; each pass walks the ground-truth boxes by their rank within the image, doing all
images (and in pass 2 all 41 thresholds) at once on each step, so that the Python loop runs as many
times as the largest number of matchable boxes in one image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from squeezedet.data.kitti_format import KittiObject
from squeezedet.eval.kitti_results import N_SAMPLE_PTS
from squeezedet.eval.pairs import box_overlap, cross_pairs

_NO_DETECTION = -10000000.0  # the devkit's "no candidate" score: lower scores never match


# --------------------------------------------------------------------------------------------
# Flat arrays of all images
# --------------------------------------------------------------------------------------------


@dataclass
class Flat:
    """All objects of all images, concatenated in image order, then file order."""

    img: np.ndarray  # (N,) int64 image index
    box: np.ndarray  # (N, 4) float64 x1, y1, x2, y2
    type: np.ndarray  # (N,) int64 code of the lower-case type name
    extra: np.ndarray  # (N, 2) float64: truncation, occlusion (ground truth) or score, 0
    start: np.ndarray  # (n_images,) first index of each image
    count: np.ndarray  # (n_images,) objects per image


def flatten(
    per_image: Sequence[Sequence[KittiObject]], vocab: dict[str, int], is_gt: bool
) -> Flat:
    """The objects of all images as one :class:`Flat`; ``vocab`` maps lower-case type names to
    codes and grows with new names. ``extra`` holds truncation and occlusion for ground truth
    (``is_gt``), the score for detections."""
    counts = np.fromiter((len(objs) for objs in per_image), dtype=np.int64, count=len(per_image))
    n = int(counts.sum())
    objs = [o for objs in per_image for o in objs]
    box = np.array([o.box for o in objs], dtype=np.float64).reshape(n, 4)
    type_code = np.fromiter(
        (vocab.setdefault(o.type.lower(), len(vocab)) for o in objs), dtype=np.int64, count=n
    )
    if is_gt:
        extra = np.array([(o.truncated, o.occluded) for o in objs], dtype=np.float64).reshape(n, 2)
    else:
        extra = np.array([(o.score, 0.0) for o in objs], dtype=np.float64).reshape(n, 2)
    start = np.cumsum(counts) - counts
    img = np.repeat(np.arange(len(per_image), dtype=np.int64), counts)
    return Flat(img=img, box=box, type=type_code, extra=extra, start=start, count=counts)


@dataclass
class Overlaps:
    """The pairs of one image that matching can use, over all images.

    ``pg``, ``pd``, ``iou``: (ground truth of an evaluated class or its neighbour, detection) pairs
    whose IoU exceeds ``min_overlap``, ordered by image, ground truth, detection. ``qd``, ``ioa``:
    every (detection, DontCare box) pair's detection index and intersection / detection area.
    """

    pg: np.ndarray
    pd: np.ndarray
    iou: np.ndarray
    qd: np.ndarray
    ioa: np.ndarray


def overlaps(
    gt: Flat, det: Flat, gt_codes: Sequence[int], dontcare_code: int, min_overlap: float
) -> Overlaps:
    """The :class:`Overlaps` of ground truth of the types ``gt_codes`` and of ``dontcare_code``
    (-1: none) with every detection of the same image."""
    n_images = len(gt.count)
    relevant = np.isin(gt.type, list(gt_codes))
    rel_idx = np.flatnonzero(relevant)
    rel_count = np.bincount(gt.img[rel_idx], minlength=n_images).astype(np.int64)
    rel_start = np.cumsum(rel_count) - rel_count
    pg, pd = cross_pairs(rel_start, rel_count, det.start, det.count)
    pg = rel_idx[pg]
    iou = box_overlap(det.box[pd], gt.box[pg], union=True)
    keep = iou > min_overlap
    dc_idx = np.flatnonzero(gt.type == dontcare_code) if dontcare_code >= 0 else np.zeros(0, int)
    dc_count = np.bincount(gt.img[dc_idx], minlength=n_images).astype(np.int64)
    dc_start = np.cumsum(dc_count) - dc_count
    qd, qc = cross_pairs(det.start, det.count, dc_start, dc_count)
    ioa = box_overlap(det.box[qd], gt.box[dc_idx[qc]], union=False)
    return Overlaps(pg=pg[keep], pd=pd[keep], iou=iou[keep], qd=qd, ioa=ioa)


# --------------------------------------------------------------------------------------------
# The two passes
# --------------------------------------------------------------------------------------------


@dataclass
class Candidates:
    """Matchable (ground truth, detection) pairs of one class and difficulty, as padded rows.

    One row per ground-truth box with at least one candidate; rows are grouped by their rank
    within the image (``steps``, in rank order), each row's candidates ordered by detection index.
    """

    det: np.ndarray  # (R, K) compact detection ids (0 where padded)
    ok: np.ndarray  # (R, K) bool, False where padded
    iou: np.ndarray  # (R, K) float64
    gt_valid: np.ndarray  # (R,) bool
    steps: list[tuple[np.ndarray, int]]  # (rows, candidates to look at) in matching order
    score: np.ndarray  # (C,) score of each compact detection
    valid: np.ndarray  # (C,) bool: detection is valid (not ignored)
    det_index: np.ndarray  # (C,) global detection index of each compact id


def candidates(
    e_gt: np.ndarray,
    e_det: np.ndarray,
    e_iou: np.ndarray,
    gt_img: np.ndarray,
    gt_status: np.ndarray,
    det_status: np.ndarray,
    det_score: np.ndarray,
) -> Candidates:
    """The candidate pairs of one class and difficulty as :class:`Candidates`.

    ``e_gt``, ``e_det``, ``e_iou``: the matchable pairs (global ground-truth and detection indices,
    IoU); ``gt_img``: image of each ground-truth box; ``gt_status``, ``det_status``: 0 valid,
    1 ignored (per box); ``det_score``: score of each detection.
    """
    order = np.lexsort((e_det, e_gt))
    e_gt, e_det, e_iou = e_gt[order], e_det[order], e_iou[order]
    row_gt, row_of_edge, row_count = np.unique(e_gt, return_inverse=True, return_counts=True)
    n_rows = len(row_gt)
    k_max = int(row_count.max()) if n_rows else 1
    row_start = np.cumsum(row_count) - row_count
    col = np.arange(len(e_gt)) - row_start[row_of_edge]
    comp_index, comp_of_edge = np.unique(e_det, return_inverse=True)
    det = np.zeros((n_rows, k_max), dtype=np.int64)
    ok = np.zeros((n_rows, k_max), dtype=bool)
    iou = np.zeros((n_rows, k_max), dtype=np.float64)
    det[row_of_edge, col] = comp_of_edge
    ok[row_of_edge, col] = True
    iou[row_of_edge, col] = e_iou
    row_img = gt_img[row_gt]
    rank = np.arange(n_rows) - np.searchsorted(row_img, row_img, side="left")
    # Rows of one rank belong to different images, so they can go in any grouping: group them
    # by candidate count (powers of two) to bound the padding of each step to twice the need.
    bucket = np.ceil(np.log2(np.maximum(row_count, 1))).astype(np.int64)
    by_rank = np.lexsort((bucket, rank))
    key = rank[by_rank] * 64 + bucket[by_rank]
    cuts = np.flatnonzero(np.diff(key)) + 1
    steps = [
        (rows, 1 << int(bucket[rows[0]])) for rows in np.split(by_rank, cuts) if len(rows)
    ]
    return Candidates(
        det=det,
        ok=ok,
        iou=iou,
        gt_valid=gt_status[row_gt] == 0,
        steps=steps,
        score=det_score[comp_index],
        valid=det_status[comp_index] == 0,
        det_index=comp_index,
    )


def pass1_tp_scores(cand: Candidates) -> np.ndarray:
    """Scores of the true positives of pass 1 (highest-score candidate per ground truth)."""
    assigned = np.zeros(len(cand.score), dtype=bool)
    found = []
    for rows, k in cand.steps:
        d = cand.det[rows, :k]
        sc = cand.score[d]
        free = cand.ok[rows, :k] & ~assigned[d] & (sc > _NO_DETECTION)
        j = np.where(free, sc, -np.inf).argmax(axis=1)
        chosen = free.any(axis=1)
        ar = np.arange(len(rows))
        d_chosen = d[ar, j]
        assigned[d_chosen[chosen]] = True
        tp = chosen & cand.gt_valid[rows] & cand.valid[d_chosen]
        found.append(sc[ar, j][tp])
    return np.concatenate(found) if found else np.zeros(0)


def pass2_counts(
    cand: Candidates, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each threshold (T,): true positives, valid boxes consumed by an ignored detection, and
    the (T, C) assignment of the compact detections."""
    n_t = len(thresholds)
    assigned = np.zeros((n_t, len(cand.score)), dtype=bool)
    tp = np.zeros(n_t, dtype=np.int64)
    consumed = np.zeros(n_t, dtype=np.int64)
    thr = thresholds[:, None, None]
    for rows, k in cand.steps:
        d = cand.det[rows, :k]  # (r, k)
        sc = cand.score[d]
        valid = cand.valid[d]
        free = cand.ok[rows, :k][None] & ~assigned[:, d] & (sc[None] >= thr)  # (T, r, K)
        free_valid = free & valid[None]
        free_ignored = free & ~valid[None]
        has_valid = free_valid.any(axis=2)
        has_ignored = free_ignored.any(axis=2)
        j = np.where(
            has_valid,
            np.where(free_valid, cand.iou[rows, :k][None], -1.0).argmax(axis=2),
            free_ignored.argmax(axis=2),
        )  # (T, r)
        chosen = has_valid | has_ignored
        d_chosen = d[np.arange(len(rows))[None, :], j]
        t_idx, r_idx = np.nonzero(chosen)
        assigned[t_idx, d_chosen[t_idx, r_idx]] = True
        gt_valid = cand.gt_valid[rows][None]
        tp += (has_valid & gt_valid).sum(axis=1)
        consumed += (~has_valid & has_ignored & gt_valid).sum(axis=1)
    return tp, consumed, assigned


def score_thresholds(scores: np.ndarray, n_gt: int) -> np.ndarray:
    """The devkit's ``getThresholds``: at most 41 scores spread over the recall axis."""
    v = np.sort(scores)[::-1].tolist()
    taken = []
    current = 0.0
    last = len(v) - 1
    for i, s in enumerate(v):
        l_recall = (i + 1) / n_gt
        r_recall = (i + 2) / n_gt if i < last else l_recall
        if (r_recall - current) < (current - l_recall) and i < last:
            continue
        taken.append(s)
        current += 1.0 / (N_SAMPLE_PTS - 1.0)
    return np.asarray(taken[:N_SAMPLE_PTS], dtype=np.float64)
