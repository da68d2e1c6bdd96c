"""Train SqueezeDet on a KITTI-layout data set (or COCO / VOC / YOLO, see --format).

Before training, train looks at the data and chooses a recipe, said in one line (--recipe):
for a small data set trained from scratch (at most 1,000 images or tiles) the small-data recipe
(squeeze batch norm, AdamW, warm-up and cosine fitted to the run's length, a moving average of
the weights, zoom, colour jitter and mosaic, batch and lr fitted to the data, 10 minutes unless
told otherwise); else the paper's, the original KITTI recipe: SGD, lr 0.01 halved every 10,000
steps, momentum 0.9, weight decay 1e-4 on kernels, per-tensor gradient clipping at 1.0, batch 20.
Settings given on the command line or in --config keep their values. Any setting can be changed
with --config FILE.yaml and/or key=value pairs after the options, e.g.

  squeezedet train --data data/kitti --out runs/kitti
  squeezedet train --data photos --out runs/trees --tile 400x400 --minutes 10 augment=+rot90,vflip
  squeezedet train --data data/synth --out runs/small --input-size 624x192 --steps 2000 lr=0.005
  squeezedet train --resume runs/small --steps 4000      # continue (here: to 4000 steps)
  squeezedet train --data data/kitti --out runs/ft --weights kitti.pt --steps 2000   # fine-tune
  squeezedet train --data data/kitti --check-data        # only check the data set, in seconds

Training from scratch (no ImageNet weights): `squeeze_bn=true` puts a batch norm after each
Fire module's squeeze convolution while training and folds it into the convolution in every saved
model, which stays SqueezeDet's architecture; it learns far more per step for ~3 % more time a
step (the demo's recipe uses it).

--weights CKPT starts from a checkpoint's weights (ours, or one from `squeezedet import-weights`)
and takes its model settings (model, input size, classes, anchors, normalisation, padding) unless
given again here.

Before the first step the whole data set (both splits) is checked: every label line parsed, every
image header read, every box fitted to its image. Bad samples stop the run, listed together, or
are left out with --skip-bad; boxes left out (outside their image, zero area, other classes) are
counted in one summary line and per file in RUN_DIR/data_report.json.

The run folder gets config.yaml, last.pt/best.pt (atomic), metrics.csv, val.csv, TensorBoard
logs in tb/, training_curves.png and the latest validation's metrics.json and result files.

SIGTERM, SIGINT (Ctrl-C) or SIGUSR1 finish the current step, save last.pt of that step and exit
with status 75 ("stopped, resumable"); a second signal exits at once (130). Errors exit with 2
(bad input) or 1. `--resume RUN_DIR` also starts a run that stopped before its first checkpoint
(config.yaml but no last.pt) from its saved configuration, so a scheduler can always rerun the
same `squeezedet train --resume RUN_DIR`.

Several processes (GPUs or machines): the same command under torchrun, e.g.
  torchrun --nproc-per-node 4 -m squeezedet.cli train --data data/kitti --out runs/kitti
--batch-size is then per process (a step takes batch × processes images; lr_scaling=linear
scales lr with them) and only rank 0 writes the run folder.

Settings: every field of squeezedet.config.TrainConfig (see `squeezedet train --list-settings`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from squeezedet import distributed
from squeezedet.checkpoint import fine_tuning_config
from squeezedet.config import TrainConfig, given_settings, load_config
from squeezedet.errors import SqueezeDetError, check_output_dir
from squeezedet.preemption import EXIT_RESUMABLE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data set root (KITTI layout: training/image_2, label_2)")
    parser.add_argument("--out", help="run folder (created; never deleted)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument("--model", help="model name (default squeezedet)")
    parser.add_argument("--input-size", metavar="WxH", help="network input size")
    parser.add_argument("--batch-size", type=int, help="images per step (default 20)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, help="training steps")
    group.add_argument("--epochs", type=int, help="training epochs (instead of --steps)")
    parser.add_argument("--minutes", type=float, metavar="M",
                        help="train for M minutes (time_limit_min), the schedule fitted to the "
                             "steps that fit")
    parser.add_argument("--recipe", choices=("auto", "paper", "small"),
                        help="auto (default): small for a small data set trained from scratch, "
                             "else paper (the original's)")
    parser.add_argument("--augment", metavar="NAMES",
                        help="extra augmentation: zoom, vflip, rot90, jitter, mosaic (comma-"
                             "separated; +NAMES adds to the recipe's; none)")
    parser.add_argument("--weights", metavar="CKPT",
                        help="start from this checkpoint's weights and model settings "
                             "(fine-tuning)")
    parser.add_argument("--config", metavar="FILE.yaml", help="settings file")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip malformed samples instead of stopping (and report them)")
    parser.add_argument("--format", dest="data_format",
                        help="auto (default: detected from the folder), kitti, coco, voc, yolo")
    parser.add_argument("--classes", help="comma-separated class names to train on")
    parser.add_argument("--anchors", metavar="FILE_OR_LIST",
                        help="anchor shapes: a file written by `squeezedet anchors` or "
                             "'[[w,h],...]'")
    parser.add_argument("--tile", metavar="WxH",
                        help="train on overlapping WxH windows of large images (aerial, "
                             "microscopy)")
    parser.add_argument("--crop", metavar="WxH",
                        help="train on random WxH windows of the images resized to the input "
                             "size: objects keep their size, a step costs fewer pixels "
                             "(validation and the model stay at the input size)")
    parser.add_argument("--overlap", type=float, metavar="P",
                        help="fraction of a tile shared with its neighbour (default 0.2)")
    parser.add_argument("--list-settings", action="store_true", help="print every setting and exit")
    parser.add_argument("--check-data", action="store_true",
                        help="check the data set (both splits) as training does before its first "
                             "step, print what was found and exit; nothing is written")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="any setting")


def _cli_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for key in ("model", "input_size", "batch_size", "steps", "epochs", "data_format", "classes",
                "tile", "crop", "recipe", "augment"):
        value = getattr(args, key, None)
        if value is not None:
            out.append(f"{key}={value}")
    if args.anchors:
        from squeezedet.ops.anchors import read_anchor_shapes

        shapes = read_anchor_shapes(args.anchors)
        out.append(f"anchors={[list(s) for s in shapes]}")
    if getattr(args, "minutes", None) is not None:
        out.append(f"time_limit_min={args.minutes}")
    if args.overlap is not None:
        out.append(f"tile_overlap={args.overlap}")
    if args.skip_bad:
        out.append("skip_bad=true")
    return out + list(args.overrides)


def run(args: argparse.Namespace) -> int:
    from squeezedet.train import TrainingStopped, resume, train

    if args.list_settings:
        for f in dataclasses.fields(TrainConfig):
            print(f"{f.name} = {f.default!r}")
        return 0
    if args.check_data:
        from squeezedet.data.check import open_checked

        if not args.data:
            raise SqueezeDetError("--check-data needs --data ROOT")
        cfg = load_config(args.config, _cli_overrides(args))
        print(open_checked(cfg, args.data)[2].summary_line())
        return 0
    try:
        if args.resume:
            run_dir = Path(args.resume)
            result = resume(run_dir, data_root=args.data, config=args.config,
                            overrides=_cli_overrides(args), progress=not args.quiet)
        else:
            if not args.data or not args.out:
                raise SqueezeDetError("--data and --out are needed (or --resume RUN_DIR)")
            run_dir = check_output_dir(args.out, "--out")
            start = fine_tuning_config(args.weights) if args.weights else None
            cfg = load_config(args.config, _cli_overrides(args), base=start)
            given = given_settings(args.config, _cli_overrides(args))  # kept by the recipe
            result = train(cfg, args.data, run_dir, progress=not args.quiet, given=given)
    except TrainingStopped as stopped:
        if distributed.is_main():
            print(f"squeezedet train: {stopped}", file=sys.stderr, flush=True)
        return EXIT_RESUMABLE
    if not distributed.is_main():
        return 0
    print(f"trained {result.step} steps; run folder {result.run_dir}")
    m = result.last_metrics
    if m is not None and "mAP_R40" in m:
        print(f"validation mAP_R40 {m['mAP_R40']:.2f} %, "
              f"mAP_R11 {m['mAP_R11']:.2f} % (details in {run_dir}/metrics.json)")
    elif m is not None:
        print(f"validation mAP@[.5:.95] {m['mAP']:.2f} %, mAP@0.5 {m['mAP50']:.2f} % "
              f"(details in {run_dir}/metrics.json)")
    return 0
