"""Error analysis (squeezedet.eval.error_analysis) and COCO AP on hand-built scenes."""

from __future__ import annotations

import pytest

from squeezedet.data.kitti_format import KittiObject
from squeezedet.eval import analyze_errors, evaluate_kitti, format_errors


def o(kind: str, x1: float, x2: float) -> KittiObject:
    return KittiObject(kind, (float(x1), 0.0, float(x2), 100.0))


def d(kind: str, x1: float, x2: float, score: float) -> KittiObject:
    return KittiObject(kind, (float(x1), 0.0, float(x2), 100.0), score=score)


def scene():
    gt = {
        # Two cars and a pedestrian: top 3 detections analysed.
        "a": [o("Car", 0, 100), o("Car", 200, 300), o("Pedestrian", 400, 440), o("DontCare", 0, 9)],
        "b": [o("Car", 0, 100)],
        "c": [o("Car", 0, 100)],
        "d": [],
    }
    dets = {
        "a": [
            d("Car", 600, 700, 0.6),  # rank 4 of 4: not analysed
            d("Car", 0, 100, 0.9),  # correct (claims car 1)
            d("Car", 5, 100, 0.8),  # IoU 0.95 with car 1, already claimed: duplicate
            d("Pedestrian", 200, 300, 0.7),  # on car 2: class confusion
        ],
        "b": [d("Car", 50, 150, 0.9)],  # IoU 50/150 = 0.33 < 0.5: localisation
        "c": [d("Car", 500, 600, 0.9), d("Car", 0, 100, 0.1)],  # top 1 only: background
        "d": [d("Cyclist", 0, 100, 0.9)],  # image without objects: not analysed
    }
    return gt, dets


def test_error_kinds_by_hand() -> None:
    gt, dets = scene()
    errors = analyze_errors(gt, dets)
    assert errors["Car"] == {
        "detections": 4, "correct": 1, "localization": 1, "classification": 0,
        "background": 1, "duplicate": 1, "objects": 4, "missed": 3,
    }
    assert errors["Pedestrian"] == {
        "detections": 1, "correct": 0, "localization": 0, "classification": 1,
        "background": 0, "duplicate": 0, "objects": 1, "missed": 1,
    }
    assert errors["Cyclist"]["detections"] == 0
    text = format_errors(errors)
    assert "Car" in text and "25.0%" in text and "75.0%" in text


def test_background_threshold_and_best_object() -> None:
    # IoU exactly 0.1 is background (the original needs > 0.1); the best object decides the class.
    gt = {"x": [o("Pedestrian", 0, 100), o("Car", 100, 200)]}
    dets = {"x": [d("Car", 91, 191, 0.9), d("Car", 0, 10, 0.5)]}  # IoU 0.835 with the car
    errors = analyze_errors(gt, dets)
    assert errors["Car"]["correct"] == 1
    # second detection: IoU with the pedestrian 10/100 = 0.1 exactly -> background
    assert errors["Car"]["background"] == 1


def test_errors_in_evaluate_kitti_json() -> None:
    gt, dets = scene()
    data = evaluate_kitti(gt, dets).to_json()
    assert data["errors"]["Car"]["duplicate"] == 1


def test_coco_ap_by_hand() -> None:
    pytest.importorskip("pycocotools")
    from squeezedet.eval.coco import coco_ap

    box = (100.0, 100.0, 200.0, 190.0)
    gt = {f"{i}": [KittiObject("Car", box)] for i in range(80)}
    dets = {k: [KittiObject("Car", box, score=0.9)] for i, k in enumerate(gt) if i % 2 == 0}
    out = coco_ap(gt, dets, ("Car",))
    # recall reaches 0.5 with precision 1: 51 of the 101 recall points (0, 0.01, ..., 0.5)
    assert out["AP"]["Car"] == pytest.approx(100 * 51 / 101)
    assert out["AP50"]["Car"] == pytest.approx(100 * 51 / 101)
    # a detection inside a DontCare area is ignored, not a false positive
    gt["0"] = gt["0"] + [KittiObject("DontCare", (500.0, 0.0, 700.0, 200.0))]
    dets["0"] = dets["0"] + [KittiObject("Car", (550.0, 50.0, 600.0, 100.0), score=1.0)]
    assert coco_ap(gt, dets, ("Car",))["AP"]["Car"] == pytest.approx(100 * 51 / 101)
