"""Compress a trained checkpoint: magnitude pruning (with fine-tuning on the training data), weight
sharing by k-means (or uniform low-bit levels) and entropy coding, after Deep Compression.

The .sqz file loads wherever a .pt checkpoint does (predict, export, Detector, the Python API).

The default recipe is the one measured best on SqueezeDet (README, "Compression"): no pruning,
k-means weight sharing at mixed widths (--layer-bits auto: conv1 8 bits, ConvDet 6, the Fire
squeeze and expand1x1 layers 5, the 3x3 expand kernels --bits 4), then, with --data, 300 steps
of trained weight sharing on the training split: ~0.96 MB for SqueezeDet (7.9 MB of fp32
weights), mAP_R40 within 0.15 of the uncompressed demo model (measured: -0.13). SqueezeDet is already small:
pruning 40-50 % of its weights cost 4 points even after 1,000 fine-tuning steps.

Examples:
  squeezedet compress --weights runs/demo/train/best.pt --data runs/demo/data --evaluate \\
      --out runs/demo/model.sqz
  squeezedet compress --weights best.pt --out model.sqz            # no data: sharing only
  squeezedet compress --weights best.pt --sparsity 0.5 --bits 5 --layer-bits none \\
      --data DATA --steps 1000 --out model.sqz                       # Deep Compression's pruning
  squeezedet predict --weights runs/demo/model.sqz --source photos/ --out out/
"""

from __future__ import annotations

import argparse
import json

from squeezedet.errors import SqueezeDetError, check_output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint (.pt) to compress")
    parser.add_argument("--out", required=True, help="compressed checkpoint to write (.sqz)")
    parser.add_argument("--sparsity", type=float, default=0.0,
                        help="share of each kernel's weights pruned to zero (default 0: none)")
    parser.add_argument("--bits", type=int, default=4,
                        help="shared values per kernel: 2^bits (default 4: 16 values)")
    parser.add_argument("--layer-bits", default="auto", metavar="GLOB=BITS,...",
                        help="other widths for the tensors whose names match: 'auto' (default: "
                             "conv1 8, convdet 6, squeeze and expand1x1 5), 'none', or e.g. "
                             "'convdet.*=6,*.squeeze.*=5'")
    parser.add_argument("--quantizer", choices=("kmeans", "uniform"), default="kmeans",
                        help="k-means weight sharing (default) or evenly spaced levels")
    parser.add_argument("--data", metavar="ROOT",
                        help="the training data, to fine-tune while pruning (its training split)")
    parser.add_argument("--steps", type=int, default=None,
                        help="fine-tuning steps while pruning (default 1000 with --data and "
                             "--sparsity > 0, else 0)")
    parser.add_argument("--share-steps", type=int, default=None,
                        help="fine-tuning steps of the shared values (default 300 with --data, "
                             "else 0)")
    parser.add_argument("--lr", type=float, default=None,
                        help="fine-tuning learning rate (default: a hundredth of the "
                             "checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="fine-tuning batch (default: the checkpoint's)")
    parser.add_argument("--entropy", choices=("lzma", "zlib", "none"), default="lzma",
                        help="entropy coder (default lzma)")
    parser.add_argument("--evaluate", action="store_true",
                        help="also print the validation mAP of --data before and after")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from squeezedet.compress import (
        CompressSettings,
        compress_checkpoint,
        parse_layer_bits,
        validation_map,
    )

    check_output_file(args.out, "--out")
    steps = args.steps if args.steps is not None else (1000 if args.data and args.sparsity > 0
                                                       else 0)
    share_steps = (args.share_steps if args.share_steps is not None
                   else (300 if args.data and args.quantizer == "kmeans" else 0))
    if args.evaluate and not args.data:
        raise SqueezeDetError("--evaluate needs --data ROOT (its validation split)")
    settings = CompressSettings(sparsity=args.sparsity, bits=args.bits, quantizer=args.quantizer,
                                steps=steps, share_steps=share_steps, lr=args.lr,
                                batch_size=args.batch_size, entropy=args.entropy,
                                layer_bits=parse_layer_bits(args.layer_bits))
    result = compress_checkpoint(args.weights, args.out, settings, args.data,
                                 progress=not args.quiet)
    report = result.to_json()
    if args.evaluate:
        before = validation_map(args.weights, args.data)
        after = validation_map(result.path, args.data)
        report["map_r40"] = {"before": before[0], "after": after[0]}
        report["map_r11"] = {"before": before[1], "after": after[1]}
    if args.json:
        print(json.dumps(report))
        return 0
    src = f", {result.source_file_bytes / 2**20:.2f} MB file" if result.source_file_bytes else ""
    print(f"wrote {result.path}: {result.bytes / 2**20:.3f} MB ({result.bytes:,} bytes; "
          f"fp32 weights {result.fp32_bytes / 2**20:.2f} MB{src}; {result.ratio:.1f}x smaller)")
    widths = (", " + ", ".join(f"{g} {b}" for g, b in settings.layer_bits)
              if settings.layer_bits else "")
    print(f"  sparsity {result.sparsity:.3f}, {settings.bits}-bit {settings.quantizer}{widths}, "
          f"{steps} + {share_steps} fine-tuning steps; positions as {result.size.positions}: "
          f"{result.size.masks:,} B, indices {result.size.indices:,} B, "
          f"values {result.size.values:,} B, header {result.size.header:,} B")
    if args.evaluate:
        b, a = report["map_r40"]["before"], report["map_r40"]["after"]  # type: ignore[index]
        b11, a11 = report["map_r11"]["before"], report["map_r11"]["after"]  # type: ignore[index]
        print(f"  validation mAP_R40 {b:.2f} -> {a:.2f} ({a - b:+.2f}); "
              f"mAP_R11 {b11:.2f} -> {a11:.2f} ({a11 - b11:+.2f})")
    return 0
