"""Error analysis of detections, after the original SqueezeDet's ``analyze_detections``.

Exact definitions (the original's, made per class):

* Objects: the ground-truth boxes whose type is one of ``classes`` (case-insensitive), at every
  difficulty; DontCare, neighbour classes (Van, Person_sitting) and other types are left out.
  Detections: the result boxes whose type is one of ``classes``.
* Per image, the detections are sorted by score, highest first (file order on ties), and only the
  top ``k`` are analysed, ``k`` = the number of objects in that image (all classes together). An
  image without objects contributes no detections (as in the original).
* Each analysed detection is compared with every object of its image by IoU; the best object is the
  one of highest IoU (the first in file order on ties). The detection is
    - **background** when that IoU is <= 0.1 (``bg_iou``);
    - else a **class confusion** ("classification") when the best object's class differs;
    - else a **localisation** error when the IoU is < 0.5 (``loc_iou``);
    - else **correct** when no higher-ranked correct detection has claimed that object, in which
      case it claims it, or a **duplicate** when one has.
* **Missed**: objects not claimed by a correct detection.
* Detection counts are booked under the detection's class, ``objects`` and ``missed`` under the
  object's class. The 0.5 IoU for "correct" is the original's for every class (KITTI's AP needs
  0.7 for cars), so "correct" here is not the same as a true positive of the AP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from squeezedet.data.kitti_format import KittiObject
from squeezedet.eval.pairs import box_overlap, cross_pairs

ERROR_KINDS = ("correct", "localization", "classification", "background", "duplicate")


def analyze_errors(
    ground_truth: Mapping[str, Sequence[KittiObject]],
    detections: Mapping[str, Sequence[KittiObject]],
    classes: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
    *,
    loc_iou: float = 0.5,
    bg_iou: float = 0.1,
) -> dict[str, dict[str, int]]:
    """Counts per class of the analysed (top) detections by kind, of objects and of missed objects.

    Returns ``{class: {"detections", "correct", "localization", "classification", "background",
    "duplicate", "objects", "missed"}}`` (integers). Images are those of ``ground_truth``; see the
    module docstring for the definitions.
    """
    classes = tuple(classes)
    gt, det = _rows(ground_truth, detections, classes)
    n_images = len(ground_truth)
    gt_count = np.bincount(gt[:, 0].astype(np.int64), minlength=n_images).astype(np.int64)
    det = _top_k(det, gt_count)
    best_gt, best_iou = _best_objects(gt, det, gt_count, n_images)
    gt_cls, det_cls = gt[:, 1].astype(np.int64), det[:, 1].astype(np.int64)

    background = best_iou <= bg_iou
    same = gt_cls[best_gt] == det_cls
    confusion = ~background & ~same
    localization = ~background & same & (best_iou < loc_iou)
    hit = ~background & same & (best_iou >= loc_iou)
    hit_idx = np.flatnonzero(hit)  # in rank order within each image
    _, first_hit = np.unique(best_gt[hit_idx], return_index=True)
    correct = np.zeros(len(det), dtype=bool)
    correct[hit_idx[first_hit]] = True
    duplicate = hit & ~correct
    claimed = np.zeros(len(gt), dtype=bool)
    claimed[best_gt[correct]] = True

    n_cls = len(classes)

    def per_class(mask: np.ndarray, cls: np.ndarray) -> np.ndarray:
        return np.bincount(cls[mask], minlength=n_cls)

    every = np.ones(len(det), dtype=bool)
    counts = {
        "detections": per_class(every, det_cls),
        "correct": per_class(correct, det_cls),
        "localization": per_class(localization, det_cls),
        "classification": per_class(confusion, det_cls),
        "background": per_class(background, det_cls),
        "duplicate": per_class(duplicate, det_cls),
        "objects": per_class(np.ones(len(gt), dtype=bool), gt_cls),
        "missed": per_class(~claimed, gt_cls),
    }
    return {c: {k: int(v[i]) for k, v in counts.items()} for i, c in enumerate(classes)}


def _rows(
    ground_truth: Mapping[str, Sequence[KittiObject]],
    detections: Mapping[str, Sequence[KittiObject]],
    classes: tuple[str, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """The objects and detections of ``classes`` as float64 rows: objects (G, 6) ``image, class,
    x1, y1, x2, y2``; detections (D, 8) ``image, class, index in the image, -score, x1, y1, x2,
    y2``, both in image order, then file order."""
    code = {c.lower(): i for i, c in enumerate(classes)}
    gt_rows, det_rows = [], []
    for i, k in enumerate(ground_truth):
        for o in ground_truth[k]:
            c = code.get(o.type.lower())
            if c is not None:
                gt_rows.append((i, c, *o.box))
        for j, o in enumerate(detections.get(k, ())):
            c = code.get(o.type.lower())
            if c is not None:
                det_rows.append((i, c, j, -float(o.score or 0.0), *o.box))
    gt = np.array(gt_rows, dtype=np.float64).reshape(-1, 6)
    det = np.array(det_rows, dtype=np.float64).reshape(-1, 8)
    return gt, det


def _top_k(det: np.ndarray, gt_count: np.ndarray) -> np.ndarray:
    """The detection rows of :func:`_rows` sorted by image, then score (highest first, file order on
    ties), keeping the top k of each image, k = its number of objects (``gt_count``)."""
    order = np.lexsort((det[:, 2], det[:, 3], det[:, 0]))
    det = det[order]
    det_img = det[:, 0].astype(np.int64)
    rank = np.arange(len(det)) - np.searchsorted(det_img, det_img, side="left")
    return det[rank < gt_count[det_img]]


def _best_objects(
    gt: np.ndarray, det: np.ndarray, gt_count: np.ndarray, n_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each analysed detection row (every one's image has objects): the index of the object
    of highest IoU in its image (the first in file order on ties), and that IoU."""
    det_count = np.bincount(det[:, 0].astype(np.int64), minlength=n_images).astype(np.int64)
    pd, pg = cross_pairs(
        np.cumsum(det_count) - det_count, det_count, np.cumsum(gt_count) - gt_count, gt_count
    )
    iou = box_overlap(det[pd, 4:8], gt[pg, 2:6], union=True)
    by_best = np.lexsort((pg, -iou, pd))
    _, first = np.unique(pd[by_best], return_index=True)
    return pg[by_best][first], iou[by_best][first]


def format_errors(errors: Mapping[str, Mapping[str, int]]) -> str:
    """A plain-text table of :func:`analyze_errors`: kinds in percent of the analysed detections,
    missed in percent of the objects."""
    width = max(10, *(len(c) for c in errors))
    head = (
        f"{'class':<{width}} | {'dets':>6} {'correct':>8} {'loc':>6} {'cls':>6} {'bg':>6} "
        f"{'dup':>6} | {'objects':>7} {'missed':>7}"
    )
    lines = ["Error analysis (top-k detections per image, k = objects in the image)", head]
    for c, e in errors.items():
        n = max(e["detections"], 1)
        pct = [100.0 * e[k] / n for k in ERROR_KINDS]
        missed = 100.0 * e["missed"] / max(e["objects"], 1)
        lines.append(
            f"{c:<{width}} | {e['detections']:6d} {pct[0]:7.1f}% {pct[1]:5.1f}% {pct[2]:5.1f}% "
            f"{pct[3]:5.1f}% {pct[4]:5.1f}% | {e['objects']:7d} {missed:6.1f}%"
        )
    return "\n".join(lines)
