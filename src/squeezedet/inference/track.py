"""Tracking a video, folder of frames, camera or stream into files: ``squeezedet track``.

:func:`track` detects and tracks every frame of a source (:class:`~squeezedet.inference.stream.VideoStream`
with a :class:`~squeezedet.tracking.Tracker`) and writes, under ``out``:

- ``kitti_tracking/SEQ.txt`` and ``mot/SEQ.txt``: the tracks in the KITTI tracking and MOTChallenge
  formats (:mod:`squeezedet.video.writers`), flushed frame by frame;
- ``SEQ.mp4``: the frames with the tracks drawn (:mod:`squeezedet.video.paint`), unless ``no_draw``;

``SEQ`` is the source's name: the folder's (KITTI tracking's ``image_02/0004`` gives ``0004``), the
video's stem, ``camera0`` or ``stream``. Decoding, detection, tracking, drawing and encoding run on
threads of their own (``sequential=True``: one after the other). Every way out — the end, a
truncated video, a stream that stops, Ctrl-C — leaves complete files: the video finalised and the
text files holding every frame processed; :class:`TrackResult` says how it ended.

>>> result = track("runs/demo/best.pt", "drive.mp4", "runs/track")
>>> print("\\n".join(result.summary_lines()))
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squeezedet.deployment.runners import light_torch_threads
from squeezedet.errors import SqueezeDetError, check_output_dir
from squeezedet.inference.detector import Detector
from squeezedet.inference.stream import StreamResult, VideoStream
from squeezedet.video import SourceOptions, StageTimes
from squeezedet.video.paint import TrackPainter
from squeezedet.video.writers import TrackTextWriter, VideoOut


@dataclass
class TrackOptions:
    """How :func:`track` runs (the ``squeezedet track`` flags): the runtime (``backend``,
    ``device``, ``threads``: inference threads in all), ``workers`` (detectors side by side, each
    with ``threads / workers`` threads; order kept), the tracker's thresholds (``tracker``: a
    :class:`~squeezedet.tracking.TrackerConfig`, default ByteTrack's), the source (``source``:
    time-outs, reconnection, a folder's frame rate), ``realtime`` (drop frames when detection lags),
    ``sequential`` (no overlap), ``queue_size``, ``no_draw`` (no video), ``trail`` (positions in
    a drawn trail), ``max_frames`` (stop after this many), ``no_progress``."""

    backend: str = "auto"
    device: str = "auto"
    threads: int | None = None
    workers: int = 1
    tracker: Any = None
    source: SourceOptions = field(default_factory=SourceOptions)
    realtime: bool = False
    sequential: bool = False
    queue_size: int = 4
    no_draw: bool = False
    trail: int = 20
    max_frames: int | None = None
    no_progress: bool = False


@dataclass
class TrackResult:
    """What :func:`track` did: frames, time, ms per stage, tracks seen, outputs, how it ended."""

    sequence: str
    frames: int = 0
    seconds: float = 0.0
    times: StageTimes = field(default_factory=StageTimes)
    track_ids: set[int] = field(default_factory=set)
    outputs: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    mode: str = "pipelined"

    @property
    def fps(self) -> float:
        """Frames per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary_lines(self) -> list[str]:
        """The closing lines: frames, FPS, ms per stage, tracks, drops, warnings, where."""
        dropped = f", {self.times.dropped} dropped (--realtime)" if self.times.dropped else ""
        lines = [f"{self.sequence}: {self.frames} frames in {self.seconds:.1f} s, {self.fps:.1f} FPS "
                 f"({self.mode}; per frame: {self.times.line()}); {len(self.track_ids)} tracks"
                 f"{dropped}"]
        lines += [f"warning: {w}" for w in self.warnings]
        if self.interrupted:
            lines.append(f"interrupted after {self.frames} frames; the outputs hold them all")
        lines.append("results: " + ", ".join(str(p) for p in self.outputs))
        return lines


class _Outputs:
    """The files of one run: the two text formats and, unless ``no_draw``, the drawn video."""

    def __init__(self, out: Path, name: str, class_names: tuple[str, ...], fps: float | None,
                 options: TrackOptions) -> None:
        self.kitti = TrackTextWriter(out / "kitti_tracking" / f"{name}.txt", "kitti", class_names)
        self.mot = TrackTextWriter(out / "mot" / f"{name}.txt", "mot", class_names)
        self.video = None if options.no_draw else VideoOut(out / f"{name}.mp4", fps or 10.0)
        self.painter = TrackPainter(class_names, options.trail)
        self.paths = [self.kitti.path, self.mot.path] + ([self.video.path] if self.video else [])

    def draw(self, result: StreamResult) -> tuple[StreamResult, Any]:
        t = result.tracks
        image = result.detections.image
        assert image is not None  # the stream keeps the frames when drawing
        return result, self.painter.draw(image, t.track_ids, t.boxes, t.labels)

    def encode(self, item: tuple[StreamResult, Any]) -> StreamResult:
        assert self.video is not None
        self.video.write(item[1])
        return item[0]

    def text(self, result: StreamResult) -> None:
        t = result.tracks
        for writer in (self.kitti, self.mot):
            writer.write(result.frame, t.track_ids, t.boxes, t.scores, t.labels)

    def close(self) -> None:
        for closer in (self.video, self.kitti, self.mot):
            if closer is not None:
                closer.close()


def _detectors(weights: str | Path, options: TrackOptions, conf: float) -> list[Detector]:
    """``options.workers`` detectors of ``weights``, sharing ``options.threads`` between them,
    keeping the candidates (``top_k``) and NMS of the model's training run as it validated; not
    its test-time flips, which would take two to four forward passes a frame."""
    from squeezedet.deployment.runners import (
        load_runner,
        recorded_postprocess,
        threads_or_default,
    )
    from squeezedet.engine import resolve_device

    if options.workers < 1:
        raise SqueezeDetError(f"workers must be at least 1, got {options.workers}")
    threads = max(1, threads_or_default(options.threads) // options.workers)
    device = str(resolve_device(options.device))
    post = {k: v for k, v in recorded_postprocess(weights).items() if k != "tta"}
    return [Detector(load_runner(weights, options.backend, device, threads=threads), conf=conf,
                     batch_size=1, **post) for _ in range(options.workers)]


def _tracker_config(options: TrackOptions) -> Any:
    from squeezedet.tracking import TrackerConfig

    return options.tracker if options.tracker is not None else TrackerConfig()


def track(weights: str | Path, source: str | int, out: str | Path,
          options: TrackOptions | None = None, *, detector: Any = None) -> TrackResult:
    """Detect and track ``source`` with the model of ``weights``, writing into ``out`` (see the
    module docstring). ``detector``: use this detector (or list of detectors, see
    :class:`~squeezedet.inference.stream.VideoStream`) instead of loading ``weights`` (tests,
    benchmarks). A Ctrl-C ends the run early with every file complete (``result.interrupted``)."""
    options = options or TrackOptions()
    out = check_output_dir(out, "--out")
    config = _tracker_config(options)
    if detector is None:
        detector = _detectors(weights, options, float(config.low_threshold))
    stream = VideoStream(detector, source, tracker=config, realtime=options.realtime,
                         threaded=not options.sequential, queue_size=options.queue_size,
                         options=options.source, keep_images=not options.no_draw)
    outputs = _Outputs(out, stream.source.name, stream.detector.class_names, stream.source.fps,
                       options)
    if outputs.video is not None:
        stream.after += [("draw", outputs.draw), ("encode", outputs.encode)]
    mode = "sequential" if options.sequential else (
        "pipelined" + (f", {len(stream.detectors)} detectors" if len(stream.detectors) > 1 else ""))
    result = TrackResult(stream.source.name, times=stream.times, outputs=outputs.paths, mode=mode)
    with light_torch_threads(stream.detector.runner) if hasattr(stream.detector, "runner") \
            else contextlib.nullcontext():  # pre- and post-processing: see that function
        _consume(stream, outputs, options, result)
    result.warnings += stream.source.warnings
    return result


def _consume(stream: VideoStream, outputs: _Outputs, options: TrackOptions,
             result: TrackResult) -> None:
    """Write every result of ``stream`` as it comes; on any way out, close everything."""
    from tqdm import tqdm

    total = stream.source.total
    if options.max_frames is not None:
        total = min(total, options.max_frames) if total else options.max_frames
    bar = tqdm(total=total, unit="frame", desc="track", disable=options.no_progress, leave=False,
               dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for item in stream:
            outputs.text(item)
            result.track_ids.update(int(i) for i in item.track_ids.tolist())
            result.frames += 1
            bar.update(1)
            if options.max_frames is not None and result.frames >= options.max_frames:
                break
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        result.seconds = time.perf_counter() - start
        bar.close()
        try:
            stream.close()
        finally:
            outputs.close()
    if result.frames == 0 and not result.interrupted:
        why = f" ({stream.source.warnings[0]})" if stream.source.warnings else ""
        raise SqueezeDetError(f"{stream.source.label}: no frame could be read{why}")
