"""Write a synthetic KITTI-layout data set of procedurally drawn driving scenes.

Each image is a road in perspective with lanes, sidewalks, buildings, trees, poles, signs,
shadows and texture, and cars, pedestrians and cyclists of many sizes and colours that overlap
and are cut by the image border; labels carry truncation, occlusion, 3-D size, location and
heading, and DontCare boxes for far tiny objects. Written files:

  DIR/training/image_2/000000.png ...   DIR/training/label_2/000000.txt ...
  DIR/ImageSets/train.txt, val.txt      DIR/synth.json (the parameters)

The same seed gives byte-identical files; image i depends only on (seed, i). If DIR already
holds this exact data set nothing is done; a folder with other content is refused unless
--overwrite is given (which rewrites only the generator's own files).

With --sequence, moving scenes instead, in KITTI tracking's layout (docs/tracking.md): each
sequence is a street seen from a parked camera at 10 frames per second, with cars, pedestrians and
cyclists in continuous motion that enter, leave and hide each other; labels carry track ids.

  DIR/training/image_02/0000/000000.png ...   DIR/training/label_02/0000.txt ...
  DIR/synth_sequences.json (the parameters)

examples:
  squeezedet synth --out data/synth --images 1000 --seed 0 --size 624x192
  squeezedet synth --sequence --out data/synth_seq --sequences 4 --frames 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from squeezedet.errors import SqueezeDetError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``squeezedet synth``."""
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder (created if missing)")
    parser.add_argument("--images", "-n", type=int, default=None, metavar="N",
                        help="number of images (default: 1000)")
    parser.add_argument("--sequence", action="store_true",
                        help="draw moving sequences with track ids (KITTI tracking layout)")
    parser.add_argument("--sequences", type=int, default=None, metavar="K",
                        help="with --sequence: number of sequences (default: 4)")
    parser.add_argument("--frames", type=int, default=None, metavar="F",
                        help="with --sequence: frames per sequence, 10 a second (default: 100)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="random seed, >= 0 (default: 0)")
    parser.add_argument("--size", default="1242x375", metavar="WxH",
                        help="image size in pixels (default: 1242x375, KITTI's)")
    parser.add_argument("--density", type=float, default=1.0, metavar="D",
                        help="multiply the expected number of cars, pedestrians and cyclists in a "
                             "scene by about D, 0.25..4 (default: 1)")
    parser.add_argument("--val-fraction", type=float, default=0.25, metavar="F",
                        help="fraction of images in ImageSets/val.txt (default: 0.25)")
    parser.add_argument("--workers", type=int, default=None, metavar="P",
                        help="processes drawing the scenes (default: one per usable core from 200 "
                             "images on; the files are the same whatever P)")
    parser.add_argument("--overwrite", action="store_true",
                        help="rewrite the generator's files in a folder that holds other content")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")


def _run_sequences(args: argparse.Namespace, size: tuple[int, int], scene: Any) -> int:
    """``synth --sequence``: write the sequences; returns the exit status."""
    from squeezedet.data.synth.sequence_files import generate_sequences, sequences_current

    if args.images is not None or args.val_fraction != 0.25 or args.workers is not None:
        raise SqueezeDetError("--images, --val-fraction and --workers are for single scenes; "
                              "--sequence takes --sequences and --frames")
    n_seq = 4 if args.sequences is None else args.sequences
    n_frames = 100 if args.frames is None else args.frames
    what = f"{n_seq} sequences of {n_frames} frames, {size[0]}x{size[1]}, seed {args.seed}"
    if not args.overwrite and sequences_current(args.out, n_seq, n_frames, args.seed, size, scene):
        if not args.quiet:
            print(f"{args.out} already holds these {what}; nothing to do")
        return 0
    start = time.perf_counter()
    generate_sequences(args.out, n_seq, n_frames, args.seed, size, scene,
                       progress=not args.quiet, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {what} to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def run(args: argparse.Namespace) -> int:
    """Generate the data set; returns the exit status."""
    from squeezedet.config import parse_size
    from squeezedet.data.synth import SceneMix, generate_dataset, is_current, split_ids

    size = parse_size(args.size, "--size")
    scene = SceneMix(args.density)
    if args.sequence:
        return _run_sequences(args, size, scene)
    if args.sequences is not None or args.frames is not None:
        raise SqueezeDetError("--frames and --sequences go with --sequence")
    args.images = 1000 if args.images is None else args.images
    dense = f", density {scene.density:g}" if not scene.is_default else ""
    if not args.overwrite and is_current(args.out, args.images, args.seed, size,
                                         args.val_fraction, scene):
        if not args.quiet:
            print(f"{args.out} already holds this data set ({args.images} images, seed "
                  f"{args.seed}, {size[0]}x{size[1]}{dense}); nothing to do")
        return 0
    start = time.perf_counter()
    generate_dataset(args.out, args.images, args.seed, size, args.val_fraction,
                     progress=not args.quiet, overwrite=args.overwrite, scene=scene,
                     workers=args.workers)
    if not args.quiet:
        train, val = split_ids(args.images, args.seed, args.val_fraction)
        print(f"wrote {args.images} images of {size[0]}x{size[1]}{dense} to {args.out} "
              f"(train {len(train)}, val {len(val)}) in {time.perf_counter() - start:.1f} s")
    return 0
