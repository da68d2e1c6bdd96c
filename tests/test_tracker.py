"""The ByteTrack-style Tracker on hand-made trajectories: crossing, occlusion gaps, birth, death, the
low-score second pass, classes; its Kalman filter against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from squeezedet.errors import SqueezeDetError
from squeezedet.tracking import Tracker, TrackerConfig, Tracks, kalman
from squeezedet.tracking.tracker import iou_matrix

CAR, PED = 0, 1


def box(x: float, y: float, w: float = 40.0, h: float = 40.0) -> list[float]:
    return [x, y, x + w, y + h]


def run(tracker: Tracker, frames: list[list[tuple[list[float], float, int]]]) -> list[Tracks]:
    """Feed frames of (box, score, label) detections; return the tracker's output per frame."""
    out = []
    for dets in frames:
        boxes = np.array([d[0] for d in dets], dtype=np.float32).reshape(-1, 4)
        scores = np.array([d[1] for d in dets], dtype=np.float32)
        labels = np.array([d[2] for d in dets], dtype=np.int64)
        out.append(tracker.update(boxes, scores, labels))
    return out


def id_of(tracks: Tracks, det_row: int) -> int | None:
    """The track id given to the detection in row ``det_row`` of its frame, or None."""
    hit = np.flatnonzero(tracks.detection_index == det_row)
    return int(tracks.track_ids[hit[0]]) if len(hit) else None


def test_two_objects_crossing_keep_their_ids() -> None:
    # A moves right, B moves left on nearly the same row, 16 px a frame, 40 px wide: they overlap
    # for five frames and pass through each other (frame 6: same x, 4 px apart in y). The rows are
    # swapped every other frame so that the detection order carries no identity.
    frames = []
    for f in range(14):
        a = (box(10 + 16 * f, 100), 0.9, CAR)
        b = (box(202 - 16 * f, 104), 0.85, CAR)
        frames.append([a, b] if f % 2 == 0 else [b, a])
    out = run(Tracker(), frames)
    ids_a = {id_of(t, 0 if f % 2 == 0 else 1) for f, t in enumerate(out)}
    ids_b = {id_of(t, 1 if f % 2 == 0 else 0) for f, t in enumerate(out)}
    assert ids_a == {1} and ids_b == {2}


def test_occlusion_gap_rejoins_the_same_id() -> None:
    # one car at 12 px a frame, unseen on frames 6, 7 and 8 (hidden), seen again where it went on
    frames = [[(box(20 + 12 * f, 80), 0.9, CAR)] if f not in (6, 7, 8) else [] for f in range(14)]
    out = run(Tracker(TrackerConfig(max_lost_seconds=0.5), frame_rate=10), frames)  # 5 frames
    assert [len(t) for t in out] == [1] * 6 + [0] * 3 + [1] * 5
    assert {int(t.track_ids[0]) for t in out if len(t)} == {1}


def test_motion_carries_a_track_through_a_gap_where_standing_still_would_not() -> None:
    # 16 px a frame, 40 px wide: after a 3-frame gap the car is 64 px from where it was last seen
    # (no overlap at all), so only the Kalman filter's velocity can re-join it
    frames = [[(box(20 + 16 * f, 80), 0.9, CAR)] if f not in (5, 6, 7) else [] for f in range(12)]
    out = run(Tracker(), frames)
    assert [list(t.track_ids) for t in out] == [[1]] * 5 + [[]] * 3 + [[1]] * 4


def test_birth_needs_min_hits_frames_and_ids_are_consecutive() -> None:
    still = (box(300, 50), 0.9, CAR)
    frames: list[list[tuple[list[float], float, int]]] = [[still], [still]]
    frames.append([still, (box(40, 200), 0.9, PED)])  # frame 2: a one-frame false alarm
    for f in range(3, 7):
        frames.append([still, (box(100 + 5 * f, 120), 0.9, CAR)])  # a car entering on frame 3
    out = run(Tracker(TrackerConfig(min_hits=3)), frames)
    assert [list(t.track_ids) for t in out] == [[1], [1], [1], [1], [1], [1, 2], [1, 2]]
    out2 = run(Tracker(TrackerConfig(min_hits=2)), frames)
    assert [list(t.track_ids) for t in out2] == [[1], [1], [1], [1], [1, 2], [1, 2], [1, 2]]


def test_first_frame_objects_are_confirmed_at_once() -> None:
    out = run(Tracker(TrackerConfig(min_hits=3)), [[(box(0, 0), 0.9, CAR), (box(100, 0), 0.9, PED)]])
    assert list(out[0].track_ids) == [1, 2]
    assert list(out[0].labels) == [CAR, PED]


def test_death_after_max_lost_frames() -> None:
    car = (box(200, 60), 0.9, CAR)
    tracker = Tracker(TrackerConfig(max_lost_seconds=0.3), frame_rate=10)  # 3 frames
    assert tracker.max_lost_frames == 3
    # seen on 0-1, missing on 2, 3, 4 (3 frames: still held), back on 5 -> same id
    out = run(tracker, [[car], [car], [], [], [], [car]])
    assert len(tracker) == 1 and list(out[-1].track_ids) == [1]
    # missing on 6..9 (4 frames): dropped after the 4th; back on 10 -> a new object, new id
    out = run(tracker, [[], [], [], []])
    assert len(tracker) == 0
    out = run(tracker, [[car], [car]])
    assert list(out[-1].track_ids) == [2]


def test_low_score_second_pass_keeps_a_fading_track() -> None:
    # the car's score drops to 0.3 while it is half hidden (frames 3-5), then recovers
    scores = [0.9, 0.9, 0.9, 0.3, 0.3, 0.3, 0.9, 0.9]
    frames = [[(box(50 + 8 * f, 80), s, CAR)] for f, s in enumerate(scores)]
    out = run(Tracker(), frames)
    assert [list(t.track_ids) for t in out] == [[1]] * 8
    # without the second pass (low detections ignored), frames 3-5 report nothing
    out = run(Tracker(TrackerConfig(low_threshold=0.5)), frames)
    assert [list(t.track_ids) for t in out] == [[1]] * 3 + [[]] * 3 + [[1]] * 2


def test_low_score_detections_start_no_track() -> None:
    frames = [[(box(50, 80), 0.4, CAR)]] * 5
    out = run(Tracker(), frames)
    assert all(len(t) == 0 for t in out)
    # nor does a detection above high_threshold but below new_track_threshold
    out = run(Tracker(), [[(box(50, 80), 0.55, CAR)]] * 5)
    assert all(len(t) == 0 for t in out)


def test_class_aware_matching() -> None:
    # a pedestrian appears exactly where the car was; class-aware: the car's id is not given to it
    frames = [[(box(50, 80), 0.9, CAR)]] * 3 + [[(box(50, 80), 0.9, PED)]] * 3
    out = run(Tracker(), frames)
    assert [list(t.track_ids) for t in out] == [[1], [1], [1], [], [2], [2]]
    out = run(Tracker(TrackerConfig(class_aware=False)), frames)
    assert [list(t.track_ids) for t in out] == [[1]] * 6
    assert list(out[-1].labels) == [PED]


def test_outputs_and_reset() -> None:
    tracker = Tracker()
    boxes = np.array([box(10, 10), box(100, 10)], dtype=np.float32)
    t = tracker.update(boxes, np.array([0.9, 0.7]), np.array([1, 2]))
    assert t.boxes.shape == (2, 4) and t.boxes.dtype == np.float32
    np.testing.assert_array_equal(t.boxes, boxes)
    np.testing.assert_allclose(t.scores, [0.9, 0.7], rtol=1e-6)
    assert t.track_ids.dtype == np.int64 and list(t.track_ids) == [1, 2]
    empty = tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))
    assert empty.boxes.shape == (0, 4) and len(empty) == 0
    tracker.reset()
    assert len(tracker) == 0
    t = tracker.update(boxes[1:], np.array([0.9]), np.array([2]))
    assert list(t.track_ids) == [1]


@pytest.mark.parametrize("kwargs, needle", [
    ({"high_threshold": 1.5}, "high_threshold must be between 0 and 1"),
    ({"low_threshold": 0.7, "high_threshold": 0.5}, "low_threshold (0.7) must not exceed"),
    ({"min_hits": 0}, "min_hits must be an integer >= 1"),
    ({"max_lost_seconds": -1.0}, "max_lost_seconds must be >= 0"),
    ({"match_iou": float("nan")}, "match_iou must be a finite number"),
])
def test_config_errors_are_one_line(kwargs: dict, needle: str) -> None:
    with pytest.raises(SqueezeDetError) as info:
        TrackerConfig(**kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_detections_are_one_line_errors() -> None:
    tracker = Tracker()
    with pytest.raises(SqueezeDetError, match=r"shape \(N, 4\)"):
        tracker.update(np.zeros((2, 3)), np.zeros(2), np.zeros(2))
    with pytest.raises(SqueezeDetError, match="2 boxes, 1 scores and 2 labels"):
        tracker.update(np.zeros((2, 4)), np.zeros(1), np.zeros(2))
    with pytest.raises(SqueezeDetError, match="finite"):
        tracker.update(np.full((1, 4), np.nan), np.ones(1), np.zeros(1))
    with pytest.raises(SqueezeDetError, match="frame_rate"):
        Tracker(frame_rate=0)


def test_iou_matrix_by_hand() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]])
    # 5x5 = 25 shared, union 100 + 100 - 25 = 175
    np.testing.assert_allclose(iou_matrix(a, b), [[25 / 175, 0.0, 1.0]])


def test_kalman_by_hand() -> None:
    mean, cov = kalman.initiate(kalman.xyxy_to_xyah(np.array([[80, 50, 120, 150]])))
    # centre (100, 100), aspect 40/100, height 100, zero velocity
    np.testing.assert_allclose(mean[0], [100, 100, 0.4, 100, 0, 0, 0, 0])
    # initial standard deviations: 2/20 * h = 10 px for the position, 10/160 * h = 6.25 px/frame
    np.testing.assert_allclose(np.diag(cov[0])[[0, 1, 3, 4]], [100, 100, 100, 6.25 ** 2])
    pmean, pcov = kalman.predict(mean, cov)
    np.testing.assert_allclose(pmean, mean)  # no velocity yet: stays in place
    # variance of x after one frame: var(x) + var(vx) + process noise (h/20)^2 = 100 + 39.0625 + 25
    assert pcov[0, 0, 0] == pytest.approx(100 + 39.0625 + 25)
    # a measurement 10 px to the right: innovation variance S = 164.0625 + (h/20)^2 = 189.0625;
    # x moves by 164.0625 / S * 10, its velocity by cov(x, vx) / S * 10 = 39.0625 / S * 10
    umean, _ = kalman.update(pmean, pcov, np.array([[110, 100, 0.4, 100]]))
    assert umean[0, 0] == pytest.approx(100 + 164.0625 / 189.0625 * 10)
    assert umean[0, 4] == pytest.approx(39.0625 / 189.0625 * 10)
    assert umean[0, 1] == pytest.approx(100) and umean[0, 5] == pytest.approx(0)
    np.testing.assert_allclose(kalman.xyah_to_xyxy(kalman.xyxy_to_xyah(np.array([[1, 2, 5, 10]]))),
                               [[1, 2, 5, 10]])
