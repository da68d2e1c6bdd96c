"""COCO-style AP@0.5, AP@0.75 and AP@[.5:.95] per class, for data sets without KITTI difficulties.

A pure NumPy re-implementation of pycocotools' ``COCOeval`` for boxes (area range "all"), so it
needs no optional package; the tests check it against hand-worked cases (and against pycocotools
where that is installed). The rules, per class and IoU threshold ``t`` in 0.50, 0.55, ..., 0.95:

- per image, the detections of the class are sorted by score (descending, ties in input order) and
  only the first ``max_dets`` (100) are kept;
- each detection in turn takes the unmatched ground-truth box of the class with the highest IoU
  ``>= t``, preferring a regular box over an ignored one. Ignored boxes (VOC ``difficult``, COCO
  ``iscrowd``, objects cut by a tile border; see :data:`squeezedet.data.samples.IGNORE_OCCLUSION`)
  may take any number of detections, and a detection they take is neither a true nor a false
  positive; an unmatched detection is a false positive;
- over all images, detections are ranked by score; precision is made non-increasing from the
  right and read at the 101 recall points 0, 0.01, ..., 1 (0 beyond the last recall reached);
  AP is their mean, in percent;
- a class without any regular ground-truth box has AP ``None`` and is left out of the means.

Ground truth and detections are :class:`~squeezedet.data.kitti_format.KittiObject` lists per image id,
as for the KITTI evaluator; types are matched case-insensitively; DontCare boxes are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from squeezedet.data.kitti_format import KittiObject
from squeezedet.errors import SqueezeDetError

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class APResult:
    """Result of :func:`evaluate_ap`: AP in percent per class (``None``: no ground truth)."""

    classes: tuple[str, ...]
    ap: dict[str, float | None]  # AP@[.5:.95]
    ap50: dict[str, float | None]
    ap75: dict[str, float | None]
    n_gt: dict[str, int]
    n_images: int
    warnings: list[str] = field(default_factory=list)

    @staticmethod
    def _mean(values: Mapping[str, float | None]) -> float:
        kept = [v for v in values.values() if v is not None]
        return float(sum(kept) / len(kept)) if kept else 0.0

    @property
    def map(self) -> float:
        """Mean AP@[.5:.95] over the classes with ground truth (COCO's headline number)."""
        return self._mean(self.ap)

    @property
    def map50(self) -> float:
        """Mean AP@0.5 over the classes with ground truth (VOC's headline number)."""
        return self._mean(self.ap50)

    #: name and value of the number that selects the best checkpoint
    @property
    def headline(self) -> tuple[str, float]:
        return "mAP", self.map

    def csv_row(self) -> dict[str, float]:
        """mAP, mAP50 and AP50 per class (``nan`` without ground truth), for ``val.csv``."""
        row: dict[str, float] = {"mAP": self.map, "mAP50": self.map50}
        for c in self.classes:
            v = self.ap50[c]
            row[f"{c}_AP50"] = float("nan") if v is None else v
        return row

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: AP, AP50, AP75 per class, mAP, mAP50, n_gt, n_images, warnings."""
        return {
            "metric": "COCO-style AP (101 recall points; AP is the mean over IoU .50:.05:.95)",
            "AP": dict(self.ap), "AP50": dict(self.ap50), "AP75": dict(self.ap75),
            "mAP": self.map, "mAP50": self.map50,
            "n_gt": dict(self.n_gt), "n_images": self.n_images, "warnings": list(self.warnings),
        }

    def format_table(self) -> str:
        """A plain-text table: class, objects, AP@[.5:.95], AP@0.5, AP@0.75."""
        width = max(10, *(len(c) for c in self.classes))

        def f(v: float | None) -> str:
            return f"{'n/a':>8}" if v is None else f"{v:8.2f}"

        head = f"{'class':<{width}} | {'objects':>7} | {'AP':>8} {'AP50':>8} {'AP75':>8}"
        lines = [f"AP in percent (COCO-style, IoU .50:.95), {self.n_images} images", head,
                 "-" * len(head)]
        for c in self.classes:
            lines.append(f"{c:<{width}} | {self.n_gt[c]:7d} | {f(self.ap[c])} {f(self.ap50[c])} "
                         f"{f(self.ap75[c])}")
        lines.append("-" * len(head))
        lines.append(f"{'mean':<{width}} | {'':>7} | {self.map:8.2f} {self.map50:8.2f}")
        return "\n".join(lines)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[N, M]`` of xyxy boxes ``a [N, 4]``, ``b [M, 4]``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _match_image(gt: np.ndarray, gt_ignore: np.ndarray, dets: np.ndarray,
                 thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For detections ``dets [D, 4]`` (score order) against ``gt [G, 4]``: ``matched [T, D]`` and
    ``ignored [T, D]`` booleans per IoU threshold."""
    n_t, n_d = len(thresholds), len(dets)
    matched = np.zeros((n_t, n_d), dtype=bool)
    ignored = np.zeros((n_t, n_d), dtype=bool)
    if len(gt) == 0 or n_d == 0:
        return matched, ignored
    order = np.argsort(gt_ignore, kind="stable")  # regular boxes first
    gt, gt_ignore = gt[order], gt_ignore[order]
    iou = _iou(dets, gt)
    for t, thr in enumerate(thresholds):
        taken = np.zeros(len(gt), dtype=bool)
        for d in range(n_d):
            best, m = min(float(thr), 1 - 1e-10), -1
            for g in range(len(gt)):
                if taken[g] and not gt_ignore[g]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break
                if iou[d, g] < best:
                    continue
                best, m = iou[d, g], g
            if m == -1:
                continue
            matched[t, d] = True
            ignored[t, d] = bool(gt_ignore[m])
            taken[m] = True
    return matched, ignored


def average_precision(scores: np.ndarray, matched: np.ndarray, ignored: np.ndarray,
                      n_gt: int) -> float | None:
    """AP in percent (101-point) of detections pooled over images: ``scores [D]``, ``matched``
    and ``ignored [D]``; ``None`` when ``n_gt`` is 0."""
    if n_gt == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    keep = ~ignored[order]
    tp = (matched[order] & keep).astype(np.float64)
    fp = (~matched[order] & keep).astype(np.float64)
    tp, fp = tp[keep], fp[keep]
    if len(tp) == 0:
        return 0.0
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(fp)
    recall = tp_sum / n_gt
    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(q.mean() * 100)


def _is_ignored(obj: KittiObject) -> bool:
    from squeezedet.data.samples import is_ignored

    return is_ignored(obj)


def _class_ap(ground_truth: Mapping[str, Sequence[KittiObject]],
              detections: Mapping[str, Sequence[KittiObject]], cls: str,
              thresholds: np.ndarray, max_dets: int) -> tuple[int, list[float | None]]:
    """The number of regular ground-truth boxes of class ``cls``, and its AP at each IoU
    threshold of ``thresholds``."""
    key = cls.lower()
    scores, matched, ignored = [], [], []
    count = 0
    for image_id, objects in ground_truth.items():
        gts = [o for o in objects if o.type.lower() == key]
        gt = np.array([o.box for o in gts], dtype=np.float64).reshape(-1, 4)
        gt_ignore = np.array([_is_ignored(o) for o in gts], dtype=bool)
        count += int((~gt_ignore).sum())
        dets = [o for o in detections.get(image_id, ()) if o.type.lower() == key]
        det_scores = np.array([float(o.score or 0.0) for o in dets], dtype=np.float64)
        order = np.argsort(-det_scores, kind="mergesort")[:max_dets]
        boxes = np.array([dets[i].box for i in order], dtype=np.float64).reshape(-1, 4)
        m, ig = _match_image(gt, gt_ignore, boxes, thresholds)
        scores.append(det_scores[order])
        matched.append(m)
        ignored.append(ig)
    n_t = len(thresholds)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_m = np.concatenate(matched, axis=1) if matched else np.zeros((n_t, 0), dtype=bool)
    all_ig = np.concatenate(ignored, axis=1) if ignored else np.zeros((n_t, 0), dtype=bool)
    return count, [average_precision(all_scores, all_m[t], all_ig[t], count) for t in range(n_t)]


def evaluate_ap(
    ground_truth: Mapping[str, Sequence[KittiObject]],
    detections: Mapping[str, Sequence[KittiObject]],
    classes: Sequence[str],
    *,
    max_dets: int = 100,
) -> APResult:
    """COCO-style AP of ``detections`` against ``ground_truth`` (see the module docstring).

    Both map an image id to objects with boxes in the same pixels; detections need ``score``.
    Images are those of ``ground_truth``; detections of other images are ignored with a warning.
    """
    classes = tuple(classes)
    if not classes:
        raise SqueezeDetError("no classes to evaluate")
    warnings = []
    extra = [k for k in detections if k not in ground_truth]
    if extra:
        warnings.append(f"{len(extra)} detection entries have no ground truth (e.g. {extra[0]}); "
                        "ignored")
    ap: dict[str, float | None] = {}
    ap50: dict[str, float | None] = {}
    ap75: dict[str, float | None] = {}
    n_gt: dict[str, int] = {}
    for cls in classes:
        n_gt[cls], per_t = _class_ap(ground_truth, detections, cls, IOU_THRESHOLDS, max_dets)
        if per_t[0] is None:
            ap[cls] = ap50[cls] = ap75[cls] = None
        else:
            values = [float(v) for v in per_t if v is not None]
            ap[cls], ap50[cls], ap75[cls] = float(np.mean(values)), values[0], values[5]
    return APResult(classes, ap, ap50, ap75, n_gt, len(ground_truth), warnings)


def ap_at_iou(ground_truth: Mapping[str, Sequence[KittiObject]],
              detections: Mapping[str, Sequence[KittiObject]], classes: Sequence[str],
              iou: float, *, max_dets: int = 100) -> dict[str, float | None]:
    """AP in percent per class at one IoU threshold ``iou`` (in (0, 1]), by the rules of
    :func:`evaluate_ap`: how much of AP@0.5 is lost to loose boxes rather than to objects missed
    (``None``: no ground truth of the class)."""
    if not 0 < iou <= 1:
        raise SqueezeDetError(f"an IoU threshold must be in (0, 1], got {iou}")
    return {cls: _class_ap(ground_truth, detections, cls, np.array([iou]), max_dets)[1][0]
            for cls in classes}
