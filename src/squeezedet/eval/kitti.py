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

The result types live in :mod:`squeezedet.eval.kitti_results`, the vectorised matching in
:mod:`squeezedet.eval.kitti_matching`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from squeezedet.data.kitti_format import KittiObject, parse_kitti_line
from squeezedet.errors import DataError, SqueezeDetError
from squeezedet.eval.kitti_matching import (
    Flat,
    Overlaps,
    candidates,
    flatten,
    overlaps,
    pass1_tp_scores,
    pass2_counts,
    score_thresholds,
)
from squeezedet.eval.kitti_results import DIFFICULTIES, N_SAMPLE_PTS, KittiEvalResult, PRCurve

__all__ = [
    "DEFAULT_CLASSES",
    "DEVKITS",
    "DIFFICULTIES",
    "N_SAMPLE_PTS",
    "KittiEvalResult",
    "PRCurve",
    "evaluate_dirs",
    "evaluate_kitti",
    "read_label_dir",
    "read_result_file",
    "write_json",
]

MIN_HEIGHT = (40, 25, 25)  # pixels, per difficulty
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
DEFAULT_CLASSES = ("Car", "Pedestrian", "Cyclist")
#: IoU a match must exceed, per lower-case class name; other classes use 0.5.
MIN_OVERLAP = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
#: The class whose ground truth is ignored (not a false negative) for each class.
NEIGHBOUR_CLASS = {"car": "van", "pedestrian": "person_sitting"}
DEVKITS = ("2017", "2013")


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
    gt = flatten([ground_truth[k] for k in names], vocab, is_gt=True)
    det = flatten(det_lists, vocab, is_gt=False)
    result = _evaluate_flat(gt, det, vocab, classes, devkit, len(names), messages)

    if error_analysis:
        from squeezedet.eval.error_analysis import analyze_errors

        result.errors = analyze_errors(ground_truth, detections, classes)
    if coco:
        from squeezedet.eval.coco import coco_ap

        result.coco = coco_ap(ground_truth, detections, classes)
    return result


def _evaluate_flat(
    gt: Flat,
    det: Flat,
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
    pairs = overlaps(
        gt,
        det,
        [c for c in class_codes + neighbour_codes if c >= 0],
        code("dontcare"),
        min(_class_overlap(c) for c in classes),
    )
    curves: dict[str, dict[str, PRCurve]] = {}
    evaluated: dict[str, bool] = {}
    for name, c_code, n_code in zip(classes, class_codes, neighbour_codes, strict=True):
        evaluated[name] = bool(c_code >= 0 and np.any((det.type == c_code) & (det.box[:, 0] >= 0)))
        if evaluated[name]:
            curves[name] = _class_curves(gt, det, pairs, _class_overlap(name), c_code, n_code, devkit)
        else:
            messages.append(
                f"{name}: no detection of this class with x1 >= 0; not evaluated (AP reported as 0)"
            )
            empty = PRCurve((0.0,) * N_SAMPLE_PTS, (), (), (), (), (), 0)
            curves[name] = {diff: empty for diff in DIFFICULTIES}
    return KittiEvalResult(
        classes=classes,
        ap_r40={c: {d: curve.ap_r40 for d, curve in curves[c].items()} for c in classes},
        ap_r11={c: {d: curve.ap_r11 for d, curve in curves[c].items()} for c in classes},
        evaluated=evaluated,
        n_images=n_images,
        curves=curves,
        warnings=messages,
        devkit=devkit,
    )


def _class_curves(
    gt: Flat, det: Flat, pairs: Overlaps, thr: float, c_code: int, n_code: int, devkit: str
) -> dict[str, PRCurve]:
    """The curves of one evaluated class (type code ``c_code``, neighbour ``n_code`` or -1, match
    threshold ``thr``) per difficulty."""
    same_gt = gt.type == c_code
    same_det = det.type == c_code
    neighbour_gt = (gt.type == n_code) if n_code >= 0 else np.zeros(len(gt.type), bool)
    pair_ok = pairs.iou > thr
    dc_hit = np.zeros(len(det.type), dtype=bool)
    dc_hit[pairs.qd[pairs.ioa > thr]] = True
    gt_height = gt.box[:, 3] - gt.box[:, 1]
    det_height = np.floor(np.abs(det.box[:, 1] - det.box[:, 3]))  # C int() of a value >= 0
    truncation, occlusion = gt.extra[:, 0], gt.extra[:, 1]
    curves = {}
    for d_i, diff in enumerate(DIFFICULTIES):
        too_small = (
            gt_height <= MIN_HEIGHT[d_i] if devkit == "2017" else gt_height < MIN_HEIGHT[d_i]
        )
        ignore = (occlusion > MAX_OCCLUSION[d_i]) | (truncation > MAX_TRUNCATION[d_i]) | too_small
        gt_status = np.where(same_gt & ~ignore, 0, np.where(same_gt | neighbour_gt, 1, -1))
        if devkit == "2017":
            det_status = np.where(det_height < MIN_HEIGHT[d_i], 1, np.where(same_det, 0, -1))
        else:
            det_status = np.where(same_det, 0, -1)
        sel = pair_ok & (gt_status[pairs.pg] != -1) & (det_status[pairs.pd] != -1)
        curves[diff] = _curve(gt, det, pairs, sel, gt_status, det_status, dc_hit)
    return curves


def _curve(
    gt: Flat,
    det: Flat,
    pairs: Overlaps,
    sel: np.ndarray,
    gt_status: np.ndarray,
    det_status: np.ndarray,
    dc_hit: np.ndarray,
) -> PRCurve:
    """One class and difficulty's curve: the two passes over the pairs ``sel`` of ``pairs``, with
    the statuses of the boxes (0 valid, 1 ignored, -1 not considered) and the detections that cover
    a DontCare box (``dc_hit``)."""
    det_score = det.extra[:, 0]
    n_gt = int(np.count_nonzero(gt_status == 0))
    cand = candidates(
        pairs.pg[sel], pairs.pd[sel], pairs.iou[sel], gt.img, gt_status, det_status, det_score
    )
    thresholds = score_thresholds(pass1_tp_scores(cand), n_gt)
    tp, consumed, assigned = pass2_counts(cand, thresholds)
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
    return PRCurve(
        precision=tuple(float(p) for p in precision),
        recall=tuple(float(r) for r in rec),
        thresholds=tuple(float(t) for t in thresholds),
        tp=tuple(int(x) for x in tp),
        fp=tuple(int(x) for x in fp),
        fn=tuple(int(x) for x in fn),
        n_gt=n_gt,
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
