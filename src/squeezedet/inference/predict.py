"""The prediction pipeline behind ``squeezedet predict``: sources, batching, tiling, writing.

:func:`predict` runs a detector over an image file, a folder (its ``IMAGE_SUFFIXES`` files, not
recursive), a glob, a ``.txt`` list of image paths (relative paths from the list's folder, else the
working directory; ``#`` starts a comment) or a video (``VIDEO_SUFFIXES``; needs OpenCV, the
``video`` extra) and writes, under ``out``: the drawn images (same name as the input) or the drawn
video, KITTI result files in ``out/kitti/`` and JSON files in ``out/json/`` as asked. Video frames'
files are named ``STEM_FRAME`` (frame from 0, six digits). An unreadable image is reported and
skipped.

>>> result = predict("runs/demo/train/best.pt", "photos/", "runs/predict",
...                  PredictOptions(save_kitti=True))
>>> print(result.summary_line())
"""

from __future__ import annotations

import glob
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from squeezedet import distributed
from squeezedet.data.images import load_image
from squeezedet.data.kitti_format import write_kitti_file
from squeezedet.errors import DataError, SqueezeDetError, check_output_dir, require
from squeezedet.inference.detector import Detector
from squeezedet.inference.tiled import detect_tiled

#: Files a folder or glob source picks up, and files treated as videos.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


AUTO_CONVERT_MIN_IMAGES = 64
"""With ``backend="auto"``, a checkpoint is converted to OpenVINO / ONNX Runtime only for this many
images or more (or a video); fewer run in eager PyTorch, which starts faster and uses less memory."""


@dataclass
class PredictOptions:
    """What :func:`predict` writes and how it runs (the ``squeezedet predict`` flags).

    conf: drawing threshold and the one the summary counts. show_all: draw every detection kept
    after NMS. save_kitti / save_json: write KITTI / JSON files (every detection ≥ ``save_conf``).
    no_draw: no drawn images or video. batch_size: images per network call. backend / device: see
    :func:`squeezedet.deployment.runners.load_runner` (device ``auto``: CUDA when available).
    no_progress: no progress bar. tile, overlap: detect in overlapping ``(W, H)`` windows.
    tta: test-time flips (:data:`squeezedet.postprocess.TTA_VIEWS`); ``None``: as a ``.pt``
    checkpoint's run validated (with its ``top_k``), else ``"none"``. nms_iou: NMS's IoU
    threshold; ``None``: as a ``.pt`` checkpoint's run validated, else 0.4.
    """

    conf: float = 0.4
    show_all: bool = False
    save_kitti: bool = False
    save_json: bool = False
    save_conf: float = 0.0
    no_draw: bool = False
    batch_size: int = 8
    backend: str = "auto"
    device: str = "auto"
    no_progress: bool = False
    tile: tuple[int, int] | None = None
    overlap: float = 0.2
    tta: str | None = None
    nms_iou: float | None = None


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _read_list(path: Path) -> list[Path]:
    """Image paths of a text list: one a line, blank lines and '#' comments skipped; a relative
    path is taken from the list's folder when it exists there, else from the working directory."""
    try:
        text = path.read_text(encoding="utf-8-sig")
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

    def __init__(self, out: Path, options: PredictOptions, class_names: tuple[str, ...]) -> None:
        self.out = Path(out)
        self.options = options
        self.class_names = class_names
        self.draw_min = 0.0 if options.show_all else options.conf
        self.out.mkdir(parents=True, exist_ok=True)
        if options.save_kitti:
            (self.out / "kitti").mkdir(exist_ok=True)
        if options.save_json:
            (self.out / "json").mkdir(exist_ok=True)

    def files(self, det: Any, name: str) -> None:
        """KITTI and JSON files of one image, as asked."""
        if self.options.save_kitti:
            write_kitti_file(self.out / "kitti" / f"{name}.txt", det.to_kitti(self.options.save_conf))
        if self.options.save_json:
            (self.out / "json" / f"{name}.json").write_text(
                det.to_json(self.options.save_conf, indent=1) + "\n")

    def drawn(self, det: Any) -> Any:
        """The drawn image (Pillow)."""
        return det.plot(self.draw_min)


def _progress(total: int | None, unit: str, disable: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc="predict", disable=disable or total == 1,
                leave=False, dynamic_ncols=True)


def _count(det: Any, conf: float, summary: Summary) -> None:
    summary.per_class.update(det.filter(conf).names)


def _run_images(detector: Any, paths: list[Path], options: PredictOptions,
                writer: Writer, summary: Summary) -> None:
    # torchrun: this process's share of the images (named first, so repeated stems keep suffixes)
    pairs = distributed.shard(list(zip(paths, unique_names(paths), strict=True)))
    bar = _progress(len(pairs), "img", options.no_progress or not distributed.is_main())
    batch: list[tuple[Path, str, Any]] = []

    def flush() -> None:
        if not batch:
            return
        t0 = time.perf_counter()
        if options.tile:  # large images: tile by tile, merged with NMS
            dets = [detect_tiled(detector, a, options.tile, options.overlap, str(p), keep_image=False)
                    for p, _, a in batch]
        else:
            dets = detector.detect_arrays([a for _, _, a in batch], [str(p) for p, _, _ in batch])
        summary.seconds += time.perf_counter() - t0
        for (path, name, _), det in zip(batch, dets, strict=True):
            writer.files(det, name)
            if not options.no_draw:
                suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".png"
                writer.drawn(det).save(writer.out / f"{name}{suffix}")
            _count(det, options.conf, summary)
            summary.images += 1
        bar.update(len(batch))
        batch.clear()

    try:
        for path, name in pairs:
            try:
                array = load_image(path)
            except DataError as exc:
                bar.write(f"warning: {exc}; skipped", file=sys.stderr)
                summary.skipped += 1
                bar.update(1)
                continue
            batch.append((path, name, array))
            if len(batch) >= options.batch_size:
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


def _run_video(detector: Any, path: Path, options: PredictOptions,
               writer: Writer, summary: Summary) -> Path | None:
    cv2: Any = require("cv2", "video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(path, "OpenCV cannot open this video (unknown codec or corrupt file)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    suffix = ".avi" if path.suffix.lower() == ".avi" else ".mp4"
    out_path = writer.out / f"{path.stem}{suffix}"
    video_writer = None
    bar = _progress(total, "frame", options.no_progress)
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
            if not options.no_draw:
                drawn = np.asarray(writer.drawn(det))[:, :, ::-1]
                if video_writer is None:
                    fourcc = cv2.VideoWriter_fourcc(*("XVID" if suffix == ".avi" else "mp4v"))
                    h, w = drawn.shape[:2]
                    video_writer = cv2.VideoWriter(str(out_path), fourcc, fps, (w, h))
                    if not video_writer.isOpened():
                        raise SqueezeDetError(f"{out_path}: OpenCV cannot write this video")
                video_writer.write(np.ascontiguousarray(drawn))
            _count(det, options.conf, summary)
            summary.images += 1
            index += 1
        bar.update(len(batch))
        batch.clear()

    try:
        for frame in _frames(capture):
            batch.append(frame)
            if len(batch) >= options.batch_size:
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

@dataclass
class PredictResult:
    """What :func:`predict` did: the counts, the kind of source, where the results are."""

    summary: Summary
    class_names: tuple[str, ...]
    unit: str
    where: Path
    device: str
    options: PredictOptions
    is_main: bool = True

    def summary_line(self) -> str:
        """One line: images (skipped), detections ≥ conf per class, time per image, where."""
        return (format_summary(self.summary, self.class_names, self.options.conf, self.unit,
                               self.options.batch_size, self.device)
                + f"; results in {self.where}")


def choose_backend(backend: str, weights: str | Path, kind: str, count: int) -> str:
    """``auto`` for a checkpoint and fewer than :data:`AUTO_CONVERT_MIN_IMAGES` images becomes
    ``torch``: converting a checkpoint to a faster runtime takes 1–2 s and ~100 MiB, which pays
    back only over many images."""
    if (backend == "auto" and kind != "video" and count < AUTO_CONVERT_MIN_IMAGES
            and Path(weights).suffix.lower() in (".pt", ".pth")):
        return "torch"
    return backend


def predict(weights: str | Path, source: str, out: str | Path,
            options: PredictOptions | None = None) -> PredictResult:
    """Run the detector of ``weights`` over ``source`` (see the module docstring), writing into
    ``out``; returns the counts (``result.summary.images == 0``: not a single image could be
    read).

    Under torchrun each process takes its share of the images (:func:`distributed.shard`) and
    every process returns the summary of them all (``result.is_main`` tells rank 0, which
    prints it)."""
    with distributed.process_group((options or PredictOptions()).device):
        return _predict(weights, source, out, options or PredictOptions())


def _predict(weights: str | Path, source: str, out: str | Path,
             options: PredictOptions) -> PredictResult:
    from squeezedet.engine import resolve_device

    check_output_dir(out, "--out")
    for wanted, sub in ((options.save_kitti, "kitti"), (options.save_json, "json")):
        if wanted:
            check_output_dir(Path(out) / sub, "--out")
    kind, paths = resolve_source(source)
    if kind == "video" and options.tile:
        raise SqueezeDetError("--tile works on images, not videos")
    if kind == "video" and distributed.active():
        raise SqueezeDetError(f"{paths[0]}: the frames of one video are not split across "
                              "processes; predict it without torchrun")
    device = str(distributed.local_device(resolve_device(options.device)))
    backend = choose_backend(options.backend, weights, kind, len(paths))
    # the top_k, NMS and flips the run validated with (from_checkpoint), but --tta and
    # --nms-iou when given
    given = {k: v for k, v in (("tta", options.tta), ("nms_iou", options.nms_iou))
             if v is not None}
    detector = Detector.from_checkpoint(weights, device=device, backend=backend,
                                        conf=0.0, batch_size=options.batch_size, **given)
    writer = Writer(Path(out), options, detector.class_names)
    summary = Summary()
    if kind == "video":
        video = _run_video(detector, paths[0], options, writer, summary)
        unit, where = "frame", video or writer.out
    else:
        _run_images(detector, paths, options, writer, summary)
        unit, where = "image", writer.out
    if distributed.active():  # torchrun: one summary of every process's images
        parts = distributed.all_gather_object(summary)
        summary = Summary(sum(p.images for p in parts), sum(p.skipped for p in parts),
                          sum(p.seconds for p in parts), sum((p.per_class for p in parts), Counter()))
    return PredictResult(summary, detector.class_names, unit, where, device, options,
                         distributed.is_main())
