"""KITTI AP on hand-built scenes whose answers follow from the devkit's rules (SPEC.md).

Derivations used below (N = valid objects, all found exactly with precision 1 unless said):
* N <= 40: every true positive is its own threshold (the target recall, growing by 1/40, never gets
  ahead of i/N), so precision points 0..N-1 are 1 and the rest 0: AP_R40 = (N-1)/40, AP_R11 =
  (number of multiples of 4 below N)/11. N = 10 -> 22.5 and 3/11 = 27.27.
* N > 40 all found: 41 thresholds, precision 1 everywhere -> 100.
* N = 80 (or 160) with half found: thresholds at recall 1/80, 2/80, 4/80, ..., 40/80 (21 of them),
  precision 1 -> AP_R40 = 20/40 = 50, AP_R11 = points 0, 4, ..., 20 = 6/11 = 54.5455.
* One false positive scoring above all N > 40 true positives: precision at k found = k/(k+1),
  increasing, so the envelope is N/(N+1) at all 41 points -> 100 N/(N+1).
"""

from __future__ import annotations

import pytest

from squeezedet.data.kitti_format import KittiObject
from squeezedet.errors import SqueezeDetError
from squeezedet.eval import evaluate_kitti

DIFFS = ("easy", "moderate", "hard")
CAR_BOX = (100.0, 100.0, 200.0, 190.0)  # 90 px high: valid at every difficulty


def obj(kind: str, box=CAR_BOX, **kw) -> KittiObject:
    return KittiObject(type=kind, box=tuple(float(v) for v in box), **kw)


def det(kind: str, box=CAR_BOX, score: float = 0.9) -> KittiObject:
    return KittiObject(type=kind, box=tuple(float(v) for v in box), score=score)


def perfect(n: int, kind: str = "Car", box=CAR_BOX, start: int = 0, **gt_kw):
    """n images with one object each and its exact detection (scores 0.5 .. 0.99, distinct)."""
    gt = {f"{i:06d}": [obj(kind, box, **gt_kw)] for i in range(start, start + n)}
    dets = {
        k: [det(kind, box, 0.5 + 0.49 * j / max(n, 1))] for j, k in enumerate(gt)
    }
    return gt, dets


def ap(result, metric: str = "R40", cls: str = "Car") -> list[float]:
    table = result.ap_r40 if metric == "R40" else result.ap_r11
    return [table[cls][d] for d in DIFFS]


def merge(*pairs):
    gt, dets = {}, {}
    for g, d in pairs:
        gt.update(g)
        dets.update(d)
    return gt, dets


@pytest.mark.parametrize(
    "n, r40, r11",
    [
        (10, 22.5, 300 / 11),
        (1, 0.0, 100 / 11),
        (40, 97.5, 1000 / 11),  # points 0..39 are 1: R11 misses only point 40
        (41, 100.0, 100.0),
        (80, 100.0, 100.0),
    ],
)
def test_perfect_detections(n: int, r40: float, r11: float) -> None:
    gt, dets = perfect(n)
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result, "R40") == pytest.approx([r40] * 3, abs=1e-9)
    assert ap(result, "R11") == pytest.approx([r11] * 3, abs=1e-9)
    assert result.evaluated == {"Car": True, "Pedestrian": False, "Cyclist": False}


def test_perfect_detections_with_equal_scores() -> None:
    gt = {f"{i}": [obj("Car")] for i in range(10)}
    dets = {k: [det("Car", score=0.8)] for k in gt}
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result, "R40") == pytest.approx([22.5] * 3)
    assert ap(result, "R11") == pytest.approx([27.2727272727] * 3)


def test_no_detections_is_zero_and_not_evaluated() -> None:
    gt, _ = perfect(50)
    result = evaluate_kitti(gt, {k: [] for k in gt}, error_analysis=False)
    assert result.evaluated == {"Car": False, "Pedestrian": False, "Cyclist": False}
    assert result.map_r40 == 0.0 and result.map_r11 == 0.0
    assert any("Car" in w and "not evaluated" in w for w in result.warnings)
    assert result.to_json()["evaluated"]["Car"] is False


def test_class_evaluated_only_with_a_detection_at_x1_not_negative() -> None:
    box = (-5.0, 100.0, 95.0, 190.0)
    gt, dets = perfect(80, box=box)
    assert evaluate_kitti(gt, dets, error_analysis=False).evaluated["Car"] is False
    dets["000000"] = [det("Car", CAR_BOX)]  # one detection with x1 >= 0 switches it on
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert result.evaluated["Car"] is True
    assert ap(result)[0] > 0


@pytest.mark.parametrize("n", [80, 160])
def test_half_found(n: int) -> None:
    gt, dets = perfect(n)
    for j, k in enumerate(gt):
        if j % 2:
            dets[k] = []
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result, "R40") == pytest.approx([50.0] * 3)
    assert ap(result, "R11") == pytest.approx([600 / 11] * 3)
    assert ap(result, "R11")[0] == pytest.approx(54.5455, abs=1e-4)


def test_one_false_positive_above_all_true_positives() -> None:
    gt, dets = perfect(80)
    dets["000000"] = dets["000000"] + [det("Car", (500, 100, 600, 190), score=1.0)]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result, "R40") == pytest.approx([100 * 80 / 81] * 3)
    assert ap(result, "R11") == pytest.approx([100 * 80 / 81] * 3)


@pytest.mark.parametrize(
    "det_box, is_fp",
    [
        ((550, 50, 600, 100), False),  # inside the DontCare area
        ((630, 0, 730, 100), True),  # intersection / own area = 0.7 exactly: not > 0.7
        ((629, 0, 729, 100), False),  # 0.71
        ((650, 0, 750, 100), True),  # 0.5
    ],
)
def test_detection_in_dontcare(det_box, is_fp: bool) -> None:
    gt, dets = perfect(80)
    gt["000000"] = gt["000000"] + [obj("DontCare", (500, 0, 700, 200))]
    dets["000000"] = dets["000000"] + [det("Car", det_box, score=1.0)]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    expected = 100 * 80 / 81 if is_fp else 100.0
    assert ap(result, "R40") == pytest.approx([expected] * 3)


@pytest.mark.parametrize(
    "cls, neighbour",
    [("Car", "Van"), ("Pedestrian", "Person_sitting")],
)
def test_neighbour_class_is_ignored_not_false_positive(cls: str, neighbour: str) -> None:
    box = (100, 100, 140, 190)
    gt, dets = perfect(80, cls, box)
    # a neighbour object detected as the class (top score), and one not detected at all
    gt["x1"] = [obj(neighbour, box)]
    dets["x1"] = [det(cls, box, score=1.0)]
    gt["x2"] = [obj(neighbour, box)]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result, "R40", cls) == pytest.approx([100.0] * 3)


def test_car_detection_on_a_truck_is_a_false_positive() -> None:
    gt, dets = perfect(80)
    gt["truck"] = [obj("Truck")]
    dets["truck"] = [det("Car", score=1.0)]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result, "R40") == pytest.approx([100 * 80 / 81] * 3)


def test_person_sitting_is_not_a_cyclist_neighbour() -> None:
    box = (100, 100, 140, 190)
    gt, dets = perfect(80, "Cyclist", box)
    gt["x"] = [obj("Person_sitting", box)]
    dets["x"] = [det("Cyclist", box, score=1.0)]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result, "R40", "Cyclist") == pytest.approx([100 * 80 / 81] * 3)


@pytest.mark.parametrize("devkit", ["2017", "2013"])
def test_ground_truth_exactly_at_minimum_height(devkit: str) -> None:
    # 80 cars exactly 40 px high (never detected) + 80 cars 90 px high (found exactly).
    at_min = {f"m{i}": [obj("Car", (0, 10, 50, 50))] for i in range(80)}
    gt, dets = perfect(80)
    gt.update(at_min)
    dets.update({k: [] for k in at_min})
    result = evaluate_kitti(gt, dets, devkit=devkit, error_analysis=False)
    easy, moderate, hard = ap(result)
    # 2017: "height <= 40" ignores them for easy, so easy has N = 80 -> 100; 2013 keeps them.
    assert easy == pytest.approx(100.0 if devkit == "2017" else 50.0)
    assert moderate == pytest.approx(50.0) and hard == pytest.approx(50.0)  # 40 > 25: valid
    assert result.curves["Car"]["easy"].n_gt == (80 if devkit == "2017" else 160)


def test_ground_truth_at_minimum_height_detected_is_neither_tp_nor_fp() -> None:
    gt, dets = perfect(80, box=(0, 10, 50, 50))  # 40 px: ignored for easy, valid otherwise
    result = evaluate_kitti(gt, dets, error_analysis=False)
    easy, moderate, hard = ap(result)
    assert easy == 0.0  # no valid object, the detections are consumed by the ignored ones
    assert result.curves["Car"]["easy"].n_gt == 0
    assert moderate == pytest.approx(100.0) and hard == pytest.approx(100.0)


@pytest.mark.parametrize(
    "height, easy_fp",
    [(39.99, False), (40.0, True)],  # int(39.99) = 39 < 40: ignored; 40 is not short
)
def test_short_detections(height: float, easy_fp: bool) -> None:
    gt, dets = perfect(80)
    dets["000000"] = dets["000000"] + [
        det("Car", (500 + 60 * i, 100, 550 + 60 * i, 100 + height), score=1.0) for i in range(10)
    ]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    # 10 false positives above all 80 true positives: envelope 80/90 everywhere
    with_fp = 100 * 80 / 90
    assert ap(result)[0] == pytest.approx(with_fp if easy_fp else 100.0)
    assert ap(result)[1:] == pytest.approx([with_fp] * 2)  # >= 25 px: counted for moderate, hard
    # The 2013 devkit counts short detections as false positives
    old = evaluate_kitti(gt, dets, devkit="2013", error_analysis=False)
    assert ap(old) == pytest.approx([with_fp] * 3)


def test_short_detection_of_another_class_is_ignored_too() -> None:
    gt, dets = perfect(80)
    dets["000000"] = dets["000000"] + [det("Pedestrian", (500, 100, 520, 139.5), score=1.0)]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result)[0] == pytest.approx(100.0)


def test_short_detection_on_a_valid_object_is_neither_tp_nor_fn() -> None:
    # 80 cars found exactly; 80 cars 41 px high (valid for easy) each covered only by a 39.99 px
    # detection (IoU 39.99/41 > 0.7, but ignored for easy): they stay in N = 160, so easy = 50.
    gt, dets = perfect(80)
    for i in range(80):
        gt[f"s{i}"] = [obj("Car", (0, 0, 100, 41))]
        dets[f"s{i}"] = [det("Car", (0, 0, 100, 39.99), score=0.95)]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    curve = result.curves["Car"]["easy"]
    assert curve.n_gt == 160
    assert ap(result)[0] == pytest.approx(50.0)
    assert curve.fp[-1] == 0 and curve.tp[-1] == 80 and curve.fn[-1] == 0


@pytest.mark.parametrize(
    "cls, det_y2, matched",
    [
        ("Car", 170.0, False),  # IoU = 70/100 = 0.7 exactly: not > 0.7
        ("Car", 171.0, True),
        ("Pedestrian", 150.0, False),  # IoU = 0.5 exactly
        ("Pedestrian", 151.0, True),
    ],
)
def test_overlap_exactly_at_threshold(cls: str, det_y2: float, matched: bool) -> None:
    box = (0.0, 100.0, 100.0, 200.0)
    gt = {f"{i}": [obj(cls, box)] for i in range(80)}
    dets = {k: [det(cls, (0.0, 100.0, 100.0, det_y2))] for k in gt}
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result, "R40", cls) == pytest.approx([100.0 if matched else 0.0] * 3)


def test_difficulty_from_occlusion_and_truncation() -> None:
    occluded, d1 = perfect(80, occluded=1)
    result = evaluate_kitti(occluded, d1, error_analysis=False)
    assert ap(result) == pytest.approx([0.0, 100.0, 100.0])
    truncated, d2 = perfect(80, truncated=0.3)  # > 0.15, not > 0.3
    result = evaluate_kitti(truncated, d2, error_analysis=False)
    assert ap(result) == pytest.approx([0.0, 100.0, 100.0])
    at_limit, d3 = perfect(80, truncated=0.15)  # not > 0.15: easy
    assert ap(evaluate_kitti(at_limit, d3, error_analysis=False)) == pytest.approx([100.0] * 3)
    heavy, d4 = perfect(80, occluded=2, truncated=0.5)
    assert ap(evaluate_kitti(heavy, d4, error_analysis=False)) == pytest.approx([0.0, 0.0, 100.0])


def test_class_names_are_case_insensitive() -> None:
    gt = {f"{i}": [obj("car")] for i in range(80)}
    dets = {k: [det("CAR")] for k in gt}
    assert ap(evaluate_kitti(gt, dets, error_analysis=False)) == pytest.approx([100.0] * 3)


def test_pass_1_picks_by_score_and_pass_2_by_overlap() -> None:
    # Per image, in x (all boxes y 100..200): objects G1 = [0, 100], G2 = [20, 120]; detection
    # A = [15, 115] (IoU 0.739 with G1, 0.905 with G2) listed before B = [0, 100] (IoU 1 with G1,
    # 0.667 with G2), both scoring 0.9. Pass 1: G1 takes A (equal scores: the first), G2 is left
    # without a candidate -> one recorded score per image: 80 of N = 160, thresholds as for
    # "half found" (all 0.9). Pass 2: G1 takes B (largest overlap), G2 takes A -> 160 TP, no FP,
    # precision 1 at the 21 thresholds -> AP_R40 50 (25 if pass 2 also went by score).
    gt, dets = {}, {}
    for i in range(80):
        gt[f"{i}"] = [obj("Car", (0, 100, 100, 200)), obj("Car", (20, 100, 120, 200))]
        dets[f"{i}"] = [det("Car", (15, 100, 115, 200), 0.9), det("Car", (0, 100, 100, 200), 0.9)]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert ap(result) == pytest.approx([50.0] * 3)
    assert ap(result, "R11") == pytest.approx([600 / 11] * 3)
    curve = result.curves["Car"]["easy"]
    assert curve.tp == (160,) * 21 and curve.fp == (0,) * 21


def test_mean_and_json_shape() -> None:
    gt_c, d_c = perfect(80, "Car")
    gt_p, d_p = perfect(10, "Pedestrian", (100, 100, 130, 190), start=100)
    gt, dets = merge((gt_c, d_c), (gt_p, d_p))
    result = evaluate_kitti(gt, dets)
    data = result.to_json()
    assert set(data) >= {"AP_R40", "AP_R11", "mAP_R40", "mAP_R11", "evaluated", "n_images",
                         "warnings", "errors"}
    assert set(data["AP_R40"]) == {"Car", "Pedestrian", "Cyclist"}
    assert set(data["AP_R40"]["Car"]) == {"easy", "moderate", "hard"}
    assert data["n_images"] == 90
    assert data["mAP_R40"] == pytest.approx((3 * 100 + 3 * 22.5) / 9)
    assert data["mAP_R11"] == pytest.approx((3 * 100 + 3 * 300 / 11) / 9)
    assert data["evaluated"] == {"Car": True, "Pedestrian": True, "Cyclist": False}
    table = result.format_table()
    assert "Car" in table and "22.50" in table and "not evaluated" in table


def test_missing_detections_entry_warns_and_counts_as_empty() -> None:
    gt, dets = perfect(80)
    del dets["000079"]
    result = evaluate_kitti(gt, dets, error_analysis=False)
    assert any("no detections" in w and "000079" in w for w in result.warnings)
    assert result.n_images == 80
    assert result.curves["Car"]["easy"].n_gt == 80


def test_detection_without_score_is_an_error() -> None:
    gt, _ = perfect(1)
    with pytest.raises(SqueezeDetError, match="no score"):
        evaluate_kitti(gt, {"000000": [obj("Car")]})


def test_unknown_devkit_is_an_error() -> None:
    with pytest.raises(SqueezeDetError, match="devkit"):
        evaluate_kitti({}, {}, devkit="2020")


def test_other_classes_use_overlap_half() -> None:
    box = (0.0, 100.0, 100.0, 200.0)
    gt = {f"{i}": [obj("Truck", box)] for i in range(80)}
    dets = {k: [det("Truck", (0.0, 100.0, 100.0, 160.0))] for k in gt}  # IoU 0.6
    result = evaluate_kitti(gt, dets, classes=("Truck",), error_analysis=False)
    assert ap(result, "R40", "Truck") == pytest.approx([100.0] * 3)
