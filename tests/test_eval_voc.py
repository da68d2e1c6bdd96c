"""COCO-style AP (squeezedet.eval.voc) against hand-worked cases and, where installed, pycocotools."""

from __future__ import annotations

import numpy as np
import pytest

from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.samples import IGNORE_OCCLUSION
from squeezedet.errors import SqueezeDetError
from squeezedet.eval.voc import ap_at_iou, average_precision, evaluate_ap


def gt(cls, box, ignored=False):
    return KittiObject(cls, box, occluded=IGNORE_OCCLUSION if ignored else 0)


def det(cls, box, score):
    return KittiObject(cls, box, score=score)


def test_perfect_detections_give_100():
    g = {"1": [gt("a", (0, 0, 10, 10)), gt("a", (20, 20, 40, 40))]}
    d = {"1": [det("a", (0, 0, 10, 10), 0.9), det("a", (20, 20, 40, 40), 0.8)]}
    r = evaluate_ap(g, d, ["a"])
    assert r.ap["a"] == pytest.approx(100) and r.ap50["a"] == pytest.approx(100)
    assert r.map == pytest.approx(100) and r.n_gt == {"a": 2}


def test_one_found_then_a_false_positive_by_hand():
    # ranked: TP (recall 0.5, precision 1), FP (recall 0.5, precision 0.5). Precision read at the
    # 101 recall points: 1 for r in 0, 0.01, ..., 0.50 (51 points), 0 beyond -> AP = 51/101.
    g = {"1": [gt("a", (0, 0, 10, 10)), gt("a", (20, 20, 40, 40))]}
    d = {"1": [det("a", (0, 0, 10, 10), 0.9), det("a", (60, 60, 70, 70), 0.8)]}
    r = evaluate_ap(g, d, ["a"])
    assert r.ap50["a"] == pytest.approx(100 * 51 / 101)
    assert r.ap["a"] == pytest.approx(100 * 51 / 101)


def test_false_positive_first_by_hand():
    # ranked: FP (p 0), TP (recall 1/1, precision 1/2) -> precision 0.5 at every recall point
    g = {"1": [gt("a", (0, 0, 10, 10))]}
    d = {"1": [det("a", (50, 50, 60, 60), 0.9), det("a", (0, 0, 10, 10), 0.5)]}
    assert evaluate_ap(g, d, ["a"]).ap50["a"] == pytest.approx(50)


def test_iou_thresholds_by_hand():
    # IoU of (0, 0, 10, 10) with (0, 0, 10, 8) is 0.8: a TP at 0.50 ... 0.80 (7 thresholds),
    # a miss at 0.85, 0.90, 0.95 -> AP@[.5:.95] = 70, AP50 = AP75 = 100
    g = {"1": [gt("a", (0, 0, 10, 10))]}
    d = {"1": [det("a", (0, 0, 10, 8), 0.9)]}
    r = evaluate_ap(g, d, ["a"])
    assert (r.ap50["a"], r.ap75["a"], r.ap["a"]) == pytest.approx((100, 100, 70))


def test_ap_at_one_iou_threshold_by_hand():
    # IoU of (0, 0, 10, 10) with (0, 0, 10, 4.5) is 0.45: found at 0.3 and 0.4, missed at 0.5.
    # Class b: a box at IoU 0.8 ranked behind a false positive -> precision 1/2 at recall 1.
    g = {"1": [gt("a", (0, 0, 10, 10)), gt("b", (20, 20, 30, 30))]}
    d = {"1": [det("a", (0, 0, 10, 4.5), 0.9), det("b", (50, 50, 60, 60), 0.9),
               det("b", (20, 20, 30, 28), 0.5)]}
    assert ap_at_iou(g, d, ["a", "b", "c"], 0.4) == pytest.approx({"a": 100, "b": 50, "c": None})
    assert ap_at_iou(g, d, ["a"], 0.5) == {"a": 0.0}
    assert ap_at_iou(g, d, ["a", "b"], 0.5)["b"] == pytest.approx(evaluate_ap(g, d, ["b"]).ap50["b"])
    with pytest.raises(SqueezeDetError, match="IoU threshold must be in"):
        ap_at_iou(g, d, ["a"], 0.0)


def test_ignored_objects_neither_help_nor_hurt():
    g = {"1": [gt("a", (0, 0, 10, 10)), gt("a", (50, 50, 70, 70), ignored=True)]}
    d = {"1": [det("a", (52, 50, 70, 70), 0.95), det("a", (50, 50, 70, 69), 0.94),
               det("a", (0, 0, 10, 10), 0.5)]}
    r = evaluate_ap(g, d, ["a"])
    assert r.ap50["a"] == pytest.approx(100) and r.n_gt["a"] == 1


def test_classes_without_ground_truth_are_left_out_of_the_mean():
    g = {"1": [gt("a", (0, 0, 10, 10))], "2": []}
    d = {"1": [det("a", (0, 0, 10, 10), 0.9), det("b", (0, 0, 5, 5), 0.3)]}
    r = evaluate_ap(g, d, ["a", "b"])
    assert r.ap["b"] is None and r.map == pytest.approx(100)
    js = r.to_json()
    assert js["AP"]["b"] is None and js["mAP50"] == pytest.approx(100)
    assert "n/a" in r.format_table()
    assert r.headline == ("mAP", pytest.approx(100))


def test_average_precision_without_detections_is_zero():
    assert average_precision(np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), 3) == 0.0
    assert average_precision(np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), 0) is None


def test_matches_pycocotools_on_random_data():
    pytest.importorskip("pycocotools")
    from squeezedet.eval.coco import coco_ap

    rng = np.random.default_rng(0)
    g, d = {}, {}
    for i in range(12):
        objs, dets = [], []
        for _ in range(rng.integers(0, 6)):
            c = ["Car", "Pedestrian"][int(rng.integers(2))]
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(10, 80, 2)
            objs.append(gt(c, (x, y, x + w, y + h)))
            if rng.random() < 0.8:
                j = rng.normal(0, 4, 4)
                dets.append(det(c, (x + j[0], y + j[1], x + w + j[2], y + h + j[3]),
                                float(rng.random())))
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 300, 2)
            dets.append(det("Car", (x, y, x + 30, y + 20), float(rng.random())))
        g[str(i)], d[str(i)] = objs, dets
    ours = evaluate_ap(g, d, ["Car", "Pedestrian"])
    theirs = coco_ap(g, d, ["Car", "Pedestrian"])
    for c in ("Car", "Pedestrian"):
        assert ours.ap[c] == pytest.approx(theirs["AP"][c], abs=1e-6)
        assert ours.ap50[c] == pytest.approx(theirs["AP50"][c], abs=1e-6)
