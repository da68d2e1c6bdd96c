"""Detect cars, pedestrians and cyclists in images, folders, globs, text lists of paths or videos.

SOURCE may be an image file, a folder (its *.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp files, not
recursive), a quoted glob ('data/**/*.png'), a .txt file with one image path a line (relative
paths are taken from the list's folder, else the working directory; '#' starts a comment) or a
video (.mp4 .avi .mov .mkv .m4v .webm; needs the 'video' extra: pip install 'squeezedet[video]').

Images of any size are resized to the network size and the boxes mapped back to the original
pixels. Written under --out: the drawn images (same name as the input) or the drawn video; with
--save-kitti one KITTI result file per image in OUT/kitti/ (the benchmark's submission format,
ready for 'squeezedet evaluate'); with --save-json one JSON file per image in OUT/json/. For a video
the per-frame files are named STEM_FRAME.txt / .json (frame counted from 0, six digits; the JSON
'image' field reads VIDEO#FRAME). An unreadable image is reported and skipped. The checkpoint
carries everything needed (model, classes, input size, anchors, normalisation): no configuration
file.

Thresholds: --conf (default 0.4, the original's) is the drawing threshold and the one the summary
counts. KITTI and JSON files get every detection kept after top-k and NMS, low scores included,
because the evaluation's precision-recall curve needs them; --save-conf raises that floor. A .pt
checkpoint is post-processed as its run validated (its top_k, nms_iou and tta; the original's
top 64 and NMS at 0.4 otherwise); --tta and --nms-iou override.

Examples:
  squeezedet predict --weights runs/demo/best.pt --source data/kitti/training/image_2/000042.png
  squeezedet predict --weights runs/demo/best.pt --source data/val_images --out runs/val \\
      --save-kitti --batch-size 16 --no-draw
  squeezedet evaluate --labels data/kitti/training/label_2 --detections runs/val/kitti
  squeezedet predict --weights best.pt --source 'photos/*.jpg' --conf 0.3 --save-json
  squeezedet predict --weights model.onnx --backend onnxruntime --source drive.mp4
  squeezedet predict --weights best.pt --source drive.mp4 --track     # as 'squeezedet track'
"""

from __future__ import annotations

import argparse
import sys


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a score between 0 and 1")
    return value


def _iou(text: str) -> float:
    try:
        return _score(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IoU between 0 and 1") from None


def _size(text: str) -> tuple[int, int]:
    from squeezedet.config import parse_size
    from squeezedet.errors import SqueezeDetError

    try:
        return parse_size(text, "the size")
    except SqueezeDetError as exc:  # argparse names the option and exits with status 2
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``squeezedet predict``."""
    parser.add_argument("--weights", required=True, metavar="CKPT",
                        help="checkpoint (.pt) or exported model file")
    parser.add_argument("--source", required=True, metavar="PATH",
                        help="image, folder, quoted glob, .txt list of paths, or video")
    parser.add_argument("--out", default="runs/predict", metavar="DIR",
                        help="output folder (default: runs/predict)")
    parser.add_argument("--conf", type=_score, default=0.4,
                        help="score threshold for drawing and for the summary counts "
                             "(default: 0.4)")
    parser.add_argument("--show-all", action="store_true",
                        help="draw every detection kept after NMS, ignoring --conf")
    parser.add_argument("--save-kitti", action="store_true",
                        help="write KITTI result files (all post-NMS detections) to OUT/kitti/")
    parser.add_argument("--save-json", action="store_true",
                        help="write one JSON file per image (all post-NMS detections) to OUT/json/")
    parser.add_argument("--save-conf", type=_score, default=0.0, metavar="SCORE",
                        help="minimum score written to KITTI/JSON files (default: 0, everything "
                             "after top-k and NMS, as evaluation needs)")
    parser.add_argument("--no-draw", action="store_true",
                        help="do not write drawn images or video")
    parser.add_argument("--batch-size", type=_positive, default=8,
                        help="images per network call (default: 8)")
    from squeezedet.deployment.runners import BACKENDS
    from squeezedet.inference.predict import AUTO_CONVERT_MIN_IMAGES

    parser.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                        help="inference backend (default: auto, chosen by the weights' file type; "
                             "a .pt checkpoint runs, for a video or "
                             f"{AUTO_CONVERT_MIN_IMAGES}+ images, in the runtime measured fastest "
                             "on this machine (timed on first use, then cached), else in PyTorch; "
                             "see squeezedet.deployment.tuning)")
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (CUDA when available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--tile", type=_size, metavar="WxH",
                        help="detect in overlapping WxH windows of each image and merge them with "
                             "NMS (large images with small objects; images only)")
    parser.add_argument("--overlap", type=float, default=0.2, metavar="P",
                        help="fraction of a tile shared with its neighbour (default: 0.2)")
    from squeezedet.postprocess import TTA_VIEWS

    parser.add_argument("--tta", choices=tuple(TTA_VIEWS),
                        help="test-time flips: also detect on the mirrored image (hflip) or on "
                             "the mirrored, upside-down and both (flips: top-down imagery such "
                             "as aerial photos), merged by one NMS; each view is one more "
                             "network call (default: as a .pt checkpoint's training validated, "
                             "else none)")
    parser.add_argument("--nms-iou", type=_iou, metavar="IOU",
                        help="IoU above which NMS drops the lower-scoring of two boxes of a class "
                             "(default: as a .pt checkpoint's training validated, else 0.4, the "
                             "original's); higher keeps more boxes of neighbouring objects")
    parser.add_argument("--track", action="store_true",
                        help="track objects in a video, folder of frames, camera or stream: what "
                             "'squeezedet track' does, with the flags below")
    from squeezedet.commands.track import add_tracking_arguments

    add_tracking_arguments(parser)

def run(args: argparse.Namespace) -> int:
    """Run the detector over the source; return 0, or 1 when no image could be read. Under
    torchrun each process takes its share of the images and rank 0 prints one summary."""
    from squeezedet.inference.predict import PredictOptions, predict

    if args.track:
        from squeezedet.commands.track import run_tracking

        return run_tracking(args.weights, args.source, args.out, args)
    options = PredictOptions(
        conf=args.conf, show_all=args.show_all, save_kitti=args.save_kitti,
        save_json=args.save_json, save_conf=args.save_conf, no_draw=args.no_draw,
        batch_size=args.batch_size, backend=args.backend, device=args.device,
        no_progress=args.no_progress, tile=args.tile, overlap=args.overlap, tta=args.tta,
        nms_iou=args.nms_iou)
    result = predict(args.weights, args.source, args.out, options)
    if result.is_main:  # under torchrun rank 0 prints the one summary
        print(result.summary_line())
    if result.summary.images == 0:
        if result.is_main:
            print(f"squeezedet predict: error: none of the {result.summary.skipped} images could "
                  "be read", file=sys.stderr)
        return 1
    return 0
