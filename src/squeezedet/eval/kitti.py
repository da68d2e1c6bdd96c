"""KITTI 2-D object detection AP, number for number with the official devkit.

The reference is ``evaluate_object.cpp`` of the KITTI object devkit, 2017 release (the one the
benchmark still runs). Its rules, as implemented here for every class and difficulty:

* Difficulties (easy, moderate, hard): minimum box height 40 / 25 / 25 px, maximum occlusion
  0 / 1 / 2, maximum truncation 0.15 / 0.30 / 0.50.
* Ground truth of the class (case-insensitive) is *valid*, or *ignored* when its occlusion or
  truncation exceeds the limit or its height ``y2 - y1`` is **<=** the minimum height. The
  neighbour class (Van for Car, Person_sitting for Pedestrian) is ignored; other classes are not
  considered. ``DontCare`` boxes are kept apart. ``N_gt`` = valid boxes over all images.
* Detections: ``int(|y2 - y1|) <`` minimum height -> *ignored* (whatever their class), else same
  class -> valid, else not considered.
* Overlap = IoU (0 when the intersection's width or height is <= 0); a match needs overlap
  **strictly greater** than 0.7 (Car) or 0.5 (Pedestrian, Cyclist; also any other class).
* Pass 1 (no score threshold): the ground-truth boxes in file order each take, among the free
  considered detections that overlap enough, the one with the highest score (the first on ties);
  only a valid-valid pair is a TP and records its score, other pairs just consume the detection.
* Thresholds: the recorded scores sorted descending, walked with a target recall that starts at 0
  and grows by 1/40 after each score taken; at most 41.
* Pass 2, for every threshold ``t`` (detections scoring ``< t`` dropped): each ground-truth box
  takes the free valid detection with the largest overlap (first on ties), else the first free
  ignored detection that overlaps enough. FN = valid boxes left alone; FP = free valid
  detections, less those covering a DontCare box by more than the class threshold (intersection /
  own area).
* Precision ``TP / (TP + FP)`` per threshold (summed over images), made non-increasing from the
  right, 0 beyond the last threshold. AP_R40 = mean of points 1..40, AP_R11 = mean of points
  0, 4, ..., 40, both in percent.
* A class is evaluated only if some detection of it has ``x1 >= 0``; otherwise its APs are 0.

Decisions where the devkit is undefined or aborts: an image without detections counts as an image
with no detections (the devkit aborts on a missing result file; a warning says so); a threshold
with ``TP + FP == 0`` (possible only in contrived cases, NaN in the devkit) gets precision 0.

``devkit="2013"`` reproduces the older release's two differences: ground truth exactly at the
minimum height is kept (ignored only when ``height <`` the minimum), and short detections are not
ignored (a short detection of the class is valid and may be a false positive).

The implementation is vectorised: the overlaps of all (ground truth, detection) pairs of all images
are computed once; each pass walks the ground-truth boxes by their rank within the image, doing all
images (and in pass 2 all 41 thresholds) at once on each step, so that the Python loop runs as many
times as the largest number of matchable boxes in one image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from squeezedet.data.kitti_format import KittiObject, parse_kitti_line
from squeezedet.errors import DataError, SqueezeDetError
from squeezedet.eval.pairs import box_overlap, cross_pairs

DIFFICULTIES = ("easy", "moderate", "hard")
MIN_HEIGHT = (40, 25, 25)  # pixels, per difficulty
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
N_SAMPLE_PTS = 41
DEFAULT_CLASSES = ("Car", "Pedestrian", "Cyclist")
#: IoU a match must exceed, per lower-case class name; other classes use 0.5.
MIN_OVERLAP = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
#: The class whose ground truth is ignored (not a false negative) for each class.
NEIGHBOUR_CLASS = {"car": "van", "pedestrian": "person_sitting"}
DEVKITS = ("2017", "2013")
_NO_DETECTION = -10000000.0  # the devkit's "no candidate" score: lower scores never match


@dataclass(frozen=True)
class PRCurve:
    """Precision/recall of one class and difficulty at the devkit's score thresholds.

    ``precision`` has 41 points (after the non-increasing envelope, 0 beyond the last threshold);
    ``recall``, ``tp``, ``fp`` and ``fn`` have one entry per threshold (``thresholds``, descending
    detection scores). ``n_gt`` is the number of valid ground-truth boxes.
    """

    precision: tuple[float, ...]
    recall: tuple[float, ...]
    thresholds: tuple[float, ...]
    tp: tuple[int, ...]
    fp: tuple[int, ...]
    fn: tuple[int, ...]
    n_gt: int

    @property
    def ap_r40(self) -> float:
        """AP in percent over the 40 recall points 1/40 ... 1."""
        return _sequential_sum(self.precision[1:]) / 40 * 100

    @property
    def ap_r11(self) -> float:
        """AP in percent over the 11 recall points 0, 0.1, ..., 1 (the paper's metric)."""
        return _sequential_sum(self.precision[0::4]) / 11 * 100


def _sequential_sum(values: Sequence[float]) -> float:
    # Left-to-right double sum, as the devkit's loop (Python's sum() compensates since 3.12).
    total = 0.0
    for v in values:
        total += float(v)
    return total


@dataclass
class KittiEvalResult:
    """Result of :func:`evaluate_kitti`: APs in percent per class and difficulty, and curves."""

    classes: tuple[str, ...]
    ap_r40: dict[str, dict[str, float]]
    ap_r11: dict[str, dict[str, float]]
    evaluated: dict[str, bool]
    n_images: int
    curves: dict[str, dict[str, PRCurve]]
    warnings: list[str] = field(default_factory=list)
    devkit: str = "2017"
    errors: dict[str, dict[str, int]] | None = None
    coco: dict[str, Any] | None = None

    @property
    def map_r40(self) -> float:
        """Mean of the class x difficulty AP_R40 values (not-evaluated classes count as 0)."""
        return _mean_of(self.ap_r40)

    @property
    def map_r11(self) -> float:
        """Mean of the class x difficulty AP_R11 values (the paper's mAP)."""
        return _mean_of(self.ap_r11)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: AP_R40, AP_R11, mAP_R40, mAP_R11, evaluated, n_images, warnings,
        and errors / coco when they were computed."""
        out: dict[str, Any] = {
            "AP_R40": {c: dict(v) for c, v in self.ap_r40.items()},
            "AP_R11": {c: dict(v) for c, v in self.ap_r11.items()},
            "mAP_R40": self.map_r40,
            "mAP_R11": self.map_r11,
            "evaluated": dict(self.evaluated),
            "n_images": self.n_images,
            "warnings": list(self.warnings),
        }
        if self.errors is not None:
            out["errors"] = {c: dict(v) for c, v in self.errors.items()}
        if self.coco is not None:
            out["coco"] = self.coco
        return out

    def format_table(self) -> str:
        """A plain-text table: class x (easy, moderate, hard) for AP_R40 and AP_R11, and mAP."""
        width = max(10, *(len(c) for c in self.classes))
        head = f"{'class':<{width}} | {'AP_R40 easy':>11} {'moderate':>8} {'hard':>6} | " \
               f"{'AP_R11 easy':>11} {'moderate':>8} {'hard':>6}"
        lines = [
            f"KITTI 2-D AP in percent (devkit {self.devkit} rules), {self.n_images} images",
            head,
            "-" * len(head),
        ]
        for c in self.classes:
            r40 = [self.ap_r40[c][d] for d in DIFFICULTIES]
            r11 = [self.ap_r11[c][d] for d in DIFFICULTIES]
            note = "" if self.evaluated[c] else "  (not evaluated: no detections)"
            lines.append(
                f"{c:<{width}} | {r40[0]:11.2f} {r40[1]:8.2f} {r40[2]:6.2f} | "
                f"{r11[0]:11.2f} {r11[1]:8.2f} {r11[2]:6.2f}{note}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'mAP':<{width}} | {self.map_r40:11.2f} {'':>15} | {self.map_r11:11.2f}"
            "   (mean of the class x difficulty APs)"
        )
        return "\n".join(lines)


def _mean_of(table: Mapping[str, Mapping[str, float]]) -> float:
    values = [v for per_class in table.values() for v in per_class.values()]
    return float(sum(values) / len(values)) if values else 0.0


# --------------------------------------------------------------------------------------------
# Flat arrays of all images
# --------------------------------------------------------------------------------------------


@dataclass
class _Flat:
    """All objects of all images, concatenated in image order, then file order."""

    img: np.ndarray  # (N,) int64 image index
    box: np.ndarray  # (N, 4) float64 x1, y1, x2, y2
    type: np.ndarray  # (N,) int64 code of the lower-case type name
    extra: np.ndarray  # (N, 2) float64: truncation, occlusion (ground truth) or score, 0
    start: np.ndarray  # (n_images,) first index of each image
    count: np.ndarray  # (n_images,) objects per image


def _flatten(
    per_image: Sequence[Sequence[KittiObject]], vocab: dict[str, int], is_gt: bool
) -> _Flat:
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
    return _Flat(img=img, box=box, type=type_code, extra=extra, start=start, count=counts)


# --------------------------------------------------------------------------------------------
# The two passes
# --------------------------------------------------------------------------------------------


@dataclass
class _Candidates:
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


def _candidates(
    e_gt: np.ndarray,
    e_det: np.ndarray,
    e_iou: np.ndarray,
    gt_img: np.ndarray,
    gt_status: np.ndarray,
    det_status: np.ndarray,
    det_score: np.ndarray,
) -> _Candidates:
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
    return _Candidates(
        det=det,
        ok=ok,
        iou=iou,
        gt_valid=gt_status[row_gt] == 0,
        steps=steps,
        score=det_score[comp_index],
        valid=det_status[comp_index] == 0,
        det_index=comp_index,
    )


def _pass1_tp_scores(cand: _Candidates) -> np.ndarray:
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


def _pass2_counts(
    cand: _Candidates, thresholds: np.ndarray
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


def _score_thresholds(scores: np.ndarray, n_gt: int) -> np.ndarray:
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


def _class_overlap(name: str) -> float:
    return MIN_OVERLAP.get(name.lower(), 0.5)


def evaluate_kitti(
    ground_truth: Mapping[str, Sequence[KittiObject]],
    detections: Mapping[str, Sequence[KittiObject]],
    classes: Sequence[str] = DEFAULT_CLASSES,
    *,
    devkit: str = "2017",
    error_analysis: bool = True,
    coco: bool = False,
    warnings: Sequence[str] = (),
) -> KittiEvalResult:
    """KITTI 2-D AP (R40 and R11, percent) of detections against ground truth, as the devkit.

    ``ground_truth`` maps an image id to its label objects (all types, DontCare included, file
    order); ``detections`` maps image ids to result objects (``score`` set; boxes in pixels).
    Images are those of ``ground_truth``; a missing detections entry counts as no detections
    (with a warning), detections of unknown images are ignored (with a warning). ``devkit`` is
    ``"2017"`` (default) or ``"2013"`` (see the module docstring). ``error_analysis`` adds the
    counts of :func:`squeezedet.eval.error_analysis.analyze_errors`; ``coco`` adds COCO-style
    AP@[.5:.95] and AP@.5 (needs pycocotools). ``warnings`` are prepended to the result's.
    """
    if devkit not in DEVKITS:
        raise SqueezeDetError(f"unknown devkit {devkit!r}; choose one of {', '.join(DEVKITS)}")
    classes = tuple(classes)
    if not classes:
        raise SqueezeDetError("no classes to evaluate")
    names = list(ground_truth)
    messages = list(warnings)
    missing = [k for k in names if k not in detections]
    if missing:
        messages.append(
            f"{len(missing)} of {len(names)} images have no detections (e.g. {missing[0]}); "
            "counted as images without detections (the official devkit would abort)"
        )
    extra = [k for k in detections if k not in ground_truth]
    if extra:
        messages.append(
            f"{len(extra)} detection entries have no ground truth (e.g. {extra[0]}); ignored"
        )
    det_lists = [detections.get(k, ()) for k in names]
    for k, objs in zip(names, det_lists, strict=True):
        for o in objs:
            if o.score is None:
                raise SqueezeDetError(
                    f"detection {o.type} {o.box} of image {k} has no score; results need 16 fields"
                )

    vocab: dict[str, int] = {}
    gt = _flatten([ground_truth[k] for k in names], vocab, is_gt=True)
    det = _flatten(det_lists, vocab, is_gt=False)
    result = _evaluate_flat(gt, det, vocab, classes, devkit, len(names), messages)

    if error_analysis:
        from squeezedet.eval.error_analysis import analyze_errors

        result.errors = analyze_errors(ground_truth, detections, classes)
    if coco:
        from squeezedet.eval.coco import coco_ap

        result.coco = coco_ap(ground_truth, detections, classes)
    return result


def _evaluate_flat(
    gt: _Flat,
    det: _Flat,
    vocab: dict[str, int],
    classes: tuple[str, ...],
    devkit: str,
    n_images: int,
    messages: list[str],
) -> KittiEvalResult:
    def code(name: str) -> int:
        return vocab.get(name.lower(), -1)

    class_codes = [code(c) for c in classes]
    neighbour_codes = [code(NEIGHBOUR_CLASS.get(c.lower(), "")) for c in classes]
    dontcare_code = code("dontcare")

    # Every (ground truth of a class or neighbour, detection) pair of an image, and its IoU.
    relevant = np.isin(gt.type, [c for c in class_codes + neighbour_codes if c >= 0])
    rel_idx = np.flatnonzero(relevant)
    rel_count = np.bincount(gt.img[rel_idx], minlength=n_images).astype(np.int64)
    rel_start = np.cumsum(rel_count) - rel_count
    pg, pd = cross_pairs(rel_start, rel_count, det.start, det.count)
    pg = rel_idx[pg]
    iou = box_overlap(det.box[pd], gt.box[pg], union=True)
    min_thr = min(_class_overlap(c) for c in classes)
    keep = iou > min_thr
    pg, pd, iou = pg[keep], pd[keep], iou[keep]

    # Every (detection, DontCare) pair of an image, and intersection / detection area.
    dc_idx = np.flatnonzero(gt.type == dontcare_code) if dontcare_code >= 0 else np.zeros(0, int)
    dc_count = np.bincount(gt.img[dc_idx], minlength=n_images).astype(np.int64)
    dc_start = np.cumsum(dc_count) - dc_count
    qd, qc = cross_pairs(det.start, det.count, dc_start, dc_count)
    ioa = box_overlap(det.box[qd], gt.box[dc_idx[qc]], union=False)

    gt_height = gt.box[:, 3] - gt.box[:, 1]
    det_height = np.floor(np.abs(det.box[:, 1] - det.box[:, 3]))  # C int() of a value >= 0
    det_score = det.extra[:, 0]
    truncation, occlusion = gt.extra[:, 0], gt.extra[:, 1]

    ap_r40: dict[str, dict[str, float]] = {}
    ap_r11: dict[str, dict[str, float]] = {}
    evaluated: dict[str, bool] = {}
    curves: dict[str, dict[str, PRCurve]] = {}
    for name, c_code, n_code in zip(classes, class_codes, neighbour_codes, strict=True):
        thr = _class_overlap(name)
        same_det = det.type == c_code
        evaluated[name] = bool(c_code >= 0 and np.any(same_det & (det.box[:, 0] >= 0)))
        ap_r40[name], ap_r11[name], curves[name] = {}, {}, {}
        if not evaluated[name]:
            messages.append(
                f"{name}: no detection of this class with x1 >= 0; not evaluated (AP reported as 0)"
            )
            for diff in DIFFICULTIES:
                ap_r40[name][diff] = ap_r11[name][diff] = 0.0
                curves[name][diff] = PRCurve((0.0,) * N_SAMPLE_PTS, (), (), (), (), (), 0)
            continue
        same_gt = gt.type == c_code
        neighbour_gt = (gt.type == n_code) if n_code >= 0 else np.zeros(len(gt.type), bool)
        pair_ok = iou > thr
        dc_hit = np.zeros(len(det_score), dtype=bool)
        dc_hit[qd[ioa > thr]] = True
        for d_i, diff in enumerate(DIFFICULTIES):
            too_small = (
                gt_height <= MIN_HEIGHT[d_i] if devkit == "2017" else gt_height < MIN_HEIGHT[d_i]
            )
            ignore = (
                (occlusion > MAX_OCCLUSION[d_i]) | (truncation > MAX_TRUNCATION[d_i]) | too_small
            )
            gt_status = np.where(same_gt & ~ignore, 0, np.where(same_gt | neighbour_gt, 1, -1))
            if devkit == "2017":
                det_status = np.where(det_height < MIN_HEIGHT[d_i], 1, np.where(same_det, 0, -1))
            else:
                det_status = np.where(same_det, 0, -1)
            n_gt = int(np.count_nonzero(gt_status == 0))
            sel = pair_ok & (gt_status[pg] != -1) & (det_status[pd] != -1)
            cand = _candidates(
                pg[sel], pd[sel], iou[sel], gt.img, gt_status, det_status, det_score
            )
            thresholds = _score_thresholds(_pass1_tp_scores(cand), n_gt)
            tp, consumed, assigned = _pass2_counts(cand, thresholds)
            # FP = free valid detections above the threshold, not covering a DontCare area.
            counted = (det_status == 0) & ~dc_hit
            sorted_scores = np.sort(det_score[counted])
            above = len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, side="left")
            counted_comp = counted[cand.det_index]
            fp = above - (assigned & counted_comp[None]).sum(axis=1)
            fn = n_gt - tp - consumed
            with np.errstate(divide="ignore", invalid="ignore"):
                prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
                rec = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
            precision = np.zeros(N_SAMPLE_PTS)
            precision[: len(prec)] = np.maximum.accumulate(prec[::-1])[::-1]
            curve = PRCurve(
                precision=tuple(float(p) for p in precision),
                recall=tuple(float(r) for r in rec),
                thresholds=tuple(float(t) for t in thresholds),
                tp=tuple(int(x) for x in tp),
                fp=tuple(int(x) for x in fp),
                fn=tuple(int(x) for x in fn),
                n_gt=n_gt,
            )
            curves[name][diff] = curve
            ap_r40[name][diff] = curve.ap_r40
            ap_r11[name][diff] = curve.ap_r11
    return KittiEvalResult(
        classes=classes,
        ap_r40=ap_r40,
        ap_r11=ap_r11,
        evaluated=evaluated,
        n_images=n_images,
        curves=curves,
        warnings=messages,
        devkit=devkit,
    )


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def read_result_file(path: str | Path) -> list[KittiObject]:
    """Read a KITTI result file (16 fields, score last); blank lines are skipped.

    Boxes are read as the devkit does, without requiring ``x1 <= x2`` (the devkit takes the
    detection height as ``|y2 - y1|``). Raises :class:`DataError` naming the file and line for a
    malformed line or a line without a score.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the result file ({exc})") from None
    objs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        obj = parse_kitti_line(line, path, lineno, check_box=False)
        if obj.score is None:
            raise DataError(
                path, "result lines need 16 fields (score last); this one has 15", lineno
            )
        objs.append(obj)
    return objs


def read_label_dir(label_dir: str | Path) -> dict[str, list[KittiObject]]:
    """All ``*.txt`` label files of a folder, keyed by file stem, in sorted order."""
    from squeezedet.data.kitti_format import read_kitti_file

    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise SqueezeDetError(f"{label_dir}: label folder not found")
    files = sorted(label_dir.glob("*.txt"))
    if not files:
        raise SqueezeDetError(f"{label_dir}: no *.txt label files in this folder")
    return {f.stem: read_kitti_file(f) for f in files}


def evaluate_dirs(
    gt_dir: str | Path,
    det_dir: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    *,
    devkit: str = "2017",
    error_analysis: bool = True,
    coco: bool = False,
    image_ids: Sequence[str] | None = None,
) -> KittiEvalResult:
    """Evaluate the result files of ``det_dir`` against the label files of ``gt_dir``.

    Images are the label files (or ``image_ids``, e.g. a val split). A label file without a
    result file counts as an image without detections, with a warning (the devkit aborts).
    """
    gt_dir, det_dir = Path(gt_dir), Path(det_dir)
    if not det_dir.is_dir():
        raise SqueezeDetError(f"{det_dir}: result folder not found")
    if image_ids is None:
        ground_truth = read_label_dir(gt_dir)
    else:
        from squeezedet.data.kitti_format import read_kitti_file

        ground_truth = {i: read_kitti_file(gt_dir / f"{i}.txt") for i in image_ids}
    detections: dict[str, list[KittiObject]] = {}
    missing = []
    for stem in ground_truth:
        path = det_dir / f"{stem}.txt"
        if path.is_file():
            detections[stem] = read_result_file(path)
        else:
            missing.append(stem)
            detections[stem] = []
    messages = []
    if missing:
        messages.append(
            f"{len(missing)} of {len(ground_truth)} label files have no result file in {det_dir} "
            f"(e.g. {missing[0]}.txt); counted as images without detections "
            "(the official devkit would abort)"
        )
    extra = sorted(
        set(p.stem for p in det_dir.glob("*.txt")) - set(ground_truth)
    )
    if extra:
        messages.append(
            f"{len(extra)} result files have no label file (e.g. {extra[0]}.txt); ignored"
        )
    return evaluate_kitti(
        ground_truth,
        detections,
        classes,
        devkit=devkit,
        error_analysis=error_analysis,
        coco=coco,
        warnings=messages,
    )


def write_json(result: KittiEvalResult, path: str | Path) -> None:
    """Write ``result.to_json()`` to a file, or to stdout when ``path`` is ``"-"``."""
    text = json.dumps(result.to_json(), indent=2)
    if str(path) == "-":
        print(text)
        return
    path = Path(path)
    if path.parent and not path.parent.exists():
        os.makedirs(path.parent, exist_ok=True)
    path.write_text(text + "\n")
