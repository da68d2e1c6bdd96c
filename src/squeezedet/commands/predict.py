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
counts. KITTI and JSON files get every detection kept after top-64 and NMS, low scores included,
because the evaluation's precision-recall curve needs them; --save-conf raises that floor.

Examples:
  squeezedet predict --weights runs/demo/best.pt --source data/kitti/training/image_2/000042.png
  squeezedet predict --weights runs/demo/best.pt --source data/val_images --out runs/val \\
      --save-kitti --batch-size 16 --no-draw
  squeezedet evaluate --labels data/kitti/training/label_2 --detections runs/val/kitti
  squeezedet predict --weights best.pt --source 'photos/*.jpg' --conf 0.3 --save-json
  squeezedet predict --weights model.onnx --backend onnxruntime --source drive.mp4
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squeezedet.errors import DataError, SqueezeDetError

#: Files a folder or glob source picks up, and files treated as videos.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


AUTO_CONVERT_MIN_IMAGES = 64
"""With ``--backend auto``, a checkpoint is converted to OpenVINO / ONNX Runtime only for this many
images or more (or a video); fewer run in eager PyTorch, which starts faster and uses less memory."""


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a score between 0 and 1")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size WxH, e.g. 512x512") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return w, h


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
                             "after top-64 and NMS, as evaluation needs)")
    parser.add_argument("--no-draw", action="store_true",
                        help="do not write drawn images or video")
    parser.add_argument("--batch-size", type=_positive, default=8,
                        help="images per network call (default: 8)")
    from squeezedet.runtime import BACKENDS

    parser.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                        help="inference backend (default: auto, chosen by the weights' file type; "
                             "a .pt checkpoint runs converted to the fastest installed runtime for "
                             f"a video or {AUTO_CONVERT_MIN_IMAGES}+ images, else in PyTorch; "
                             "see squeezedet.runtime)")
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (CUDA when available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--tile", type=_size, metavar="WxH",
                        help="detect in overlapping WxH windows of each image and merge them with "
                             "NMS (large images with small objects; images only)")
    parser.add_argument("--overlap", type=float, default=0.2, metavar="P",
                        help="fraction of a tile shared with its neighbour (default: 0.2)")


# ---------------------------------------------------------------- sources


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _read_list(path: Path) -> list[Path]:
    """Image paths of a text list: one a line, blank lines and '#' comments skipped; a relative
    path is taken from the list's folder when it exists there, else from the working directory."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the list of images ({exc})") from None
    paths = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        p = Path(entry).expanduser()
        if not p.is_absolute() and (path.parent / p).exists():
            p = path.parent / p
        paths.append(p)
    if not paths:
        raise DataError(path, "the list of images is empty")
    return paths


def resolve_source(source: str) -> tuple[str, list[Path]]:
    """``("video", [path])`` or ``("images", paths)`` for a ``--source`` value (see --help)."""
    path = Path(source).expanduser()
    if not path.exists():
        if _is_glob(source):
            matches = sorted(Path(p) for p in glob.glob(source, recursive=True))
            images = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise SqueezeDetError(
                    f"{source}: the pattern matches no image files ({' '.join(IMAGE_SUFFIXES)})")
            return "images", images
        raise SqueezeDetError(f"{source}: no such file or folder")
    if path.is_dir():
        images = sorted(p for p in path.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise SqueezeDetError(
                f"{path}: the folder has no image files ({' '.join(IMAGE_SUFFIXES)})")
        return "images", images
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video", [path]
    if suffix == ".txt":
        return "images", _read_list(path)
    return "images", [path]


def unique_names(paths: list[Path]) -> list[str]:
    """Output stems for ``paths``: the file stem, with ``_2``, ``_3``… added to repeats."""
    seen: Counter[str] = Counter()
    names = []
    for p in paths:
        seen[p.stem] += 1
        names.append(p.stem if seen[p.stem] == 1 else f"{p.stem}_{seen[p.stem]}")
    return names


# ---------------------------------------------------------------- outputs


@dataclass
class Summary:
    """Counts for the final line."""

    images: int = 0
    skipped: int = 0
    seconds: float = 0.0
    per_class: Counter[str] = field(default_factory=Counter)


class Writer:
    """Writes the outputs of one image: drawn image, KITTI and JSON files."""

    def __init__(self, args: argparse.Namespace, class_names: tuple[str, ...]) -> None:
        self.out = Path(args.out)
        self.args = args
        self.class_names = class_names
        self.draw_min = 0.0 if args.show_all else args.conf
        self.out.mkdir(parents=True, exist_ok=True)
        if args.save_kitti:
            (self.out / "kitti").mkdir(exist_ok=True)
        if args.save_json:
            (self.out / "json").mkdir(exist_ok=True)

    def files(self, det: Any, name: str) -> None:
        """KITTI and JSON files of one image, as asked."""
        from squeezedet.kitti_format import write_kitti_file

        if self.args.save_kitti:
            write_kitti_file(self.out / "kitti" / f"{name}.txt", det.to_kitti(self.args.save_conf))
        if self.args.save_json:
            (self.out / "json" / f"{name}.json").write_text(
                det.to_json(self.args.save_conf, indent=1) + "\n")

    def drawn(self, det: Any) -> Any:
        """The drawn image (Pillow)."""
        return det.plot(self.draw_min)


def _progress(total: int | None, unit: str, disable: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc="predict", disable=disable or total == 1,
                leave=False, dynamic_ncols=True)


def _count(det: Any, conf: float, summary: Summary) -> None:
    summary.per_class.update(det.filter(conf).names)


def _run_images(detector: Any, paths: list[Path], args: argparse.Namespace,
                writer: Writer, summary: Summary) -> None:
    from squeezedet import distributed
    from squeezedet.data.images import load_image

    # torchrun: this process's share of the images (named first, so repeated stems keep suffixes)
    pairs = distributed.shard(list(zip(paths, unique_names(paths), strict=True)))
    bar = _progress(len(pairs), "img", args.no_progress or not distributed.is_main())
    batch: list[tuple[Path, str, Any]] = []

    def flush() -> None:
        if not batch:
            return
        t0 = time.perf_counter()
        if args.tile:  # large images: tile by tile, merged with NMS
            from squeezedet.tiling import detect_tiled

            dets = [detect_tiled(detector, a, args.tile, args.overlap, str(p), keep_image=False)
                    for p, _, a in batch]
        else:
            dets = detector.detect_arrays([a for _, _, a in batch], [str(p) for p, _, _ in batch])
        summary.seconds += time.perf_counter() - t0
        for (path, name, _), det in zip(batch, dets, strict=True):
            writer.files(det, name)
            if not args.no_draw:
                suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".png"
                writer.drawn(det).save(writer.out / f"{name}{suffix}")
            _count(det, args.conf, summary)
            summary.images += 1
        bar.update(len(batch))
        batch.clear()

    try:
        for path, name in pairs:
            try:
                array = load_image(path)
            except DataError as exc:
                bar.write(f"squeezedet predict: warning: {exc}; skipped", file=sys.stderr)
                summary.skipped += 1
                bar.update(1)
                continue
            batch.append((path, name, array))
            if len(batch) >= args.batch_size:
                flush()
        flush()
    finally:
        bar.close()


def _frames(capture: Any) -> Iterator[Any]:
    """RGB ``uint8 [H, W, 3]`` frames of an open ``cv2.VideoCapture``."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame[:, :, ::-1].copy()


def _run_video(detector: Any, path: Path, args: argparse.Namespace,
               writer: Writer, summary: Summary) -> Path | None:
    from squeezedet.errors import require

    cv2: Any = require("cv2", "video")
    import numpy as np

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(path, "OpenCV cannot open this video (unknown codec or corrupt file)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    suffix = ".avi" if path.suffix.lower() == ".avi" else ".mp4"
    out_path = writer.out / f"{path.stem}{suffix}"
    video_writer = None
    bar = _progress(total, "frame", args.no_progress)
    index = 0
    batch: list[Any] = []

    def flush() -> None:
        nonlocal video_writer, index
        if not batch:
            return
        t0 = time.perf_counter()
        dets = detector.detect_arrays(batch, [f"{path}#{index + i}" for i in range(len(batch))])
        summary.seconds += time.perf_counter() - t0
        for det in dets:
            writer.files(det, f"{path.stem}_{index:06d}")
            if not args.no_draw:
                drawn = np.asarray(writer.drawn(det))[:, :, ::-1]
                if video_writer is None:
                    fourcc = cv2.VideoWriter_fourcc(*("XVID" if suffix == ".avi" else "mp4v"))
                    h, w = drawn.shape[:2]
                    video_writer = cv2.VideoWriter(str(out_path), fourcc, fps, (w, h))
                    if not video_writer.isOpened():
                        raise SqueezeDetError(f"{out_path}: OpenCV cannot write this video")
                video_writer.write(np.ascontiguousarray(drawn))
            _count(det, args.conf, summary)
            summary.images += 1
            index += 1
        bar.update(len(batch))
        batch.clear()

    try:
        for frame in _frames(capture):
            batch.append(frame)
            if len(batch) >= args.batch_size:
                flush()
        flush()
    finally:
        bar.close()
        capture.release()
        if video_writer is not None:
            video_writer.release()
    if summary.images == 0:
        raise DataError(path, "the video has no readable frames")
    return out_path if video_writer is not None else None


def format_summary(summary: Summary, class_names: tuple[str, ...], conf: float, unit: str,
                   batch_size: int, device: str) -> str:
    """The closing line: images (skipped), detections ≥ conf per class, time per image."""
    counts = ", ".join(f"{name} {summary.per_class.get(name, 0)}" for name in class_names)
    skipped = f" ({summary.skipped} skipped)" if summary.skipped else ""
    ms = 1000.0 * summary.seconds / summary.images if summary.images else 0.0
    total = sum(summary.per_class.values())
    return (f"{summary.images} {unit}{'' if summary.images == 1 else 's'}{skipped}; "
            f"{total} detections ≥ {conf:.2f}: {counts}; {ms:.1f} ms per {unit} "
            f"(resize, network, post-processing; batch {batch_size}, {device})")


def run(args: argparse.Namespace) -> int:
    """Run the detector over the source; return 0, or 1 when no image could be read.

    Under torchrun each process takes its share of the images (squeezedet.distributed.shard) and
    rank 0 prints one summary of them all."""
    from squeezedet import distributed

    with distributed.process_group(args.device):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from squeezedet import distributed
    from squeezedet.engine import resolve_device
    from squeezedet.inference import Detector

    kind, paths = resolve_source(args.source)
    if kind == "video" and distributed.active():
        raise SqueezeDetError(f"{paths[0]}: the frames of one video are not split across "
                              "processes; predict it without torchrun")
    device = str(distributed.local_device(resolve_device(args.device)))
    backend = args.backend
    if (backend == "auto" and kind != "video" and len(paths) < AUTO_CONVERT_MIN_IMAGES
            and Path(args.weights).suffix.lower() in (".pt", ".pth")):
        # converting a checkpoint to a faster runtime takes 1-2 s and ~100 MiB: it pays back
        # only over many images
        backend = "torch"
    detector = Detector.from_checkpoint(args.weights, device=device, backend=backend,
                                        conf=0.0, batch_size=args.batch_size)
    writer = Writer(args, detector.class_names)
    summary = Summary()
    if kind == "video" and args.tile:
        raise SqueezeDetError("--tile works on images, not videos")
    if kind == "video":
        video = _run_video(detector, paths[0], args, writer, summary)
        unit = "frame"
        where = f"{video}" if video else f"{writer.out}"
    else:
        _run_images(detector, paths, args, writer, summary)
        unit = "image"
        where = f"{writer.out}"
    if distributed.active():  # torchrun: one summary of every process's images
        parts = distributed.all_gather_object(summary)
        summary = Summary(sum(p.images for p in parts), sum(p.skipped for p in parts),
                          sum(p.seconds for p in parts), sum((p.per_class for p in parts), Counter()))
    if distributed.is_main():
        print(format_summary(summary, detector.class_names, args.conf, unit, args.batch_size,
                             device) + f"; results in {where}")
    if summary.images == 0:
        if distributed.is_main():
            print(f"squeezedet predict: error: none of the {summary.skipped} images could be read",
                  file=sys.stderr)
        return 1
    return 0
