"""KITTI AP of the low-precision inference paths against fp32, on a validation split.

Exports the checkpoint (int8 calibrated on the data set's training images, ``ImageSets/train.txt``
when present), runs every path over the validation images with the same pre- and post-processing
(training Resize; top-64 + per-class NMS 0.4, no score threshold) and scores them with the KITTI
evaluator (2017 devkit rules). Prints mAP (AP_R40 and the paper's AP_R11) per path and its
difference to fp32 PyTorch; the issue's target is |ΔmAP| ≤ 0.5 points.

Usage:
    .venv/bin/python scripts/lowp_accuracy.py --weights runs/demo/best.pt --data data/synth \
        [--split val] [--rows torch:fp32,torch:bf16,onnxruntime:int8,openvino:bf16,openvino:int8]
        [--max-images N] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from squeezedet.checkpoint import model_from_checkpoint
from squeezedet.data.dataset import collate
from squeezedet.data.kitti import KittiDataset
from squeezedet.deployment.export import export_model
from squeezedet.deployment.runners import OnnxRuntimeRunner, Runner, TorchRunner, load_runner
from squeezedet.eval import evaluate_kitti
from squeezedet.models.detector import split_head
from squeezedet.ops.anchors import make_anchors
from squeezedet.postprocess import PostProcess, detections_to_kitti, to_original_pixels

DEFAULT_ROWS = ("torch:fp32", "torch:bf16", "onnxruntime:fp32", "onnxruntime:int8",
                "openvino:fp32", "openvino:bf16", "openvino:int8")


def make_runner(backend: str, precision: str, weights: Path, work: Path, data: Path,
                calib_images: int, threads: int | None, accuracy_control: bool = False) -> Runner:
    """The runner of one row, exporting the model into ``work`` when the row needs a file;
    ``accuracy_control``: OpenVINO int8 with NNCF's accuracy control on ``data``."""
    if backend == "torch":
        return TorchRunner(weights, "cpu", precision=precision)
    fmt = "onnx" if backend == "onnxruntime" else "openvino"
    out = work / f"model-{precision}{'.onnx' if fmt == 'onnx' else '.xml'}"
    res = export_model(weights, fmt, out, precision=precision, calib_data=data,
                       calib_images=calib_images, threads=threads,
                       accuracy_data=data if accuracy_control else None)
    print(f"  {res.summary()}", flush=True)
    if backend == "onnxruntime":
        return OnnxRuntimeRunner(out, threads=threads)
    return load_runner(out, "openvino", threads=threads)


def evaluate_runner(runner: Runner, dataset: KittiDataset, indices: list[int],
                    batch: int = 4) -> Any:
    """KITTI evaluation of ``runner`` over the ``indices`` of ``dataset`` (eval transforms)."""
    from torch.utils.data import DataLoader, Subset

    meta = runner.meta
    size = (int(meta["input_size"][0]), int(meta["input_size"][1]))
    names = list(meta["class_names"])
    k, c = len(meta["anchor_shapes"]), len(names)
    post = PostProcess()
    anchors = None
    gt: dict[str, Any] = {}
    dets: dict[str, Any] = {}
    loader = DataLoader(Subset(dataset, indices), batch_size=batch, shuffle=False,
                        collate_fn=collate)
    position = {dataset.ids[i]: i for i in indices}
    for images, targets in loader:
        out = runner(images.float())
        if anchors is None:
            anchors = make_anchors((int(out.shape[-1]), int(out.shape[-2])), size,
                                   meta["anchor_shapes"])
        for target, det in zip(targets, post(split_head(out.float(), k, c), anchors, size),
                               strict=True):
            det = {**det, "boxes": to_original_pixels(det["boxes"], size, target["orig_size"])}
            image_id = target["image_id"]
            dets[image_id] = detections_to_kitti(det, names)
            gt[image_id] = dataset.ground_truth(position[image_id])
    return evaluate_kitti(gt, dets, classes=names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="KITTI-layout data root")
    parser.add_argument("--split", default="val")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS))
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_out", type=Path)
    parser.add_argument("--accuracy-control", action="store_true",
                        help="OpenVINO int8 exports keep mAP_R40 within 0.4 of fp32 on --data")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = model_from_checkpoint(args.weights)
    dataset = KittiDataset(args.data, args.split, model.class_names, model.input_size,
                           train=False)
    indices = list(range(len(dataset)))[: args.max_images]
    print(f"{len(indices)} images of {args.data} ({args.split}); classes {model.class_names}")
    rows = [r.partition(":")[::2] for r in args.rows.split(",") if r.strip()]
    if ("torch", "fp32") not in rows:
        rows.insert(0, ("torch", "fp32"))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="squeezedet-lowp-") as tmp:
        for backend, precision in rows:
            t = time.perf_counter()
            try:
                runner = make_runner(backend, precision, args.weights, Path(tmp), args.data,
                                     args.calib_images, args.threads, args.accuracy_control)
                res = evaluate_runner(runner, dataset, indices)
            except Exception as exc:  # noqa: BLE001 - report the row and go on
                print(f"{backend}:{precision}: failed: {exc}", file=sys.stderr)
                continue
            results.append({"backend": backend, "precision": precision,
                            "map_r40": res.map_r40, "map_r11": res.map_r11,
                            "ap_r40": res.ap_r40, "seconds": time.perf_counter() - t})
            print(f"{backend}:{precision}: mAP R40 {res.map_r40:.2f}  R11 {res.map_r11:.2f}",
                  flush=True)
    ref = next(r for r in results if (r["backend"], r["precision"]) == ("torch", "fp32"))
    print(f"\n{'path':<20}{'mAP R40':>9}{'Δ':>7}{'mAP R11':>9}{'Δ':>7}  within 0.5")
    for r in results:
        r["delta_r40"] = r["map_r40"] - ref["map_r40"]
        r["delta_r11"] = r["map_r11"] - ref["map_r11"]
        ok = abs(r["delta_r40"]) <= 0.5 and abs(r["delta_r11"]) <= 0.5
        print(f"{r['backend'] + ':' + r['precision']:<20}{r['map_r40']:>9.2f}"
              f"{r['delta_r40']:>+7.2f}{r['map_r11']:>9.2f}{r['delta_r11']:>+7.2f}  "
              f"{'yes' if ok else 'NO'}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"weights": str(args.weights), "data": str(args.data),
                                             "split": args.split, "images": len(indices),
                                             "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
