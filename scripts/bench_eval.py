"""Time the KITTI evaluation on a KITTI-val-sized synthetic set.

Generates ground truth and detections for 3,769 images (about 10 objects and 50 detections per
image: jittered copies of the objects, some with the wrong class, and background boxes), then times
:func:`squeezedet.eval.evaluate_kitti` (AP for 3 classes x 3 difficulties, R40 and R11, and the
error analysis). With ``--files`` it also writes the set as KITTI files and times
:func:`squeezedet.eval.evaluate_dirs` (reading included).

Usage:
    python scripts/bench_eval.py [--images 3769] [--objects 10] [--detections 50] [--files]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from squeezedet.data.kitti_format import KittiObject, write_kitti_file
from squeezedet.eval import evaluate_dirs, evaluate_kitti

GT_TYPES = ["Car", "Car", "Car", "Car", "Van", "Pedestrian", "Pedestrian", "Person_sitting",
            "Cyclist", "Truck", "DontCare"]
DET_TYPES = ["Car", "Pedestrian", "Cyclist"]


def make_image(
    rng: np.random.Generator, n_obj: int, n_det: int
) -> tuple[list[KittiObject], list[KittiObject]]:
    """Ground truth (``n_obj`` boxes) and detections (``n_det`` boxes) of one 1242x375 image."""
    gt = []
    for _ in range(n_obj):
        t = GT_TYPES[rng.integers(len(GT_TYPES))]
        h = float(rng.uniform(15, 200))
        w = h * float(rng.uniform(0.4, 2.0))
        x1 = float(rng.uniform(0, 1242 - w))
        y1 = float(rng.uniform(0, 375 - min(h, 370)))
        gt.append(
            KittiObject(
                type=t,
                box=(round(x1, 2), round(y1, 2), round(x1 + w, 2), round(min(y1 + h, 375.0), 2)),
                truncated=round(float(rng.choice([0.0, 0.0, 0.1, 0.2, 0.4, 0.8])), 2),
                occluded=int(rng.integers(0, 4)),
            )
        )
    dets: list[KittiObject] = []
    objects = [g for g in gt if g.type != "DontCare"]
    while len(dets) < n_det:
        if objects and rng.random() < 0.6:
            g = objects[rng.integers(len(objects))]
            x1, y1, x2, y2 = g.box
            w, h = x2 - x1, y2 - y1
            j = rng.normal(0, 0.08, 4) * np.array([w, h, w, h])
            box = (x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3])
            t = g.type if g.type in DET_TYPES and rng.random() < 0.85 else DET_TYPES[
                rng.integers(3)]
        else:
            h = float(rng.uniform(10, 200))
            w = h * float(rng.uniform(0.4, 2.0))
            x1 = float(rng.uniform(0, 1242 - w))
            y1 = float(rng.uniform(0, 375 - min(h, 370)))
            box = (x1, y1, x1 + w, y1 + h)
            t = DET_TYPES[rng.integers(3)]
        x1, y1, x2, y2 = (round(float(v), 2) for v in box)
        if x2 <= x1 or y2 <= y1:
            continue
        dets.append(KittiObject(type=t, box=(x1, y1, x2, y2), score=round(float(rng.random()), 6)))
    return gt, dets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3769)
    parser.add_argument("--objects", type=int, default=10, help="mean objects per image")
    parser.add_argument("--detections", type=int, default=50, help="detections per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--files", action="store_true", help="also time reading KITTI files")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    ground_truth: dict[str, list[KittiObject]] = {}
    detections: dict[str, list[KittiObject]] = {}
    for i in range(args.images):
        n_obj = int(rng.poisson(args.objects))
        gt, det = make_image(rng, n_obj, args.detections)
        ground_truth[f"{i:06d}"], detections[f"{i:06d}"] = gt, det
    n_gt = sum(len(v) for v in ground_truth.values())
    n_det = sum(len(v) for v in detections.values())
    print(f"{args.images} images, {n_gt} ground-truth boxes, {n_det} detections")

    t0 = time.perf_counter()
    evaluate_kitti(ground_truth, detections, error_analysis=False)
    t1 = time.perf_counter()
    result = evaluate_kitti(ground_truth, detections)
    t2 = time.perf_counter()
    print(result.format_table())
    print(f"evaluate_kitti (AP only): {t1 - t0:.2f} s")
    print(f"evaluate_kitti (AP + error analysis): {t2 - t1:.2f} s")

    if args.files:
        with tempfile.TemporaryDirectory() as tmp:
            gt_dir, det_dir = Path(tmp, "label_2"), Path(tmp, "results")
            gt_dir.mkdir()
            det_dir.mkdir()
            for k in ground_truth:
                write_kitti_file(gt_dir / f"{k}.txt", ground_truth[k])
                write_kitti_file(det_dir / f"{k}.txt", detections[k])
            t3 = time.perf_counter()
            evaluate_dirs(gt_dir, det_dir)
            t4 = time.perf_counter()
        print(f"evaluate_dirs (reading files + AP + error analysis): {t4 - t3:.2f} s")


if __name__ == "__main__":
    main()
