"""The fast KITTI evaluation against a literal, loop-by-loop port of the devkit's rules.

``reference_ap`` below is written from the rules of SPEC.md ("KITTI data and evaluation") as
plain loops per image, per threshold, per ground-truth box and per detection, the way
``evaluate_object.cpp`` runs them. Random scenes on a coarse integer grid make the corner cases
common: tied scores, identical boxes (tied overlaps), boxes exactly at the minimum heights, overlaps
exactly at the thresholds, DontCare areas, neighbour classes, short detections of other classes.
"""

from __future__ import annotations

import random

import pytest

from squeezedet.data.kitti_format import KittiObject
from squeezedet.eval import evaluate_kitti

DIFFS = ("easy", "moderate", "hard")
MIN_H = (40, 25, 25)
MAX_OCC = (0, 1, 2)
MAX_TRUNC = (0.15, 0.3, 0.5)
NO_DET = -10000000.0


def ref_overlap(a, b, criterion):
    """IoU (criterion -1) or intersection / area of a (criterion 0), as boxoverlap()."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    a_area = (a[2] - a[0]) * (a[3] - a[1])
    b_area = (b[2] - b[0]) * (b[3] - b[1])
    if criterion == -1:
        return inter / (a_area + b_area - inter)
    return inter / a_area


def ref_clean(cls, gts, dets, d, devkit):
    neighbour = {"car": "van", "pedestrian": "person_sitting"}.get(cls.lower())
    ignored_gt, dc, ignored_det, n_gt = [], [], [], 0
    for g in gts:
        height = g.box[3] - g.box[1]
        if g.type.lower() == cls.lower():
            valid_class = 1
        elif neighbour is not None and g.type.lower() == neighbour:
            valid_class = 0
        else:
            valid_class = -1
        too_small = height <= MIN_H[d] if devkit == "2017" else height < MIN_H[d]
        ignore = g.occluded > MAX_OCC[d] or g.truncated > MAX_TRUNC[d] or too_small
        if valid_class == 1 and not ignore:
            ignored_gt.append(0)
            n_gt += 1
        elif valid_class == 0 or (ignore and valid_class == 1):
            ignored_gt.append(1)
        else:
            ignored_gt.append(-1)
    for g in gts:
        if g.type.lower() == "dontcare":
            dc.append(g)
    for det in dets:
        valid_class = 1 if det.type.lower() == cls.lower() else -1
        height = int(abs(det.box[1] - det.box[3]))
        if devkit == "2017" and height < MIN_H[d]:
            ignored_det.append(1)
        elif valid_class == 1:
            ignored_det.append(0)
        else:
            ignored_det.append(-1)
    return ignored_gt, dc, ignored_det, n_gt


def ref_statistics(gts, dets, dc, ignored_gt, ignored_det, compute_fp, min_overlap, thresh=0.0):
    tp = fp = fn = 0
    v = []
    assigned = [False] * len(dets)
    below = [compute_fp and det.score < thresh for det in dets]
    for i, g in enumerate(gts):
        if ignored_gt[i] == -1:
            continue
        det_idx, valid_detection, max_overlap = -1, NO_DET, 0.0
        assigned_ignored_det = False
        for j, det in enumerate(dets):
            if ignored_det[j] == -1 or assigned[j] or below[j]:
                continue
            overlap = ref_overlap(det.box, g.box, -1)
            if not compute_fp and overlap > min_overlap and det.score > valid_detection:
                det_idx, valid_detection = j, det.score
            elif (
                compute_fp
                and overlap > min_overlap
                and (overlap > max_overlap or assigned_ignored_det)
                and ignored_det[j] == 0
            ):
                max_overlap, det_idx, valid_detection = overlap, j, 1
                assigned_ignored_det = False
            elif (
                compute_fp
                and overlap > min_overlap
                and valid_detection == NO_DET
                and ignored_det[j] == 1
            ):
                det_idx, valid_detection = j, 1
                assigned_ignored_det = True
        if valid_detection == NO_DET and ignored_gt[i] == 0:
            fn += 1
        elif valid_detection != NO_DET and (ignored_gt[i] == 1 or ignored_det[det_idx] == 1):
            assigned[det_idx] = True
        elif valid_detection != NO_DET:
            tp += 1
            v.append(dets[det_idx].score)
            assigned[det_idx] = True
    if compute_fp:
        for j in range(len(dets)):
            if not (assigned[j] or ignored_det[j] in (-1, 1) or below[j]):
                fp += 1
        nstuff = 0
        for area in dc:
            for j, det in enumerate(dets):
                if assigned[j] or ignored_det[j] in (-1, 1) or below[j]:
                    continue
                if ref_overlap(det.box, area.box, 0) > min_overlap:
                    assigned[j] = True
                    nstuff += 1
        fp -= nstuff
    return tp, fp, fn, v


def ref_thresholds(v, n_gt):
    v = sorted(v, reverse=True)
    t, current = [], 0.0
    for i in range(len(v)):
        l_recall = (i + 1) / n_gt
        r_recall = (i + 2) / n_gt if i < len(v) - 1 else l_recall
        if (r_recall - current) < (current - l_recall) and i < len(v) - 1:
            continue
        t.append(v[i])
        current += 1.0 / 40.0
    return t


def reference_ap(gt, det, classes=("Car", "Pedestrian", "Cyclist"), devkit="2017"):
    """{class: {difficulty: (precision[41], ap_r40, ap_r11, thresholds, tp, fp)}}, evaluated."""
    names = list(gt)
    out, evaluated = {}, {}
    for cls in classes:
        min_overlap = 0.7 if cls.lower() == "car" else 0.5
        evaluated[cls] = any(
            o.type.lower() == cls.lower() and o.box[0] >= 0 for k in names for o in det.get(k, [])
        )
        out[cls] = {}
        for d, diff in enumerate(DIFFS):
            if not evaluated[cls]:
                out[cls][diff] = ([0.0] * 41, 0.0, 0.0, [], [], [])
                continue
            cleaned, v, n_gt = [], [], 0
            for k in names:
                dets = list(det.get(k, []))
                ig, dc, idet, n = ref_clean(cls, gt[k], dets, d, devkit)
                n_gt += n
                cleaned.append((gt[k], dets, dc, ig, idet))
                v += ref_statistics(gt[k], dets, dc, ig, idet, False, min_overlap)[3]
            thresholds = ref_thresholds(v, n_gt)
            precision = [0.0] * 41
            tps, fps = [], []
            for t_i, t in enumerate(thresholds):
                tp = fp = 0
                for gts, dets, dc, ig, idet in cleaned:
                    s = ref_statistics(gts, dets, dc, ig, idet, True, min_overlap, t)
                    tp, fp = tp + s[0], fp + s[1]
                tps.append(tp)
                fps.append(fp)
                precision[t_i] = tp / (tp + fp) if tp + fp > 0 else 0.0
            for i in range(len(thresholds)):
                precision[i] = max(precision[i:])
            r40 = 0.0
            for i in range(1, 41):
                r40 += precision[i]
            r11 = 0.0
            for i in range(0, 41, 4):
                r11 += precision[i]
            out[cls][diff] = (precision, r40 / 40 * 100, r11 / 11 * 100, thresholds, tps, fps)
    return out, evaluated


GT_TYPES = ["Car", "Car", "car", "Van", "Truck", "Pedestrian", "Pedestrian", "Person_sitting",
            "Cyclist", "Cyclist", "DontCare", "Misc"]
DET_TYPES = ["Car", "Car", "CAR", "Pedestrian", "Cyclist", "Van", "Truck"]


def random_scene(rng: random.Random, n_images: int):
    """Small crowded images on a 5-px grid, so that ties and exact thresholds happen."""
    gt, det = {}, {}
    for i in range(n_images):
        objs = []
        for _ in range(rng.randint(0, 9)):
            x1, y1 = 5 * rng.randint(0, 20), 5 * rng.randint(0, 8)
            w = 5 * rng.randint(2, 16)
            h = rng.choice([20, 25, 30, 40, 45, 50, 60, 80, 100, 39.5, 40.5, 25.5])
            objs.append(
                KittiObject(
                    type=rng.choice(GT_TYPES),
                    box=(x1, y1, x1 + w, y1 + h),
                    truncated=rng.choice([0.0, 0.0, 0.0, 0.15, 0.3, 0.5, 0.7]),
                    occluded=rng.choice([0, 0, 0, 1, 2, 3]),
                )
            )
        gt[f"{i:06d}"] = objs
        if rng.random() < 0.1:
            continue  # no detections for this image
        dets = []
        for _ in range(rng.randint(0, 16)):
            if objs and rng.random() < 0.7:
                g = rng.choice(objs)
                b = g.box
                if rng.random() < 0.4:
                    box = b  # identical: ties in overlap
                else:
                    box = tuple(v + 5 * rng.randint(-2, 2) for v in b)
                    if box[2] <= box[0] or box[3] <= box[1]:
                        box = b
                known = g.type.lower() in ("car", "pedestrian", "cyclist")
                kind = g.type if known and rng.random() < 0.7 else rng.choice(DET_TYPES)
                good = box == b and kind == g.type
                score = rng.choice([0.5, 0.7, 0.9, 0.9, rng.random()]) if good else rng.random()
            else:
                x1, y1 = 5 * rng.randint(0, 20), 5 * rng.randint(0, 8)
                box = (x1, y1, x1 + 5 * rng.randint(2, 16), y1 + rng.choice([20, 24.9, 25, 39.99,
                                                                            40, 45, 60]))
                kind = rng.choice(DET_TYPES)
                score = rng.choice([0.1, 0.3, 0.5, rng.random()])
            dets.append(KittiObject(type=kind, box=box, score=score))
        det[f"{i:06d}"] = dets
    return gt, det


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("devkit", ["2017", "2013"])
def test_fast_matches_reference_on_random_scenes(seed: int, devkit: str) -> None:
    rng = random.Random(seed)
    gt, det = random_scene(rng, n_images=rng.choice([5, 40, 120]))
    expected, evaluated = reference_ap(gt, det, devkit=devkit)
    got = evaluate_kitti(gt, det, devkit=devkit, error_analysis=False)
    assert got.evaluated == evaluated
    for cls, per_diff in expected.items():
        for diff, (precision, r40, r11, thresholds, tp, fp) in per_diff.items():
            curve = got.curves[cls][diff]
            assert list(curve.thresholds) == thresholds, (cls, diff)
            assert list(curve.tp) == tp, (cls, diff)
            assert list(curve.fp) == fp, (cls, diff)
            assert list(curve.precision) == precision, (cls, diff)
            assert got.ap_r40[cls][diff] == r40
            assert got.ap_r11[cls][diff] == r11


def test_reference_agrees_on_many_small_scenes() -> None:
    # Many tiny data sets: each threshold decision matters more when there are few objects.
    rng = random.Random(1234)
    for _ in range(40):
        gt, det = random_scene(rng, n_images=rng.randint(1, 6))
        expected, _ = reference_ap(gt, det)
        got = evaluate_kitti(gt, det, error_analysis=False)
        for cls, per_diff in expected.items():
            for diff, (precision, *_) in per_diff.items():
                assert list(got.curves[cls][diff].precision) == precision, (cls, diff)


def test_reference_itself_on_hand_cases() -> None:
    """The reference port gives the spec's hand-derived answers (so agreeing with it counts)."""
    box = (100.0, 100.0, 200.0, 190.0)
    ten = {f"{i}": [KittiObject("Car", box)] for i in range(10)}
    ten_det = {k: [KittiObject("Car", box, score=0.5 + i / 100)] for i, k in enumerate(ten)}
    out, _ = reference_ap(ten, ten_det)
    assert out["Car"]["moderate"][1] == pytest.approx(22.5)
    assert out["Car"]["moderate"][2] == pytest.approx(300 / 11)
    eighty = {f"{i}": [KittiObject("Car", box)] for i in range(80)}
    half = {k: [KittiObject("Car", box, score=0.7)] for i, k in enumerate(eighty) if i % 2}
    out, _ = reference_ap(eighty, half)
    assert out["Car"]["easy"][1] == pytest.approx(50.0)
    assert out["Car"]["easy"][2] == pytest.approx(600 / 11)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 106))
@pytest.mark.parametrize("devkit", ["2017", "2013"])
def test_fast_matches_reference_on_larger_scenes(seed: int, devkit: str) -> None:
    rng = random.Random(seed)
    gt, det = random_scene(rng, n_images=400)
    expected, _ = reference_ap(gt, det, devkit=devkit)
    got = evaluate_kitti(gt, det, devkit=devkit, error_analysis=False)
    for cls, per_diff in expected.items():
        for diff, (precision, _, _, thresholds, tp, fp) in per_diff.items():
            curve = got.curves[cls][diff]
            assert list(curve.thresholds) == thresholds, (cls, diff)
            assert (list(curve.tp), list(curve.fp)) == (tp, fp), (cls, diff)
            assert list(curve.precision) == precision, (cls, diff)
