"""The stage pipeline and ``Detector.stream``: order kept through threads, errors and early ends
stop every thread, bounded memory over 2,000 frames, real-time mode dropping frames behind a
deliberately slow detector, and the same detections as the detector called frame by frame."""

from __future__ import annotations

import random
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import squeezedet
from squeezedet.checkpoint import save_checkpoint
from squeezedet.inference import Detector
from squeezedet.inference.stream import VideoStream
from squeezedet.postprocess import Detections
from squeezedet.video import SourceOptions, StageTimes, run_stages

CLASSES = ("Car", "Pedestrian", "Cyclist")


def _stage_threads() -> list[threading.Thread]:
    names = {"decode", "detect", "track", "a", "b", "c", "slow"}
    return [t for t in threading.enumerate() if t.name in names and t.is_alive()]


def _jitter(fn: Any) -> Any:
    def stage(x: Any) -> Any:
        time.sleep(random.random() * 0.001)
        return fn(x)
    return stage


def test_order_is_kept_through_threaded_stages() -> None:
    random.seed(0)
    stages = [("a", _jitter(lambda x: x * 3)), ("b", _jitter(lambda x: x + 1)),
              ("c", _jitter(lambda x: (x, threading.current_thread().name)))]
    times = StageTimes()
    out = list(run_stages(range(300), stages, queue_size=2, times=times))
    assert [x for x, _ in out] == [3 * i + 1 for i in range(300)]
    assert {name for _, name in out} == {"c"}  # the last stage ran on its own thread
    assert times.counts == {"decode": 300, "a": 300, "b": 300, "c": 300}
    assert list(run_stages(range(5), stages[:2], threaded=False)) == [1, 4, 7, 10, 13]
    assert _stage_threads() == []


def test_an_error_in_a_stage_reaches_the_caller_and_stops_the_threads() -> None:
    def fail_at_5(x: int) -> int:
        if x == 5:
            raise ValueError("bad frame 5")
        return x

    got = []
    with pytest.raises(ValueError, match="bad frame 5"):
        for x in run_stages(range(100), [("a", fail_at_5), ("b", lambda x: x)]):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]
    time.sleep(0.2)
    assert _stage_threads() == []


def test_closing_early_stops_the_source_and_every_thread() -> None:
    closed = threading.Event()

    def endless() -> Any:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    results = run_stages(endless(), [("a", lambda x: x)], queue_size=3)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    results.close()  # type: ignore[attr-defined]
    assert closed.wait(2.0)
    assert _stage_threads() == []


def test_real_time_mode_drops_frames_behind_a_slow_stage() -> None:
    def camera() -> Any:
        for i in range(60):
            time.sleep(0.002)
            yield i

    times = StageTimes()
    out = list(run_stages(camera(), [("slow", lambda x: time.sleep(0.02) or x)], drop=True,
                          times=times))
    assert out == sorted(out) and len(set(out)) == len(out)
    assert times.dropped > 20  # 60 frames in ~0.12 s, the stage takes ~0.02 s a frame
    assert len(out) + times.dropped == 60
    assert out[-1] == 59  # the newest frame is never the one dropped
    slow = StageTimes()
    assert len(list(run_stages(camera(), [("slow", lambda x: x)], times=slow))) == 60
    assert slow.dropped == 0


# ------------------------------------------------------------------ Detector.stream


class FakeDetector:
    """One fixed detection per frame (fast); ``delay`` seconds per call."""

    class_names = CLASSES

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def detect_arrays(self, arrays: list[np.ndarray], sources: list[str | None],
                      keep_images: bool = True) -> list[Detections]:
        if self.delay:
            time.sleep(self.delay)
        return [Detections(torch.tensor([[1.0, 1.0, 5.0, 5.0]]), torch.tensor([0.9]),
                           torch.tensor([0]), CLASSES, a.shape[:2], s, a if keep_images else None)
                for a, s in zip(arrays, sources, strict=True)]


class StandInTracker:
    """The Tracker interface (update -> boxes, scores, labels, track_ids), ids = 1..N."""

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(boxes=boxes, scores=scores, labels=labels,
                               track_ids=np.arange(1, len(boxes) + 1, dtype=np.int64))


class CountingCapture:
    """A camera of ``n`` tiny frames made on demand, counting reads; ``interval`` s per read."""

    def __init__(self, n: int, interval: float = 0.0) -> None:
        self.n, self.reads, self.interval = n, 0, interval

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self) -> tuple[bool, Any]:
        if self.reads >= self.n:
            return False, None
        if self.interval:
            time.sleep(self.interval)
        self.reads += 1
        return True, np.full((8, 8, 3), self.reads % 256, np.uint8)

    def get(self, prop: int) -> float:
        return 30.0 if prop == 5 else 0.0

    def release(self) -> None:
        pass


def _camera(capture: CountingCapture) -> Any:
    return lambda target, params: capture


def test_stream_memory_stays_flat_over_2000_frames() -> None:
    capture = CountingCapture(2000)
    stream = VideoStream(FakeDetector(), 0, tracker=StandInTracker(), keep_images=False,
                             options=SourceOptions(reconnect=0), factory=_camera(capture))
    tracemalloc.start()
    try:
        for i, result in enumerate(stream):
            assert result.frame == i and result.track_ids.tolist() == [1]
            if i == 200:
                at_200 = tracemalloc.get_traced_memory()[0]
        at_end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert stream.frames == 2000 == capture.reads
    assert at_end - at_200 < 200_000, f"{at_end - at_200} bytes more after 1,800 more frames"


def test_stream_reads_ahead_only_as_far_as_its_queues() -> None:
    capture = CountingCapture(10_000)
    stream = VideoStream(FakeDetector(), 0, queue_size=2,
                             options=SourceOptions(reconnect=0), factory=_camera(capture))
    next(stream)
    time.sleep(0.3)  # the caller is slow: the threads fill their queues and wait
    # 1 taken + 2 queues of 2 + one frame in each thread's hands (decode, detect) + the slack
    # of a full queue's last put
    assert capture.reads <= 1 + 2 * 2 + 2 + 1
    stream.close()
    assert _stage_threads() == []


def test_realtime_stream_drops_frames_behind_a_slow_detector() -> None:
    capture = CountingCapture(100, interval=0.002)
    stream = VideoStream(FakeDetector(delay=0.02), 0, realtime=True,
                             options=SourceOptions(reconnect=0), factory=_camera(capture))
    frames = [r.frame for r in stream]
    assert stream.dropped > 30
    assert len(frames) + stream.dropped == 100
    # in order, each at most once; the last frame is never replaced (nothing comes after it), the
    # first may be when the detector's thread starts after the next frame is read
    assert frames == sorted(set(frames)) and frames[-1] == 99


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = squeezedet.create_model("squeezedet", input_size=(64, 32))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, path)
    return path


@pytest.mark.parametrize("threaded", [True, False])
def test_stream_gives_the_detectors_own_detections(tiny_checkpoint: Path, tmp_path: Path,
                                                   threaded: bool) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 90, 3), dtype=np.uint8) for _ in range(5)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i:06d}.png")
    detector = Detector.from_checkpoint(tiny_checkpoint, backend="torch", conf=0.0)
    expected = [detector(image) for image in images]
    results = list(detector.stream(str(tmp_path), threaded=threaded,
                                   options=SourceOptions(fps=5.0)))
    assert [(r.frame, r.name, r.timestamp) for r in results] == [
        (i, f"{i:06d}", pytest.approx(i / 5.0)) for i in range(5)]
    for r, e in zip(results, expected, strict=True):
        assert torch.equal(r.detections.boxes, e.boxes)
        assert torch.equal(r.detections.scores, e.scores)
        assert np.array_equal(r.detections.image, images[r.frame])
        assert r.tracks is None and r.track_ids is None


def test_a_stage_of_several_workers_keeps_the_order() -> None:
    random.seed(1)
    used: set[int] = set()

    def worker(k: int) -> Any:
        def fn(x: int) -> int:
            used.add(k)
            time.sleep(random.random() * 0.002)
            return 10 * x
        return fn

    times = StageTimes()
    out = list(run_stages(range(200), [("a", [worker(0), worker(1), worker(2)]),
                                       ("b", lambda x: x + 1)], queue_size=2, times=times))
    assert out == [10 * i + 1 for i in range(200)]
    assert used == {0, 1, 2} and times.counts["a"] == 200
    assert list(run_stages(range(3), [("a", [worker(5), worker(6)])], threaded=False)) == [0, 10, 20]
    assert used == {0, 1, 2, 5}  # sequential: the first function only
    time.sleep(0.2)
    assert [t for t in threading.enumerate() if t.name.startswith("a")] == []


def test_an_error_in_one_of_several_workers_reaches_the_caller_in_order() -> None:
    def fail_at_7(x: int) -> int:
        time.sleep(0.001)
        if x == 7:
            raise ValueError("bad frame 7")
        return x

    got = []
    with pytest.raises(ValueError, match="bad frame 7"):
        for x in run_stages(range(50), [("a", [fail_at_7, fail_at_7])]):
            got.append(x)
    assert got == list(range(7))
    time.sleep(0.2)
    assert [t for t in threading.enumerate() if t.name.startswith("a")] == []
