"""``squeezedet track`` and ``predict --track``: the KITTI tracking and MOTChallenge files line by
line for two squares moving across a folder of frames, the drawn video, a truncated video, bad
sources, and Ctrl-C (SIGINT to a subprocess) leaving every output complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import squeezedet
from squeezedet.checkpoint import save_checkpoint
from squeezedet.cli import main
from squeezedet.data.kitti_tracking import read_tracking_file
from squeezedet.inference.track import TrackOptions, track
from squeezedet.postprocess import Detections
from squeezedet.video.paint import track_colour

CLASSES = ("Car", "Pedestrian", "Cyclist")
RED, GREEN = (255, 0, 0), (0, 255, 0)


def _squares(frame: int) -> list[tuple[tuple[int, int, int], tuple[int, int, int, int]]]:
    """Frame ``frame``: a red square moving right 5 px a frame, a green one moving left."""
    return [(RED, (10 + 5 * frame, 20, 30 + 5 * frame, 40)),
            (GREEN, (130 - 5 * frame, 45, 150 - 5 * frame, 70))]


def _folder(path: Path, n: int) -> Path:
    path.mkdir(parents=True)
    for f in range(n):
        image = np.zeros((80, 160, 3), np.uint8)
        for colour, (x1, y1, x2, y2) in _squares(f):
            image[y1:y2, x1:x2] = colour
        Image.fromarray(image).save(path / f"{f:06d}.png")
    return path


class SquareDetector:
    """Finds the pure red square (a Car, score 0.9) and the pure green one (a Cyclist, 0.8)."""

    class_names = CLASSES

    def detect_arrays(self, arrays: list[np.ndarray], sources: list[str | None],
                      keep_images: bool = True) -> list[Detections]:
        out = []
        for a, s in zip(arrays, sources, strict=True):
            boxes, scores, labels = [], [], []
            for colour, score, label in ((RED, 0.9, 0), (GREEN, 0.8, 2)):
                ys, xs = np.nonzero(np.all(a == colour, axis=2))
                if len(xs):
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                    scores.append(score)
                    labels.append(label)
            out.append(Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                  torch.tensor(scores), torch.tensor(labels, dtype=torch.int64),
                                  CLASSES, a.shape[:2], s, a if keep_images else None))
        return out


def test_two_squares_tracked_into_kitti_mot_and_video(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    import cv2

    seq = _folder(tmp_path / "image_02" / "0007", 12)
    result = track("unused.pt", str(seq), tmp_path / "out", TrackOptions(no_progress=True),
                   detector=SquareDetector())
    assert (result.sequence, result.frames, result.track_ids) == ("0007", 12, {1, 2})
    kitti = (tmp_path / "out" / "kitti_tracking" / "0007.txt").read_text().splitlines()
    mot = (tmp_path / "out" / "mot" / "0007.txt").read_text().splitlines()
    assert len(kitti) == len(mot) == 24
    red_id = int(kitti[0].split()[1]) if kitti[0].split()[2] == "Car" else int(kitti[1].split()[1])
    green_id = 3 - red_id
    for f in range(12):
        (r1, r2, r3, r4), (g1, g2, g3, g4) = (box for _, box in _squares(f))
        assert f"{f} {red_id} Car -1.00 -1 -10.00 {r1}.00 {r2}.00 {r3}.00 {r4}.00 -1.00 -1.00 " \
               f"-1.00 -1000.00 -1000.00 -1000.00 -10.00 0.900000" in kitti
        assert f"{f} {green_id} Cyclist -1.00 -1 -10.00 {g1}.00 {g2}.00 {g3}.00 {g4}.00 -1.00 " \
               f"-1.00 -1.00 -1000.00 -1000.00 -1000.00 -10.00 0.800000" in kitti
        assert f"{f + 1},{red_id},{r1}.00,{r2}.00,20.00,20.00,0.9000,-1,-1,-1" in mot
        assert f"{f + 1},{green_id},{g1}.00,{g2}.00,20.00,25.00,0.8000,-1,-1,-1" in mot
    objects = read_tracking_file(tmp_path / "out" / "kitti_tracking" / "0007.txt")  # evaluate's reader
    assert [(o.frame, o.track_id, o.object.box) for o in objects if o.object.type == "Car"] == [
        (f, red_id, tuple(float(v) for v in _squares(f)[0][1])) for f in range(12)]
    capture = cv2.VideoCapture(str(tmp_path / "out" / "0007.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 12 and frames[0].shape == (80, 160, 3)
    # the red square's track outline (top edge, middle) in its id's colour, not the square's
    b, g, r = frames[6][20, 50].astype(int)
    assert np.abs(np.array([r, g, b]) - np.array(track_colour(red_id))).max() < 60


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 128x64 SqueezeDet whose ConvDet weights are zero: every anchor scores
    p(Cyclist) * sigmoid(2) = (4 / 6) * 0.8808 = 0.587 with its own box (test_predict_cli's)."""
    model = squeezedet.create_model("squeezedet", input_size=(128, 64))
    k, c = model.num_anchors, model.num_classes
    with torch.no_grad():
        model.convdet.weight.zero_()
        bias = torch.zeros(k * (c + 5))
        bias[torch.arange(k) * c + 2] = float(np.log(4.0))
        bias[k * c: k * c + k] = 2.0
        model.convdet.bias.copy_(bias)
    path = tmp_path_factory.mktemp("ckpt") / "zero.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, path)
    return path


CPU = ["--backend", "torch", "--device", "cpu", "--no-progress", "--new-track", "0.5"]


def _write_avi(path: Path, n: int) -> Path:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 48))
    for i in range(n):
        writer.write(np.full((48, 96, 3), (7 * i) % 256, np.uint8))
    writer.release()
    return path


def _lines_are_whole(path: Path, fields: int, sep: str | None) -> list[list[str]]:
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    rows = [line.split(sep) for line in text.splitlines()]
    assert all(len(row) == fields for row in rows)
    return rows


def test_track_command_on_a_static_scene(checkpoint: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    video = _write_avi(tmp_path / "clip.avi", 6)
    rc = main(["track", str(video), "--weights", str(checkpoint), "--out", str(tmp_path / "o"),
               *CPU])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("clip: 6 frames in ") and "FPS (pipelined; per frame: decode" in out
    rows = _lines_are_whole(tmp_path / "o" / "kitti_tracking" / "clip.txt", 18, None)
    ids_by_frame = [{r[1] for r in rows if r[0] == str(f)} for f in range(6)]
    assert ids_by_frame[0] and all(ids == ids_by_frame[0] for ids in ids_by_frame)  # nothing moves
    assert all(r[2] == "Cyclist" and r[-1] == "0.587198" for r in rows)
    assert len(_lines_are_whole(tmp_path / "o" / "mot" / "clip.txt", 10, ",")) == len(rows)
    rc = main(["predict", "--source", str(video), "--weights", str(checkpoint), "--track",
               "--out", str(tmp_path / "p"), "--sequential", "--no-draw", *CPU])
    assert rc == 0 and "(sequential; per frame" in capsys.readouterr().out
    assert (tmp_path / "p" / "mot" / "clip.txt").read_text() == \
        (tmp_path / "o" / "mot" / "clip.txt").read_text()
    assert not (tmp_path / "p" / "clip.mp4").exists()
    rc = main(["track", str(video), "--weights", str(checkpoint), "--out", str(tmp_path / "w"),
               "--workers", "2", "--no-draw", *CPU])
    assert rc == 0 and "(pipelined, 2 detectors; per frame" in capsys.readouterr().out
    assert (tmp_path / "w" / "mot" / "clip.txt").read_text() == \
        (tmp_path / "o" / "mot" / "clip.txt").read_text()


def test_truncated_video_keeps_the_frames_before_the_cut(checkpoint: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    video = _write_avi(tmp_path / "cut.avi", 40)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    rc = main(["track", str(video), "--weights", str(checkpoint), "--out", str(tmp_path / "o"),
               *CPU])
    captured = capsys.readouterr()
    assert rc == 0
    assert "of the 40 frames its header announces (truncated or corrupt)" in captured.err
    frames = int(captured.out.split("cut: ")[1].split(" frames")[0])
    assert 5 <= frames < 40
    rows = _lines_are_whole(tmp_path / "o" / "mot" / "cut.txt", 10, ",")
    assert max(int(r[0]) for r in rows) == frames  # MOT frames count from 1


@pytest.mark.parametrize("source", ["missing.mp4", "7"])
def test_bad_sources_are_one_line_errors(checkpoint: Path, tmp_path: Path, source: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cv2")
    rc = main(["track", source, "--weights", str(checkpoint), "--out", str(tmp_path / "o"),
               "--open-timeout", "2", *CPU])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("squeezedet track: error: ")
    assert source in err[-1] and "Traceback" not in "\n".join(err)


def test_ctrl_c_leaves_every_output_complete(checkpoint: Path, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    # long enough that the run is still going when the signal comes, even on a loaded machine
    # (about 1 s to write; the run is interrupted long before its end)
    video = _write_avi(tmp_path / "long.avi", 20_000)
    out = tmp_path / "o"
    env = {**os.environ, "PYTHONPATH": str(Path(squeezedet.__file__).parents[1]),
           "OMP_NUM_THREADS": "1"}
    # the child gets Python's Ctrl-C handler even where this process inherited SIGINT ignored
    # (a shell's background job): a child starting with it ignored keeps it ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "squeezedet", "track", str(video), "--weights", str(checkpoint),
             "--out", str(out), *CPU], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    mot = out / "mot" / "long.txt"
    deadline = time.monotonic() + 60
    while (not mot.exists() or mot.stat().st_size < 2000) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted after" in stderr and "Traceback" not in stderr
    frames = int(stdout.split("long: ")[1].split(" frames")[0])
    assert 0 < frames < 20_000
    mot_rows = _lines_are_whole(mot, 10, ",")
    kitti_rows = _lines_are_whole(out / "kitti_tracking" / "long.txt", 18, None)
    assert max(int(r[0]) for r in mot_rows) == frames
    assert max(int(r[0]) for r in kitti_rows) == frames - 1
    capture = cv2.VideoCapture(str(out / "long.mp4"))  # finalised: it opens and plays through
    assert capture.isOpened()
    count = 0
    while capture.read()[0]:
        count += 1
    assert frames <= count <= frames + 12  # frames drawn but not yet written to the text files


def test_tracking_keeps_the_checkpoints_candidates_and_nms_but_not_its_flips(
        checkpoint: Path, tmp_path: Path) -> None:
    """A run that validated with ``top_k=1, nms_iou=0.5, tta=hflip`` is tracked with its top 1
    and NMS 0.5, in one view a frame (flips would cost a forward pass each)."""
    from squeezedet.checkpoint import load_checkpoint
    from squeezedet.inference.track import _detectors

    ckpt = load_checkpoint(checkpoint)
    ckpt["config"] = {"top_k": 1, "nms_iou": 0.5, "tta": "hflip"}
    save_checkpoint(ckpt, tmp_path / "small.pt")
    for weights, top_k, nms in ((tmp_path / "small.pt", 1, 0.5), (checkpoint, 64, 0.4)):
        (det,) = _detectors(weights, TrackOptions(backend="torch", device="cpu"), 0.1)
        assert (det.postprocess.top_k, det.postprocess.nms_iou) == (top_k, nms)
        assert det.views == ((False, False),) and det.conf == 0.1
