"""Anchor shapes for a data set by k-means over its training boxes (distance 1 - IoU).

The boxes are measured as the network sees them: scaled from the image (or, with --tile, the
tile) to --input-size. Prints the k shapes (w, h in input pixels, by area) and the mean IoU of each
training box with its best-fitting anchor, for the new shapes and for the model's default shapes
at that input size; writes the shapes as YAML for `squeezedet train --anchors FILE`.

Example:
  squeezedet anchors --data data/voc --input-size 512x512 --k 9 --out runs/anchors.yaml
  squeezedet train --data data/voc --input-size 512x512 --anchors runs/anchors.yaml --out runs/voc
"""

from __future__ import annotations

import argparse

from squeezedet.errors import SqueezeDetError, check_output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``squeezedet anchors``."""
    parser.add_argument("--data", required=True, metavar="ROOT", help="data set folder")
    parser.add_argument("--format", dest="data_format", default="auto",
                        help="auto (default), kitti, coco, voc, yolo")
    parser.add_argument("--classes", help="comma-separated classes to use (default: all)")
    parser.add_argument("--split", default="train", help="split whose boxes to use (train)")
    parser.add_argument("--k", type=int, default=9, help="number of anchor shapes (default 9)")
    parser.add_argument("--input-size", metavar="WxH",
                        help="network input size (default: the model's, 1248x384)")
    parser.add_argument("--model", default="squeezedet", help="model whose defaults to compare")
    parser.add_argument("--tile", metavar="WxH", help="measure boxes in WxH tiles (as --tile of "
                        "train)")
    parser.add_argument("--overlap", type=float, default=0.2, help="tile overlap (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    parser.add_argument("--out", default="anchors.yaml", metavar="FILE.yaml",
                        help="where to write the shapes (default anchors.yaml)")


def run(args: argparse.Namespace) -> int:
    """Compute, print and write the anchor shapes."""
    from squeezedet.config import parse_size
    from squeezedet.data.box_statistics import training_box_sizes
    from squeezedet.models import model_info
    from squeezedet.ops.anchors import scale_anchor_shapes, write_anchor_shapes
    from squeezedet.ops.kmeans import kmeans_anchors, mean_best_iou

    check_output_file(args.out, "--out")
    if args.k < 1:
        raise SqueezeDetError(f"--k must be at least 1 (got {args.k})")
    if not 0 <= args.overlap < 1:
        raise SqueezeDetError(f"--overlap must be in [0, 1) (got {args.overlap})")
    info = model_info(args.model)
    input_size = (parse_size(args.input_size, "--input-size") if args.input_size
                  else (int(info.default_input_size[0]), int(info.default_input_size[1])))
    tile = parse_size(args.tile, "--tile") if args.tile else None
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    wh = training_box_sizes(args.data, input_size, data_format=args.data_format, classes=classes,
                            split=args.split, tile=tile, overlap=args.overlap)
    shapes, new_iou = kmeans_anchors(wh, args.k, seed=args.seed)
    default = scale_anchor_shapes(info.default_anchor_shapes, info.default_input_size, input_size)
    old_iou = mean_best_iou(wh, default)
    print(f"{len(wh)} training boxes, input size {input_size[0]}x{input_size[1]}"
          + (f", tiles {tile[0]}x{tile[1]} (overlap {args.overlap})" if tile else ""))
    print(f"{'anchor':>6} {'w':>8} {'h':>8}")
    for k, (w, h) in enumerate(shapes):
        print(f"{k:>6} {w:8.1f} {h:8.1f}")
    print(f"mean IoU of each box with its best anchor: {new_iou:.3f} with these {args.k} shapes, "
          f"{old_iou:.3f} with the default {len(default)} shapes of {args.model}")
    write_anchor_shapes(args.out, shapes.tolist(), input_size)
    inline = "[" + ",".join(f"[{w:.1f},{h:.1f}]" for w, h in shapes) + "]"
    print(f"wrote {args.out}; train with --anchors {args.out} --input-size "
          f"{input_size[0]}x{input_size[1]} (or --anchors '{inline}')")
    return 0
