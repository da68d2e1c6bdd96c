"""Print a model's parameters, size in MB, FLOPs of one forward pass, grid and anchor count.

Examples:
  squeezedet info --model squeezedet
  squeezedet info --model squeezedet_plus --input-size 1242x375 --json
  squeezedet info --all     # the design-space table: sizes (fp32/int8/compressed), activation
                            # memory, GFLOPs, DRAM traffic and energy (estimates, labelled)
"""

from __future__ import annotations

import argparse
import json

from squeezedet.config import parse_size
from squeezedet.errors import SqueezeDetError
from squeezedet.models import create_model, list_models
from squeezedet.models.profile import profile_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="squeezedet", help=f"one of {', '.join(list_models())}")
    parser.add_argument("--input-size", metavar="WxH", help="network input size (default: the model's)")
    parser.add_argument("--num-classes", type=int, default=3, help="classes of the head (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--all", action="store_true",
                        help="the design-space table of all models at their default sizes")


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.input_size, "--input-size", minimum=16) if args.input_size else None
    if args.num_classes < 1:
        raise SqueezeDetError("--num-classes must be at least 1")
    if args.all:
        from squeezedet.design_space import design_space, format_table

        points = design_space(num_classes=args.num_classes)
        print(json.dumps([p.to_json() for p in points]) if args.json else format_table(points))
        return 0
    model = create_model(args.model, input_size=size, num_classes=args.num_classes)
    p = profile_model(model)
    if args.json:
        print(json.dumps(p.to_json()))
        return 0
    print(f"model        {p.name}")
    print(f"input        {p.input_size[0]}x{p.input_size[1]} (W x H)")
    print(f"parameters   {p.params:,} ({p.trainable_params:,} trainable)")
    print(f"size         {p.size_mb:.2f} MB (fp32, 2^20 bytes)")
    print(f"FLOPs        {p.gflops:.2f} G per image (multiply-add = 2)")
    print(f"grid         {p.grid[0]}x{p.grid[1]} (W x H)")
    print(f"anchors      {p.anchors:,} ({model.num_anchors} shapes per cell)")
    return 0
