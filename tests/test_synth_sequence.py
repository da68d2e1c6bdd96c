"""Synthetic sequences (`squeezedet synth --sequence`): deterministic, objects in continuous motion
that enter, leave and hide each other, ground-truth track ids in KITTI tracking's layout."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from squeezedet.cli import main
from squeezedet.data.kitti_tracking import TrackedObject, read_tracking_file, write_tracking_file
from squeezedet.data.synth import SceneMix
from squeezedet.data.synth.sequence import FPS, SPEEDS, SequenceWorld, frames, truncation_level
from squeezedet.data.synth.sequence_files import generate_sequences, sequence_paths
from squeezedet.errors import SqueezeDetError

SIZE = (320, 96)


def _digest(seq: list) -> list[tuple[str, list[str]]]:
    return [(hashlib.md5(img.tobytes()).hexdigest(), [t.to_line() for t in labels])
            for img, labels in seq]


def test_same_seed_same_sequence_and_prefixes() -> None:
    a = _digest(list(frames(3, 0, 8, SIZE)))
    assert a == _digest(list(frames(3, 0, 8, SIZE)))
    assert a[:4] == _digest(list(frames(3, 0, 4, SIZE)))  # 4 frames are the first 4 of 8
    assert a != _digest(list(frames(4, 0, 8, SIZE)))
    assert a != _digest(list(frames(3, 1, 8, SIZE)))  # another sequence of the same seed


@dataclass
class Drawn:
    rows: list[TrackedObject]  # the labels of every frame
    first_new_id: int  # ids from here on belong to objects that entered after the start
    alive_at_end: set[int]  # ids of the objects still in the street on the last frame


@pytest.fixture(scope="module")
def long_sequences() -> list[Drawn]:
    """Three 60-frame sequences with twice the usual traffic, drawn as :func:`frames` draws
    them, with what the world knows besides the labels."""
    out = []
    for index in range(3):
        world = SequenceWorld(np.random.default_rng([0, index, 2]), (384, 116), SceneMix(2.0))
        first_new_id, rows = world.next_id, []
        for f in range(60):
            if f:
                world.step()
            rows += [replace(t, frame=f) for t in world.render()[1]]
        out.append(Drawn(rows, first_new_id, {m.track_id for m in world.movers}))
    return out


def test_motion_is_continuous_and_ids_name_one_object(long_sequences) -> None:
    fastest = max(hi for _, hi in SPEEDS.values()) / FPS  # metres a frame
    for drawn in long_sequences:
        rows = drawn.rows
        per_frame: dict[int, list[int]] = defaultdict(list)
        tracks: dict[int, list[TrackedObject]] = defaultdict(list)
        for r in rows:
            if r.track_id >= 0:
                per_frame[r.frame].append(r.track_id)
                tracks[r.track_id].append(r)
        assert all(len(ids) == len(set(ids)) for ids in per_frame.values())
        for seen in tracks.values():
            assert len({(r.object.type, r.object.dimensions) for r in seen}) == 1
            for a, b in zip(seen, seen[1:], strict=False):
                gap = b.frame - a.frame
                dx = b.object.location[0] - a.object.location[0]
                dz = b.object.location[2] - a.object.location[2]
                assert math.hypot(dx, dz) <= fastest * gap + 1e-9


def test_objects_enter_leave_and_hide_each_other(long_sequences) -> None:
    entered = left = occluded = 0
    classes = set()
    for drawn in long_sequences:
        seen = {r.track_id for r in drawn.rows if r.track_id >= 0}
        entered += sum(i >= drawn.first_new_id for i in seen)  # came into view after the start
        left += len(seen - drawn.alive_at_end)  # seen, then gone from the street
        for r in drawn.rows:
            if r.track_id >= 0:
                classes.add(r.object.type)
                occluded += r.object.occluded >= 1
    assert entered >= 3 and left >= 3 and occluded >= 10
    assert classes == {"Car", "Pedestrian", "Cyclist"}


def test_labels_follow_kitti_tracking(long_sequences) -> None:
    rows = [r for drawn in long_sequences for r in drawn.rows]
    assert {r.object.truncated for r in rows if r.track_id >= 0} <= {0.0, 1.0, 2.0}
    assert all(r.track_id == -1 for r in rows if r.object.type == "DontCare")
    assert (truncation_level(0.0), truncation_level(0.149), truncation_level(0.15),
            truncation_level(0.49), truncation_level(0.5), truncation_level(1.0)) == (0, 0, 1, 1, 2, 2)


def test_generate_sequences_layout_and_reuse(tmp_path: Path) -> None:
    out = tmp_path / "seqs"
    generate_sequences(out, 2, 5, seed=1, size=(160, 64), progress=False)
    for index in range(2):
        image_dir, label_file = sequence_paths(out, index)
        assert sorted(p.name for p in image_dir.iterdir()) == [f"{f:06d}.png" for f in range(5)]
        assert all(r.frame < 5 for r in read_tracking_file(label_file))
    assert (out / "training" / "label_02" / "0001.txt").is_file()
    stamp = (out / "training" / "label_02" / "0000.txt").stat().st_mtime_ns
    generate_sequences(out, 2, 5, seed=1, size=(160, 64), progress=False)  # already there
    assert (out / "training" / "label_02" / "0000.txt").stat().st_mtime_ns == stamp
    with pytest.raises(SqueezeDetError, match="already holds other files"):
        generate_sequences(out, 2, 5, seed=2, size=(160, 64), progress=False)
    with pytest.raises(SqueezeDetError, match="number of frames"):
        generate_sequences(tmp_path / "x", 1, 0, seed=1, progress=False)


def test_synth_sequence_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmd"
    assert main(["synth", "--sequence", "--out", str(out), "--sequences", "1", "--frames", "3",
                 "--size", "160x64", "--quiet"]) == 0
    assert len(list((out / "training" / "image_02" / "0000").glob("*.png"))) == 3
    assert main(["synth", "--out", str(tmp_path / "bad"), "--frames", "3"]) == 2
    assert "--frames and --sequences go with --sequence" in capsys.readouterr().err


trackeval = pytest.importorskip("trackeval", reason="TrackEval is not installed")


def test_ground_truth_and_tracker_on_sequences(tmp_path: Path, long_sequences) -> None:
    from squeezedet.eval.tracking import evaluate_tracking
    from squeezedet.tracking import Tracker

    gt = {f"{i:04d}": drawn.rows for i, drawn in enumerate(long_sequences)}
    # the ground truth as results scores perfectly
    perfect = evaluate_tracking(gt, gt).metrics
    for cls in ("Car", "Pedestrian"):
        assert (perfect[cls]["HOTA"], perfect[cls]["MOTA"], perfect[cls]["IDSW"]) == \
            (pytest.approx(1), pytest.approx(1), 0)
    # the Tracker fed the ground-truth boxes (without their ids) keeps most identities: each object
    # is missed on its first frame (birth needs two), a hidden one may be lost or its id taken
    # over by a newcomer where it left
    names = ["Car", "Pedestrian", "Cyclist"]
    results = {}
    for seq, rows_all in gt.items():
        tracker, results[seq] = Tracker(frame_rate=FPS), []
        for f in range(60):
            rows = [r for r in rows_all if r.frame == f and r.track_id >= 0]
            boxes = np.array([r.object.box for r in rows], dtype=np.float32).reshape(-1, 4)
            labels = np.array([names.index(r.object.type) for r in rows], dtype=np.int64)
            t = tracker.update(boxes, np.full(len(rows), 0.9), labels)
            for i, label, det in zip(t.track_ids, t.labels, t.detection_index, strict=True):
                assert names[label] == rows[det].object.type
                results[seq].append(TrackedObject(f, int(i), rows[det].object))
        write_tracking_file(tmp_path / f"{seq}.txt", results[seq])
    read = {seq: read_tracking_file(tmp_path / f"{seq}.txt") for seq in gt}
    metrics = evaluate_tracking(gt, read).metrics
    for cls in ("Car", "Pedestrian"):
        assert metrics[cls]["MOTA"] > 0.9 and metrics[cls]["IDF1"] > 0.8, (cls, metrics[cls])
