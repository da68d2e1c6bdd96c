"""HOTA, MOTA, IDF1 and ID switches on synthetic sequences (docs/tracking.md's results table).

Draws synthetic sequences (``squeezedet synth --sequence``) unless they exist, then scores

- the tracker fed the ground-truth boxes without their ids (what the tracker alone loses);
- the same boxes degraded like a detector's: each box's corners moved by 5 % of its size (normal
  noise), 10 % of the boxes missed, 20 % scored low (0.15-0.45, the second pass's range), with
  and without the second pass;
- with ``--weights``: ``squeezedet track`` with that model (e.g. the demo's ``train/best.pt``), at
  the default thresholds and at ``--high/--new-track`` lowered for a weakly trained model.

Usage:
    python scripts/tracking_synth.py --out runs/tracking_synth [--weights runs/demo/train/best.pt]
        [--sequences 4] [--frames 100] [--size 624x192] [--seed 7]

Needs ``squeezedet[tracking]`` and TrackEval (``pip install --no-deps trackeval``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from squeezedet.config import parse_size
from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.kitti_tracking import TrackedObject, read_tracking_file
from squeezedet.data.synth.sequence import FPS
from squeezedet.data.synth.sequence_files import generate_sequences, sequence_paths
from squeezedet.eval.tracking import evaluate_tracking, evaluate_tracking_dirs
from squeezedet.tracking import Tracker, TrackerConfig

NAMES = ("Car", "Pedestrian", "Cyclist")


def degraded_run(gt: dict[str, list[TrackedObject]], jitter: float, miss: float, low: float,
                 config: TrackerConfig | None, seed: int = 0) -> dict[str, list[TrackedObject]]:
    """The tracker's output per sequence when fed the ground truth degraded as described above."""
    rng = np.random.default_rng(seed)
    results = {}
    for seq, rows_all in gt.items():
        tracker, out = Tracker(config, frame_rate=FPS), []
        for f in range(max(r.frame for r in rows_all) + 1):
            rows = [r for r in rows_all if r.frame == f and r.track_id >= 0 and rng.random() >= miss]
            boxes = np.array([r.object.box for r in rows], dtype=np.float64).reshape(-1, 4)
            size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
            boxes = boxes + rng.normal(0.0, jitter, boxes.shape) * size
            scores = np.where(rng.random(len(rows)) < low, rng.uniform(0.15, 0.45, len(rows)),
                              rng.uniform(0.6, 0.95, len(rows)))
            labels = np.array([NAMES.index(r.object.type) for r in rows], dtype=np.int64)
            t = tracker.update(boxes, scores, labels)
            out += [TrackedObject(f, int(i), KittiObject(NAMES[int(c)], tuple(map(float, b)),
                                                         score=float(s)))
                    for i, b, c, s in zip(t.track_ids, t.boxes, t.labels, t.scores, strict=True)]
        results[seq] = out
    return results


def model_run(weights: Path, root: Path, out: Path, n: int, config: TrackerConfig) -> Path:
    """``squeezedet track`` of every sequence with ``weights``; returns the results folder."""
    from squeezedet.inference.track import TrackOptions, track

    for i in range(n):
        track(weights, str(sequence_paths(root, i)[0]), out,
              TrackOptions(tracker=config, no_draw=True, no_progress=True))
    return out / "kitti_tracking"


def row(name: str, metrics: dict[str, dict[str, float]]) -> list[str]:
    return [f"| {name} | {cls} | {100 * m['HOTA']:.1f} | {100 * m['MOTA']:.1f} | "
            f"{100 * m['IDF1']:.1f} | {int(m['IDSW'])} |"
            for cls, m in metrics.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="624x192", help="frame size WxH (default: 624x192, the "
                        "input size of the full demo model)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    root = args.out / "sequences"
    generate_sequences(root, args.sequences, args.frames, args.seed, parse_size(args.size, "--size"),
                       progress=False)
    gt = {f"{i:04d}": read_tracking_file(sequence_paths(root, i)[1]) for i in range(args.sequences)}
    lines = ["| input | class | HOTA | MOTA | IDF1 | ID switches |", "|---|---|---|---|---|---|"]
    lines += row("ground-truth boxes", evaluate_tracking(gt, degraded_run(gt, 0, 0, 0, None)).metrics)
    lines += row("degraded ground truth", evaluate_tracking(
        gt, degraded_run(gt, 0.05, 0.10, 0.20, None)).metrics)
    lines += row("degraded, second pass off", evaluate_tracking(
        gt, degraded_run(gt, 0.05, 0.10, 0.20, TrackerConfig(low_threshold=0.5))).metrics)
    if args.weights is not None:
        for tag, config in (("default", TrackerConfig()),
                            ("high 0.3, new-track 0.35", TrackerConfig(high_threshold=0.3,
                                                                       new_track_threshold=0.35))):
            folder = model_run(args.weights, root, args.out / tag.replace(" ", "_").replace(",", ""),
                               args.sequences, config)
            lines += row(f"model, {tag}", evaluate_tracking_dirs(root / "training", folder).metrics)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
