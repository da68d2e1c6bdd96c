"""Detection (and tracking) over a stream of frames: :meth:`Detector.stream`.

>>> for r in detector.stream("drive.mp4", tracker=True):
...     print(r.frame, r.timestamp, len(r.detections), r.track_ids)

A :class:`VideoStream` reads any source of :func:`squeezedet.video.open_source` (video file, folder
of frames, camera index, network URL) and yields one :class:`StreamResult` per frame, in order.
Decoding, detection and tracking run on threads of their own joined by bounded queues
(:func:`squeezedet.video.run_stages`), so they overlap and memory stays flat over input of any
length; ``realtime=True`` drops frames when detection lags behind a live source
(:attr:`VideoStream.dropped`). Detections are at the detector's ``conf``; with a tracker, that
should be the tracker's ``low_threshold`` (ByteTrack's second pass needs the low-score ones).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from squeezedet.errors import SqueezeDetError
from squeezedet.postprocess import Detections
from squeezedet.video import Frame, SourceOptions, StageTimes, open_source, run_stages
from squeezedet.video.pipeline import Stage


@dataclass(frozen=True)
class StreamResult:
    """One frame's results.

    frame: the frame's index in the source (from 0; dropped frames leave gaps). timestamp:
    seconds (see :mod:`squeezedet.video.sources`). name: the image's file stem for a folder of
    frames, else the index. detections: every detection at the detector's ``conf``, the frame
    kept in ``detections.image`` unless ``keep_images=False``. tracks: the tracker's
    :class:`~squeezedet.tracking.Tracks` (``boxes``, ``scores``, ``labels``, ``track_ids``), or
    ``None`` without a tracker.
    """

    frame: int
    timestamp: float
    name: str
    detections: Detections
    tracks: Any = field(default=None, repr=False)

    @property
    def track_ids(self) -> np.ndarray | None:
        """``int64 [T]`` ids of the tracks in this frame (from 1), or ``None`` without a tracker."""
        return None if self.tracks is None else np.asarray(self.tracks.track_ids)


def make_tracker(tracker: Any, fps: float | None) -> Any:
    """A tracker for a stream of ``fps`` frames per second: ``True`` → a default
    :class:`~squeezedet.tracking.Tracker`; a :class:`~squeezedet.tracking.TrackerConfig` → a
    tracker with those thresholds; an object with ``update`` (a tracker) or ``None`` → itself."""
    if tracker is None or tracker is False or hasattr(tracker, "update"):
        return tracker or None
    from squeezedet.tracking import Tracker

    return Tracker(None if tracker is True else tracker, frame_rate=float(fps or 10.0))


class VideoStream:
    """An iterator of :class:`StreamResult` over ``source`` (see the module docstring).

    Args:
        detector: a :class:`~squeezedet.inference.Detector` (anything with ``detect_arrays``),
            or a list of them: one detection thread each, frames taken in turn, order kept
            (e.g. two OpenVINO detectors of one thread each on two cores).
        source: a source text or camera index for :func:`~squeezedet.video.open_source`.
        tracker: ``True`` (a default tracker), a :class:`~squeezedet.tracking.TrackerConfig`, a
            tracker object with ``update(boxes, scores, labels)`` (e.g.
            :class:`~squeezedet.tracking.Tracker`), or ``None``.
        realtime: drop frames that detection cannot keep up with (live sources).
        threaded: overlap the stages (``False``: one after the other, in the caller's thread).
        queue_size: frames each queue between stages holds.
        options: time-outs, reconnection and a folder's frame rate (:class:`SourceOptions`).
        keep_images: keep each frame in ``detections.image`` (for drawing).
        after: more ``(name, function)`` stages, run on their own threads on each
            :class:`StreamResult`; the stream then yields what the last one returns (the list
            :attr:`after` may be extended until the first frame is asked for).
        factory: the capture factory of cameras and streams (tests pass fakes).

    Attributes (filled while it runs): ``source`` (its ``name``, ``fps``, ``warnings``),
    ``times`` (:class:`~squeezedet.video.StageTimes`: ms per stage), ``frames``, ``seconds``.
    """

    def __init__(self, detector: Any, source: Any, *, tracker: Any = None,
                 realtime: bool = False, threaded: bool = True, queue_size: int = 4,
                 options: SourceOptions | None = None, keep_images: bool = True,
                 after: Sequence[Stage] = (), factory: Callable[..., Any] | None = None) -> None:
        if realtime and not threaded:
            raise SqueezeDetError("dropping frames (--realtime) needs the stages on their own "
                                  "threads; leave out --sequential")
        self.detectors = list(detector) if isinstance(detector, (list, tuple)) else [detector]
        self.detector = self.detectors[0]
        self.source = open_source(source, options, factory)
        self.tracker = make_tracker(tracker, self.source.fps)
        self.keep_images = keep_images
        self.after: list[Stage] = list(after)
        self.times = StageTimes()
        self.frames = 0
        self.seconds = 0.0
        self._run = {"threaded": threaded, "queue_size": queue_size, "drop": realtime}
        self._results: Iterator[Any] | None = None
        self._started = 0.0

    def _start(self) -> Iterator[Any]:
        detect = [functools.partial(self._detect, d) for d in self.detectors]
        stages: list[Stage] = [("detect", detect[0] if len(detect) == 1 else detect)]
        if self.tracker is not None:
            stages.append(("track", self._track))
        self._started = time.perf_counter()
        return run_stages(self.source.frames(), stages + self.after, times=self.times,
                          **self._run)  # type: ignore[arg-type]

    @property
    def dropped(self) -> int:
        """Frames dropped so far because detection lagged (``realtime``)."""
        return self.times.dropped

    def _detect(self, detector: Any, frame: Frame) -> StreamResult:
        det = detector.detect_arrays([frame.image], [f"{self.source.name}#{frame.index}"],
                                     keep_images=self.keep_images)[0]
        return StreamResult(frame.index, frame.timestamp, frame.name, det)

    def _track(self, result: StreamResult) -> StreamResult:
        d = result.detections
        tracks = self.tracker.update(d.boxes.numpy(), d.scores.numpy(), d.labels.numpy())
        return StreamResult(result.frame, result.timestamp, result.name, d, tracks)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._results is None:
            self._results = self._start()
        try:
            item = next(self._results)
        except StopIteration:
            self.source.close()
            raise
        finally:
            self.seconds = time.perf_counter() - self._started
        self.frames += 1
        return item

    def close(self) -> None:
        """Stop every stage's thread and release the source (also on ``with`` exit)."""
        try:
            if self._results is not None:
                self._results.close()  # type: ignore[attr-defined]
        finally:
            self.source.close()

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def fps(self) -> float:
        """Frames yielded per second of wall time so far."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0
