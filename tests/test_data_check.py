"""The data check before training, user errors from worker processes, output-path checks."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from own_data import WRITERS, expected
from PIL import Image
from test_bad_input import _unusual_kitti, garbled_png, kitti_line, truncated_png
from tiny_data import make_tiny_kitti

import squeezedet.cli as cli
from squeezedet.config import TrainConfig
from squeezedet.data.box_fitting import CLIPPED_AWAY, OUTSIDE, ZERO_AREA, fit_boxes_to_image
from squeezedet.data.check import DataCheckError, inspect_image, open_checked
from squeezedet.data.formats import load_source
from squeezedet.data.images import load_image
from squeezedet.errors import (
    DataError,
    SqueezeDetError,
    check_output_dir,
    check_output_file,
    user_error,
)

SMALL = ["--input-size", "64x32", "--batch-size", "2", "--steps", "1", "--quiet"]

# ------------------------------------------------------------------ boxes fitted to their image


def test_fit_boxes_to_image_by_hand() -> None:
    boxes = np.array([
        [10, 10, 20, 20],      # inside: kept as is
        [-5, 10, 20, 20],      # cut on the left: (0, 10, 20, 20)
        [95, 0, 120, 60],      # cut right and bottom: (95, 0, 100, 50)
        [100, 10, 120, 20],    # starts at the right edge: nothing inside
        [30, 30, 30, 40],      # zero width
        [99.5, 10, 130, 20],   # half a pixel left after the cut
        [-10, -10, -1, -1],    # above-left of the image
        [10, 10, 10.5, 10.5],  # tiny but inside: kept
    ], dtype=np.float32)
    kept, keep, reasons, clipped = fit_boxes_to_image(boxes, (100, 50))
    assert reasons == [None, None, None, OUTSIDE, ZERO_AREA, CLIPPED_AWAY, OUTSIDE, None]
    assert keep.tolist() == [True, True, True, False, False, False, False, True]
    assert clipped.tolist() == [False, True, True, False, False, False, False, False]
    np.testing.assert_array_equal(kept, [[10, 10, 20, 20], [0, 10, 20, 20], [95, 0, 100, 50],
                                         [10, 10, 10.5, 10.5]])
    assert kept.dtype == np.float32
    empty = fit_boxes_to_image(np.zeros((0, 4)), (10, 10))
    assert empty[0].shape == (0, 4) and empty[2] == []


def test_training_targets_are_fitted_to_the_image(tmp_path: Path) -> None:
    """A sample's boxes reach the network clipped, with the box outside left out: in a 64x32
    image resized to 128x64 (scale 2), (50, 10, 70, 20) becomes (50, 10, 64, 20) · 2."""
    root = make_tiny_kitti(tmp_path / "d", n=1, size=(64, 32), per_image=1)
    (root / "training" / "label_2" / "000000.txt").write_text(
        kitti_line((50, 10, 70, 20)) + kitti_line((70, 10, 90, 20)) + kitti_line((4, 4, 8, 8)))
    cfg = TrainConfig(input_size=(128, 64), workers=0)
    _, val, report = open_checked(cfg, root)
    _, target = val[0]
    np.testing.assert_allclose(target["boxes"].numpy(), [[100, 20, 128, 40], [8, 8, 16, 16]])
    assert target["labels"].tolist() == [0, 0]
    assert report.left_out[OUTSIDE] == 1 and report.clipped == 1


# ------------------------------------------------------------------ image headers


def _png(path: Path, size: tuple[int, int] = (64, 32)) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_inspect_image_reads_sizes_and_finds_truncation(tmp_path: Path) -> None:
    assert inspect_image(_png(tmp_path / "a.png", (64, 32))) == (64, 32)
    jpg = tmp_path / "b.jpg"
    Image.new("RGB", (30, 20), (1, 2, 3)).save(jpg)
    assert inspect_image(jpg) == (30, 20)
    trailing = _png(tmp_path / "c.png")
    trailing.write_bytes(trailing.read_bytes() + b"\0" * 100)  # bytes after IEND: still readable
    assert inspect_image(trailing) == (64, 32)
    truncated_png(_png(tmp_path / "d.png"))
    with pytest.raises(DataError, match=r"d\.png: corrupt or truncated"):
        inspect_image(tmp_path / "d.png")
    cut_jpg = tmp_path / "e.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
                    ).save(cut_jpg, quality=90)
    cut_jpg.write_bytes(cut_jpg.read_bytes()[:-400])
    with pytest.raises(DataError, match=r"e\.jpg: corrupt or truncated"):
        inspect_image(cut_jpg)
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        inspect_image(tmp_path / "f.png")
    with pytest.raises(DataError, match="not found"):
        inspect_image(tmp_path / "none.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match="not a file"):
        inspect_image(tmp_path / "dir.png")


def test_garbled_pixels_pass_the_header_check_but_not_decoding(tmp_path: Path) -> None:
    """What the up-front check cannot see without decoding (a PNG whose compressed data are
    damaged) is found when the sample is loaded; see test_worker_error_reaches_the_user."""
    path = _png(tmp_path / "g.png")
    garbled_png(path)
    assert inspect_image(path) == (64, 32)
    with pytest.raises(DataError, match=r"g\.png"):
        load_image(path)


# ------------------------------------------------------------------ the check of a data set


def test_report_counts_per_file_and_in_the_run_folder(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The unusual KITTI set (see test_bad_input._unusual_kitti) trains; the box outside its
    image, the clipped box and the Van are counted once, per file, in data_report.json."""
    root = _unusual_kitti(tmp_path / "d")
    code = cli.main(["train", "--data", str(root), "--out", str(tmp_path / "r"), *SMALL,
                     "workers=0", "amp=false", "val_max_images=1", "log_every=1"])
    out = capsys.readouterr().out
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("data check"))
    assert "4 train, 2 val images" in line
    assert "1 outside the image" in line and "(Van 1)" in line and "1 box clipped" in line
    report = json.loads((tmp_path / "r" / "data_report.json").read_text())
    label = str(root / "training" / "label_2" / "{}.txt")
    assert report["per_file"] == {label.format("000001"): {"other class": 1},
                                  label.format("000003"): {"clipped": 1, OUTSIDE: 1}}
    assert report["boxes_left_out"] == {OUTSIDE: 1, ZERO_AREA: 0, CLIPPED_AWAY: 0}
    assert report["objects_of_other_classes"] == {"Van": 1}
    # training targets: Car in 000000, 000001, 000003 (one of two; the other is outside), the
    # Pedestrian of 000000 and the clipped Cyclist of 000003
    assert report["training_boxes"]["train"] == {"Car": 3, "Pedestrian": 1, "Cyclist": 1}
    assert {b["what"] for b in report["boxes"]} == {OUTSIDE, "clipped"}
    assert (tmp_path / "r" / "last.pt").exists()


def test_skip_bad_leaves_out_and_says_where(tmp_path: Path) -> None:
    root = make_tiny_kitti(tmp_path / "d", n=4, size=(64, 32))
    bad_image = root / "training" / "image_2" / "000002.png"
    bad_image.write_bytes(b"junk")
    (root / "training" / "label_2" / "000003.txt").write_text("Car 1\n")
    cfg = TrainConfig(input_size=(64, 32), workers=0)
    with pytest.raises(DataCheckError) as info:
        open_checked(cfg, root)
    text = str(info.value)
    assert text.splitlines()[0].startswith(f"2 bad samples in {root}")
    assert "000003.txt:1" in text and str(bad_image) in text
    train, val, report = open_checked(TrainConfig(input_size=(64, 32), workers=0, skip_bad=True),
                                      root)
    assert train.ids == ["000000", "000001"] and val.ids == ["000000", "000001"]
    assert report.images == {"train": 2, "val": 2}
    assert len(report.bad) == 2 and report.to_json()["bad_samples"]["left_out"] is True
    assert "2 bad samples left out (--skip-bad)" in report.summary_line()
    assert "000003.txt:1" in report.summary_line()


def test_check_data_flag_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_tiny_kitti(tmp_path / "d", n=2, size=(64, 32))
    (root / "training" / "image_2" / "000001.png").write_bytes(b"")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert cli.main(["train", "--data", str(root), "--check-data"]) == 2
    assert "000001.png: image file is empty" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(root), "--check-data", "--skip-bad"]) == 0
    assert "1 bad sample left out" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_corrupt_validation_image_stops_the_run_before_the_model_is_built(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's first case: a bad image in the validation split only. The run stops in the
    data check, before a model exists, so before any step (nothing trained, nothing saved)."""
    import squeezedet.run_state

    root = make_tiny_kitti(tmp_path / "d", n=4, size=(64, 32))
    (root / "ImageSets" / "train.txt").write_text("000000\n000001\n")
    (root / "ImageSets" / "val.txt").write_text("000002\n000003\n")
    bad = root / "training" / "image_2" / "000003.png"
    truncated_png(bad)
    built = []
    monkeypatch.setattr(squeezedet.run_state, "build_model", lambda *a, **k: built.append(1))
    run = tmp_path / "run"
    code = cli.main(["train", "--data", str(root), "--out", str(run), *SMALL, "workers=0"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"squeezedet train: error: {bad}: corrupt or truncated image")
    assert built == []
    assert not (run / "last.pt").exists() and not (run / "metrics.csv").exists()


@pytest.fixture
def quick_worker_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """After an error in a worker, PyTorch's DataLoader waits MP_STATUS_CHECK_INTERVAL (5 s) for
    the worker to stop when the iterator is freed; the tests wait 0.2 s."""
    from torch.utils.data import _utils

    monkeypatch.setattr(_utils, "MP_STATUS_CHECK_INTERVAL", 0.2)


def test_worker_error_reaches_the_user(tmp_path: Path) -> None:
    """An image the header check passes but that cannot be decoded fails in a DataLoader worker
    process; the command line prints the worker's one-line error, not its traceback. Run as a
    user runs it, in its own process: a worker left behind by a failed in-process run would
    outlive the test (and keep the test session from exiting)."""
    import subprocess
    import sys

    root = make_tiny_kitti(tmp_path / "d", n=2, size=(64, 32))
    (root / "ImageSets" / "train.txt").write_text("000001\n")
    garbled_png(root / "training" / "image_2" / "000001.png")
    proc = subprocess.run(
        [sys.executable, "-m", "squeezedet", "train", "--data", str(root), "--out",
         str(tmp_path / "r"), "--quiet", "--input-size", "64x32", "--batch-size", "1", "--steps",
         "1", "workers=1", "amp=false"], capture_output=True, text=True, timeout=300)
    err = proc.stderr
    assert proc.returncode == 2 and "Traceback" not in err and "DataLoader worker" not in err, err
    assert err.startswith(f"squeezedet train: error: {root / 'training' / 'image_2' / '000001.png'}")
    assert len(err.strip().splitlines()) == 1


def test_coco_polygons_give_their_bounding_boxes(tmp_path: Path) -> None:
    root = WRITERS["coco"](tmp_path / "c")
    path = root / "annotations" / "instances.json"
    data = json.loads(path.read_text())
    for ann in data["annotations"]:
        x, y, w, h = ann.pop("bbox")
        # a triangle and a quadrilateral whose extremes are the box's
        ann["segmentation"] = [[x, y + h / 2, x + w / 2, y, x + w, y + h], [x + 1, y + h, x, y + 1,
                                                                          x + 2, y + 2]]
    path.write_text(json.dumps(data))
    source = load_source(root)
    for sample in source.samples:
        boxes, names = expected(sample.image_id, with_difficult=True)
        np.testing.assert_allclose([o.box for o in sample.objects] or np.zeros((0, 4)), boxes)
        assert [o.type for o in sample.objects] == names


# ------------------------------------------------------------------ errors from workers


class _Failing(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> int:
        raise DataError("/data/x.png", "not a readable image", 7)


def test_data_error_survives_a_worker_process(quick_worker_shutdown: None) -> None:
    import gc

    loader = torch.utils.data.DataLoader(_Failing(), num_workers=1)
    it = iter(loader)
    try:
        with pytest.raises(DataError) as info:
            next(it)
    finally:
        it._shutdown_workers()  # no worker may outlive the test (it would block the session's exit)
    text = str(info.value)
    del info, it
    gc.collect()
    assert "Caught DataError in DataLoader worker process 0" in text
    assert str(user_error(DataError(text))) == "/data/x.png:7: not a readable image"


def test_user_error_recognises_wrapped_errors_only() -> None:
    plain = SqueezeDetError("bad")
    assert user_error(plain) is plain
    assert user_error(ValueError("bug")) is None
    wrapped = RuntimeError(
        "Caught DataError in DataLoader worker process 3.\nOriginal Traceback (most recent call "
        "last):\n  File \"x.py\", line 1, in f\nsqueezedet.errors.DataError: a.png: broken\n"
        "second line\n")
    assert str(user_error(wrapped)) == "a.png: broken\nsecond line"
    bug = RuntimeError("Caught ZeroDivisionError in DataLoader worker process 0.\nOriginal "
                       "Traceback (most recent call last):\nZeroDivisionError: division by zero\n")
    assert user_error(bug) is None


def test_data_error_pickles_and_takes_its_text_alone() -> None:
    err = DataError(Path("/d/a.txt"), "bad line", 3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is DataError and str(back) == "/d/a.txt:3: bad line"
    assert (back.path, back.line, back.message) == (Path("/d/a.txt"), 3, "bad line")
    text_only = DataError("/d/a.txt:3: bad line")
    assert str(text_only) == "/d/a.txt:3: bad line" and text_only.path is None
    assert str(pickle.loads(pickle.dumps(text_only))) == "/d/a.txt:3: bad line"
    assert str(err.extended(" (and more)")) == "/d/a.txt:3: bad line (and more)"


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import squeezedet.commands.info as info

    def broken(args: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(info, "run", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["info"])


# ------------------------------------------------------------------ output paths


def test_output_paths(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing is created
    assert check_output_dir(tmp_path) == tmp_path
    assert check_output_file(tmp_path / "file") == tmp_path / "file"
    assert check_output_file(tmp_path / "a" / "b.json") == tmp_path / "a" / "b.json"
    with pytest.raises(SqueezeDetError, match="--out .*file: this is a file"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(SqueezeDetError, match="is a file, so nothing can be created"):
        check_output_dir(tmp_path / "file" / "x" / "y")
    with pytest.raises(SqueezeDetError, match="--json .*: this is a folder"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(SqueezeDetError, match="is a file, so nothing can be created"):
        check_output_file(tmp_path / "file" / "x.json")


def test_output_paths_without_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "old.json").write_text("{}")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p).is_relative_to(locked)
                        else real(p, mode))
    with pytest.raises(SqueezeDetError, match="no permission to write in this folder"):
        check_output_dir(locked)
    with pytest.raises(SqueezeDetError, match=f"no permission to create it in {locked}"):
        check_output_dir(locked / "run")
    with pytest.raises(SqueezeDetError, match="no permission to overwrite"):
        check_output_file(locked / "old.json")
    with pytest.raises(SqueezeDetError, match=f"no permission to write in {locked}"):
        check_output_file(locked / "new.json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_for_real(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(SqueezeDetError, match="no permission"):
            check_output_dir(locked / "run")
    finally:
        locked.chmod(0o700)
        shutil.rmtree(locked)
