"""KITTI 2-D AP of result files against label files, number for number with the official devkit.

GT_DIR holds KITTI label files (NNNNNN.txt, 15 fields a line), DET_DIR result files of the same
names (16 fields, score last). Prints AP per class and difficulty with the 40-point (R40, KITTI's
metric since 2019) and the 11-point (R11, the paper's) interpolation, mAP = mean of the nine APs,
and an error analysis (correct / localisation / class confusion / background / duplicate / missed,
counted on the top detections of each image). A label file without a result file counts as an image
without detections (the devkit would abort; a warning says so).

With --tracking, multi-object tracking instead: GT_DIR is KITTI tracking's label_02 folder (or its
parent), DET_DIR holds result files SEQ.txt of the same sequences (frame, track id, then a KITTI
result line); prints HOTA, MOTA, IDF1, ID switches and the counts per class (Car, Pedestrian)
through TrackEval (docs/tracking.md).

Examples:
    squeezedet evaluate --labels data/kitti/training/label_2 --detections runs/val/data \\
        --json ap.json --plots runs/val/plots
    squeezedet evaluate --tracking --labels data/kitti_tracking/training/label_02 \\
        --detections runs/track/kitti_tracking
"""

from __future__ import annotations

import argparse
import sys

from squeezedet.errors import SqueezeDetError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``squeezedet evaluate``."""
    parser.add_argument("--labels", required=True, metavar="GT_DIR", help="folder of label files")
    parser.add_argument(
        "--detections", required=True, metavar="DET_DIR", help="folder of result files"
    )
    parser.add_argument(
        "--json", metavar="OUT.json", help="write the results as JSON ('-' for stdout)"
    )
    parser.add_argument("--plots", metavar="DIR", help="write precision-recall curves (PNG) here")
    parser.add_argument(
        "--classes", default=None,
        help="comma-separated classes to evaluate (default: Car,Pedestrian,Cyclist; "
             "with --tracking: Car,Pedestrian)",
    )
    parser.add_argument(
        "--tracking", action="store_true",
        help="evaluate KITTI tracking results (SEQ.txt files): HOTA, MOTA, IDF1, ID switches "
             "(needs TrackEval: pip install --no-deps trackeval)",
    )
    parser.add_argument(
        "--devkit", choices=("2017", "2013"), default="2017",
        help="rules of the devkit release to reproduce (default: 2017, the benchmark's)",
    )
    parser.add_argument(
        "--split", metavar="FILE",
        help="evaluate only the image ids listed in FILE (e.g. ImageSets/val.txt)",
    )
    parser.add_argument(
        "--coco", action="store_true",
        help="also report COCO-style AP@[.5:.95] and AP@.5 (needs pycocotools)",
    )
    parser.add_argument(
        "--no-errors", action="store_true", help="skip the error analysis"
    )


def _fmt(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.2f}"


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table (to stderr when the JSON goes to stdout), write JSON and plots."""
    from pathlib import Path

    from squeezedet.errors import check_output_dir, check_output_file
    from squeezedet.eval.error_analysis import format_errors
    from squeezedet.eval.kitti import evaluate_dirs, write_json

    if args.json and args.json != "-":
        check_output_file(args.json, "--json")
    if args.plots:
        check_output_dir(args.plots, "--plots")
    if args.tracking:
        return _run_tracking(args)
    classes = [c.strip() for c in (args.classes or "Car,Pedestrian,Cyclist").split(",") if c.strip()]
    if not classes:
        raise SqueezeDetError("--classes is empty; give e.g. --classes Car,Pedestrian,Cyclist")
    image_ids = None
    if args.split:
        split = Path(args.split)
        if not split.is_file():
            raise SqueezeDetError(f"{split}: split file not found")
        image_ids = [line.strip() for line in split.read_text().splitlines() if line.strip()]
    coco_missing = False
    if args.coco:
        try:
            import pycocotools  # noqa: F401
        except ImportError:
            coco_missing = True
    result = evaluate_dirs(
        args.labels,
        args.detections,
        classes,
        devkit=args.devkit,
        error_analysis=not args.no_errors,
        coco=args.coco and not coco_missing,
        image_ids=image_ids,
    )
    if coco_missing:
        result.warnings.append(
            "--coco skipped: pycocotools is not installed (pip install 'squeezedet[coco]')"
        )
    out = sys.stderr if args.json == "-" else sys.stdout
    print(result.format_table(), file=out)
    if result.errors is not None:
        print(file=out)
        print(format_errors(result.errors), file=out)
    if result.coco is not None:
        print(file=out)
        print("COCO-style AP in percent (pycocotools)", file=out)
        for cls in result.classes:
            ap, ap50 = result.coco["AP"][cls], result.coco["AP50"][cls]
            print(f"  {cls:<12} AP@[.5:.95] {_fmt(ap)}   AP@.5 {_fmt(ap50)}", file=out)
        print(f"  {'mean':<12} AP@[.5:.95] {result.coco['mAP']:6.2f}   "
              f"AP@.5 {result.coco['mAP50']:6.2f}", file=out)
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    if args.plots:
        from squeezedet.eval.plots import plot_pr_curves

        paths = plot_pr_curves(result, args.plots)
        print(f"wrote {len(paths)} precision-recall plots to {args.plots}", file=out)
    if args.json:
        write_json(result, args.json)
        if args.json != "-":
            print(f"wrote {args.json}", file=out)
    return 0


def _run_tracking(args: argparse.Namespace) -> int:
    """``evaluate --tracking``: TrackEval's metrics of KITTI tracking result files."""
    import json

    from squeezedet.eval.tracking import evaluate_tracking_dirs

    if args.plots or args.split or args.coco or args.devkit != "2017":
        raise SqueezeDetError("--plots, --split, --coco and --devkit are for detection; "
                              "--tracking takes --labels, --detections, --classes and --json")
    classes = [c.strip() for c in (args.classes or "Car,Pedestrian").split(",") if c.strip()]
    if not classes:
        raise SqueezeDetError("--classes is empty; give e.g. --classes Car,Pedestrian")
    result = evaluate_tracking_dirs(args.labels, args.detections, classes)
    out = sys.stderr if args.json == "-" else sys.stdout
    print(result.format_table(), file=out)
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    if args.json:
        text = json.dumps(result.to_dict(), indent=2)
        if args.json == "-":
            print(text)
        else:
            from pathlib import Path

            Path(args.json).write_text(text + "\n")
            print(f"wrote {args.json}", file=out)
    return 0
