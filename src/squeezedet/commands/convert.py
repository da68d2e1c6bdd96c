"""Convert a data set between the KITTI, COCO, Pascal VOC and YOLO formats.

The source format is detected from the folder unless --from names it. Images are copied (to PNG
where the target format needs it); the train/val split of the source (its own, or the
deterministic one) is written out explicitly. --classes selects and orders the classes (default:
all classes of the data; for KITTI every type but DontCare). "Difficult"/crowd objects stay
ignored where the target has a flag for it (VOC difficult, COCO iscrowd, KITTI occluded=3) and are
dropped for YOLO.

Examples:
  squeezedet convert --from voc --to kitti data/voc data/voc_kitti
  squeezedet convert --to yolo --classes car,person data/coco data/coco_yolo
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``squeezedet convert``."""
    parser.add_argument("source", metavar="SRC", help="data set folder to read")
    parser.add_argument("dest", metavar="DST", help="new folder to write (must be empty or new)")
    parser.add_argument("--from", dest="src_format", default="auto",
                        help="auto (default), kitti, coco, voc, yolo")
    parser.add_argument("--to", dest="dst_format", required=True,
                        choices=("kitti", "coco", "voc", "yolo"), help="format to write")
    parser.add_argument("--classes", help="comma-separated classes to keep, in this order")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out malformed samples instead of stopping (and report them)")


def run(args: argparse.Namespace) -> int:
    """Read, write, print a summary."""
    from squeezedet.data.formats import load_source, write_source
    from squeezedet.errors import check_output_dir

    check_output_dir(args.dest, "DST")
    source = load_source(args.source, args.src_format, args.skip_bad)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    summary = write_source(source, args.dst_format, args.dest, classes)
    images = ", ".join(f"{n} {k}" for k, n in summary["images"].items())
    print(f"converted {source.format} -> {summary['format']}: {images} images, "
          f"{summary['objects']} objects of {len(summary['classes'])} classes "
          f"({', '.join(summary['classes'])}) into {args.dest}")
    print(f"split: {source.split_rule}")
    if summary["format"] == "kitti":
        print(f"train on it with --classes {','.join(summary['classes'])} (for KITTI data, "
              "training defaults to Car, Pedestrian, Cyclist)")
    if summary["dropped_ignored"]:
        print(f"note: {summary['dropped_ignored']} difficult/crowd objects were dropped "
              f"({summary['format']} cannot mark objects to ignore)")
    if source.skipped:
        print(f"skipped {len(source.skipped)} bad samples, e.g. {source.skipped[0]}")
    return 0
