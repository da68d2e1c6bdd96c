"""Write a deterministic train/val split of a KITTI-layout data set.

Every image of ROOT/training/image_2 that has a label file in ROOT/training/label_2 is assigned to
ROOT/ImageSets/train.txt or ROOT/ImageSets/val.txt (one id per line, sorted). The assignment
depends only on the ids, --val-fraction and --seed, so the same command always gives the same
split on any machine. Existing split files are kept unless --overwrite is given.

Example:
    squeezedet split data/kitti --val-fraction 0.5 --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``squeezedet split``."""
    parser.add_argument("root", type=Path, help="data set folder (holds training/image_2, label_2)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.5,
        help="fraction of the images for validation (default: 0.5, the paper's half)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing ImageSets/train.txt and val.txt"
    )


def run(args: argparse.Namespace) -> int:
    """Write the split and print a one-line summary."""
    from squeezedet.data.kitti import write_split

    train_ids, val_ids, orphans = write_split(
        args.root, val_fraction=args.val_fraction, seed=args.seed, overwrite=args.overwrite
    )
    sets = Path(args.root) / "ImageSets"
    print(
        f"wrote {len(train_ids)} train and {len(val_ids)} val ids to {sets / 'train.txt'} and "
        f"{sets / 'val.txt'} (val fraction {args.val_fraction}, seed {args.seed})"
    )
    if orphans:
        shown = ", ".join(orphans[:5]) + (", ..." if len(orphans) > 5 else "")
        print(f"note: {len(orphans)} label files have no image and were left out: {shown}")
    return 0
