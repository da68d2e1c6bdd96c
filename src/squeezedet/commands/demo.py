"""The whole pipeline in one command, on a CPU, with no data to download.

1. generates a synthetic KITTI-layout driving-scene data set (runs/demo/data),
2. trains SqueezeDet on it from scratch for what is left of the time budget (runs/demo/train),
3. evaluates it with the KITTI metric (AP_R40 and AP_R11) on its validation split,
4. draws detections on validation images and on any real photos given with --images,
and prints where everything is:

  runs/demo/metrics.json          AP table, as `squeezedet evaluate --json` writes it
  runs/demo/ap_table.txt          the same as text, with the error analysis
  runs/demo/pr_curves/            precision-recall curves per class and difficulty
  runs/demo/training_curves.png   loss terms and validation AP during training
  runs/demo/detections/           drawn detections (val_*.png, photos/*)
  runs/demo/train/best.pt         the trained model (use it with `squeezedet predict`)

Running it again reuses the data and a finished training run (an interrupted one is resumed);
--retrain trains anew (the previous run folder is kept, renamed).

The recipe adapts to the machine's speed: a few training steps are timed first (on 12 scenes
drawn for the purpose); where the default recipe would fit fewer than 3,600 optimiser steps into
the time budget, batch 6 is tried, and on a machine too slow for that as well (a CPU without
AVX-512/bf16: about 750 steps instead of 4,200-5,400) the demo draws its scenes at 432x128 with
twice the objects in each and trains there at batch 4 (runs/demo/data-432x128-x2).
Such a run is scored on those scenes, so its AP is not comparable with a default run's. The
choice is printed; runs/demo/recipe.json records the scenes and train/config.yaml the settings, so
a resumed run keeps both; --fixed-recipe (or setting input_size or batch_size) keeps the default.

Demo recipe (differs from the paper's KITTI recipe, which needs ImageNet weights and a GPU):
624x192 input, anchor shapes by k-means on the synthetic boxes, AdamW lr 1e-3 with 100 warm-up
steps and a cosine decay over the time budget, batch 8, dropout 0.2, batch norm after each Fire
module's squeeze convolution while training (squeeze_bn; folded into the convolution in the saved
model, which is SqueezeDet's architecture), an exponential moving average of the weights (decay
0.995) for evaluation, decoded images cached in memory, bf16 autocast on CPUs with native bf16.
Override any of it with key=value, e.g. `lr=0.001` or `squeeze_bn=false`.

Time: the whole demo has --total-minutes (default 18.5). The scenes are drawn in one process
per core; training gets what is left after timing the machine and drawing the scenes, less a
reserve for the final validation and drawings (20 s plus half a training step's time per batch
of validation images: a forward pass costs about a third of a step). A faster machine therefore
trains for longer rather than finishing early (about 17.5 minutes of training here), a slower one
for less, and the total stays within the budget either way. --minutes M trains for M minutes
instead.

Examples:
    squeezedet demo
    squeezedet demo --images photos/*.jpg --total-minutes 10
    squeezedet demo --minutes 3 --out runs/quick lr=0.005
"""

from __future__ import annotations

import argparse
import dataclasses


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from squeezedet.demo_recipe import TOTAL_MINUTES

    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--images", nargs="*", default=[], metavar="PATH",
                        help="real photos to draw detections on: files, folders or globs")
    parser.add_argument("--total-minutes", type=float, default=TOTAL_MINUTES, metavar="M",
                        help="the whole demo's time budget in minutes, timing the machine, "
                             "drawing the scenes and the final evaluation included: it trains "
                             f"for what is left (default {TOTAL_MINUTES:g}: a first `make demo`, "
                             "which also installs the package, ends within 20)")
    parser.add_argument("--minutes", type=float, default=None, metavar="M",
                        help="train for M minutes instead, whatever the whole takes (the "
                             "machine's timing comes out of them)")
    parser.add_argument("--num-images", type=int, default=1600,
                        help="synthetic images to generate (default 1600, 25%% for validation)")
    parser.add_argument("--size", default="624x192", metavar="WxH",
                        help="synthetic image size and network input size (default 624x192)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed (default 0)")
    parser.add_argument("--retrain", action="store_true", help="train again even if a run exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--fixed-recipe", action="store_true",
                        help="train with the default recipe (624x192, batch 8) even on a machine "
                             "too slow for it to fit 3,600 steps into the time budget")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="training settings to change (see `squeezedet train --list-settings`)")


def run(args: argparse.Namespace) -> int:
    from squeezedet.demo import DemoOptions, run_demo

    fields = {f.name for f in dataclasses.fields(DemoOptions)}
    run_demo(DemoOptions(**{k: v for k, v in vars(args).items() if k in fields}))
    return 0
