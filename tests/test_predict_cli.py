"""``squeezedet predict``: sources, outputs, a corrupt image in a folder, video, user errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import squeezedet
from squeezedet.checkpoint import save_checkpoint
from squeezedet.cli import main
from squeezedet.errors import SqueezeDetError
from squeezedet.eval.kitti import read_result_file
from squeezedet.inference.predict import resolve_source, unique_names


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 128x64 SqueezeDet whose ConvDet weights are all zero: every image then gives the same
    head, so the detections are known: confidence logit 2 for every anchor and class logits
    (0, 0, ln 4) make every score p(Cyclist) * sigmoid(2) = (4 / 6) * 0.880797 = 0.587198."""
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


#: eager PyTorch on the CPU (backend "auto" may convert to another runtime; not tested here)
CPU = ["--device", "cpu", "--backend", "torch"]

SCORE = (4.0 / 6.0) / (1.0 + np.exp(-2.0))


def _images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"{i:06d}.png"
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(path)
        paths.append(path)
    return paths


def test_folder_with_kitti_json_and_drawn_images(checkpoint: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "in", [(200, 60), (90, 120)])
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(checkpoint), "--source", str(tmp_path / "in"),
               "--out", str(out), "--save-kitti", "--save-json", "--batch-size", "2",
               "--no-progress", *CPU])
    assert rc == 0
    summary = capsys.readouterr().out
    assert "2 images;" in summary and "ms per image" in summary
    # every detection scores 0.587 >= 0.4 and is a Cyclist
    assert "Car 0, Pedestrian 0, Cyclist " in summary
    for stem, (w, h) in (("000000", (200, 60)), ("000001", (90, 120))):
        assert Image.open(out / f"{stem}.png").size == (w, h)
        objs = read_result_file(out / "kitti" / f"{stem}.txt")
        assert objs and {o.type for o in objs} == {"Cyclist"}
        assert all(o.score == pytest.approx(SCORE, abs=1e-6) for o in objs)
        assert all(0 <= o.box[0] <= o.box[2] <= w and 0 <= o.box[1] <= o.box[3] <= h
                   for o in objs)
        data = json.loads((out / "json" / f"{stem}.json").read_text())
        assert (data["width"], data["height"]) == (w, h)
        assert len(data["detections"]) == len(objs)
        assert data["image"].endswith(f"{stem}.png")


def test_a_corrupt_image_is_reported_and_skipped(checkpoint: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "in", [(64, 32), (64, 32)])
    (tmp_path / "in" / "000000b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(checkpoint), "--source", str(tmp_path / "in"),
               "--out", str(out), "--save-kitti", *CPU])
    assert rc == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "000000b.png" in warnings[0] and "skipped" in warnings[0]
    assert "2 images (1 skipped)" in captured.out
    assert sorted(p.name for p in (out / "kitti").iterdir()) == ["000000.txt", "000001.txt"]


def test_glob_list_and_single_image_sources(checkpoint: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    paths = _images(tmp_path / "in", [(64, 32), (64, 32), (64, 32)])
    assert resolve_source(str(tmp_path / "in" / "*.png")) == ("images", paths)
    listing = tmp_path / "in" / "list.txt"
    listing.write_text("# two of them\n000002.png\n\n" + str(paths[0]) + "\n")
    assert resolve_source(str(listing)) == ("images", [paths[2], paths[0]])
    assert resolve_source(str(paths[1])) == ("images", [paths[1]])
    assert unique_names([Path("a/x.png"), Path("b/x.png"), Path("y.png")]) == ["x", "x_2", "y"]
    rc = main(["predict", "--weights", str(checkpoint), "--source", str(listing),
               "--out", str(tmp_path / "out"), "--no-draw", "--save-json", *CPU])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out" / "json").iterdir()) == [
        "000000.json", "000002.json"]
    assert not list((tmp_path / "out").glob("*.png"))
    assert "2 images;" in capsys.readouterr().out


def test_save_conf_and_conf_thresholds(checkpoint: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "in", [(64, 32)])
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(checkpoint), "--source", str(tmp_path / "in"),
               "--out", str(out), "--save-kitti", "--conf", "0.6", "--save-conf", "0.6",
               *CPU])
    assert rc == 0
    # 0.587 < 0.6: nothing drawn or counted, and nothing written
    assert "0 detections ≥ 0.60" in capsys.readouterr().out
    assert read_result_file(out / "kitti" / "000000.txt") == []
    assert np.array_equal(np.asarray(Image.open(out / "000000.png")),
                          np.asarray(Image.open(tmp_path / "in" / "000000.png")))


def test_user_errors_are_one_line(checkpoint: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--weights", str(checkpoint), "--source", str(tmp_path / "nope")], "no such file"),
        (["--weights", str(tmp_path / "nope.pt"), "--source", str(checkpoint)], "not found"),
        (["--weights", str(checkpoint), "--source", str(tmp_path / "*.jpg")], "matches no image"),
    ]
    for extra, message in cases:
        assert main(["predict", *extra, "--out", str(tmp_path / "o"), *CPU]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SqueezeDetError, match="no image files"):
        resolve_source(str(tmp_path / "empty"))


def test_video_without_opencv_names_the_extra(checkpoint: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` fail
    rc = main(["predict", "--weights", str(checkpoint), "--source", str(video),
               "--out", str(tmp_path / "o"), *CPU])
    assert rc == 2
    assert "squeezedet[video]" in capsys.readouterr().err


def test_video_is_drawn_frame_by_frame(checkpoint: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 48))
    for i in range(5):
        writer.write(np.full((48, 96, 3), 30 * i, np.uint8))
    writer.release()
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(checkpoint), "--source", str(video), "--out", str(out),
               "--save-kitti", "--batch-size", "2", "--no-progress", *CPU])
    assert rc == 0
    assert "5 frames;" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "kitti").iterdir()) == [
        f"clip_{i:06d}.txt" for i in range(5)]
    capture = cv2.VideoCapture(str(out / "clip.avi"))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (48, 96, 3)
        frames += 1
    capture.release()
    assert frames == 5


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = capsys.readouterr().out
    assert "Examples:" in text and "--save-kitti" in text and "--backend" in text


def test_nms_iou_outside_0_1_is_a_one_line_usage_error(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--weights", str(checkpoint), "--source", str(tmp_path),
              "--nms-iou", "1.5"])
    assert exit_.value.code == 2
    assert "argument --nms-iou: '1.5' is not an IoU between 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize("count, expected", [(2, "torch"), (64, "auto")])
def test_auto_backend_converts_a_checkpoint_only_for_many_images(
        checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int,
        expected: str) -> None:
    from squeezedet.inference import Detector, predict

    assert predict.AUTO_CONVERT_MIN_IMAGES == 64
    chosen = []

    def record(path, device="cpu", backend="auto", **kwargs):
        chosen.append(backend)
        raise SqueezeDetError("stop here")

    monkeypatch.setattr(Detector, "from_checkpoint", staticmethod(record))
    (tmp_path / "in").mkdir()
    for i in range(count):
        Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "in" / f"{i}.png")
    assert main(["predict", "--weights", str(checkpoint), "--source", str(tmp_path / "in"),
                 "--out", str(tmp_path / "out"), "--no-progress", "--device", "cpu"]) != 0
    assert chosen == [expected]


def test_predict_post_processes_as_the_checkpoints_run_validated(
        checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint whose run validated with ``top_k=1`` and ``tta=hflip`` is predicted so (every
    anchor scores the same here, so ``top_k=1`` leaves one box a view); ``--tta`` and
    ``--nms-iou`` override."""
    from squeezedet.checkpoint import load_checkpoint, validation_postprocess
    from squeezedet.inference.detector import Detector

    ckpt = load_checkpoint(checkpoint)
    ckpt["config"] = {"top_k": 1, "nms_iou": 0.5, "tta": "hflip", "lr": 0.1}
    weights = tmp_path / "small.pt"
    save_checkpoint(ckpt, weights)
    assert validation_postprocess(weights) == {"top_k": 1, "nms_iou": 0.5, "tta": "hflip"}
    assert validation_postprocess(checkpoint) == {}  # recorded no configuration
    made: list[Detector] = []
    real = Detector.from_checkpoint.__func__  # type: ignore[attr-defined]

    def record(cls: type[Detector], *a: Any, **kw: Any) -> Detector:
        made.append(real(cls, *a, **kw))
        return made[-1]

    monkeypatch.setattr(Detector, "from_checkpoint", classmethod(record))
    _images(tmp_path / "in", [(128, 64)])
    counts = []
    for extra in ([], ["--tta", "none"], ["--nms-iou", "0.3"]):
        out = tmp_path / f"out{len(counts)}"
        assert main(["predict", "--weights", str(weights), "--source", str(tmp_path / "in"),
                     "--out", str(out), "--save-kitti", "--no-progress", *extra, *CPU]) == 0
        counts.append(len(read_result_file(out / "kitti" / "000000.txt")))
    assert [len(d.views) for d in made] == [2, 1, 2]  # hflip: the image and its mirror
    assert [(d.postprocess.top_k, d.postprocess.nms_iou) for d in made] == [(1, 0.5), (1, 0.5),
                                                                            (1, 0.3)]
    # the Python API alike: the run's settings unless given
    api = Detector.from_checkpoint(weights, top_k=3)
    assert (api.postprocess.top_k, api.postprocess.nms_iou, len(api.views)) == (3, 0.5, 2)
    assert counts[1] == 1 and counts[0] in (1, 2)  # the mirrored view's one box may be merged
