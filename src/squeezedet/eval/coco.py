"""COCO-style AP@[.5:.95] and AP@.5 of KITTI-format detections (needs the extra ``coco``).

The ground-truth boxes of each class (all KITTI difficulties; neighbour classes not counted) become
COCO annotations; DontCare boxes become ``iscrowd`` regions of every class, so that detections in
them are neither true nor false positives (COCO matches a crowd region by intersection over the
detection's area, like KITTI's DontCare rule). pycocotools then runs its standard evaluation
(101 recall points, IoU 0.50:0.05:0.95, area "all", at most 100 detections per image and class).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from squeezedet.data.kitti_format import KittiObject
from squeezedet.errors import require


def coco_ap(
    ground_truth: Mapping[str, Sequence[KittiObject]],
    detections: Mapping[str, Sequence[KittiObject]],
    classes: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
) -> dict[str, Any]:
    """COCO AP in percent: ``{"AP": {class: ...}, "AP50": {class: ...}, "mAP": ..., "mAP50": ...}``.

    A class without ground truth gets ``None``; the means are over the other classes.
    """
    require("pycocotools", "coco")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    code = {c.lower(): i + 1 for i, c in enumerate(classes)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for img_id, name in enumerate(ground_truth, start=1):
        images.append({"id": img_id, "file_name": name})
        for o in ground_truth[name]:
            x1, y1, x2, y2 = o.box
            kind = o.type.lower()
            crowd = kind == "dontcare"
            cats = list(code.values()) if crowd else [code[kind]] if kind in code else []
            for cat in cats:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": img_id, "category_id": cat,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(crowd),
                })
        for o in detections.get(name, ()):
            det_cat = code.get(o.type.lower())
            if det_cat is not None:
                x1, y1, x2, y2 = o.box
                results.append({"image_id": img_id, "category_id": det_cat,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(o.score or 0)})
    categories = [{"id": i, "name": c} for c, i in zip(classes, code.values(), strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations,
                           "categories": categories}
        coco_gt.createIndex()
        if not results:
            zeros = dict.fromkeys(classes, 0.0)
            return {"AP": zeros, "AP50": dict(zeros), "mAP": 0.0, "mAP50": 0.0}
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, class, area, maxDets]
    ap: dict[str, float | None] = {}
    ap50: dict[str, float | None] = {}
    for k, cls in enumerate(classes):
        p_all = precision[:, :, k, 0, -1]
        p_50 = precision[0, :, k, 0, -1]
        ap[cls] = float(np.mean(p_all[p_all > -1]) * 100) if np.any(p_all > -1) else None
        ap50[cls] = float(np.mean(p_50[p_50 > -1]) * 100) if np.any(p_50 > -1) else None

    def mean(values: Mapping[str, float | None]) -> float:
        kept = [v for v in values.values() if v is not None]
        return float(sum(kept) / len(kept)) if kept else 0.0

    return {"AP": ap, "AP50": ap50, "mAP": mean(ap), "mAP50": mean(ap50)}
