"""``squeezedet evaluate`` and the file loader: JSON, warnings, file:line errors, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squeezedet.cli import main
from squeezedet.data.kitti_format import KittiObject, write_kitti_file
from squeezedet.errors import DataError
from squeezedet.eval import evaluate_dirs, read_result_file

BOX = (100.0, 100.0, 200.0, 190.0)
DIFFS = ("easy", "moderate", "hard")


def write_set(root: Path, n: int = 10, skip_results: int = 0) -> tuple[Path, Path]:
    """n label files with one car each, exact result files for all but the last skip_results."""
    gt_dir, det_dir = root / "label_2", root / "data"
    gt_dir.mkdir()
    det_dir.mkdir()
    for i in range(n):
        write_kitti_file(gt_dir / f"{i:06d}.txt", [KittiObject("Car", BOX)])
        if i < n - skip_results:
            write_kitti_file(
                det_dir / f"{i:06d}.txt", [KittiObject("Car", BOX, score=0.5 + i / 100)]
            )
    return gt_dir, det_dir


def test_cli_json_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_dir, det_dir = write_set(tmp_path)
    out = tmp_path / "ap.json"
    rc = main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir),
               "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["AP_R40"]["Car"] == pytest.approx({"easy": 22.5, "moderate": 22.5, "hard": 22.5})
    assert data["AP_R11"]["Car"]["moderate"] == pytest.approx(300 / 11)
    assert data["mAP_R40"] == pytest.approx(22.5 / 3)
    assert data["evaluated"] == {"Car": True, "Pedestrian": False, "Cyclist": False}
    assert data["n_images"] == 10
    assert data["errors"]["Car"]["correct"] == 10
    printed = capsys.readouterr().out
    assert "22.50" in printed and "27.27" in printed and "Error analysis" in printed


def test_cli_json_to_stdout_is_pure_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    gt_dir, det_dir = write_set(tmp_path)
    rc = main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir),
               "--json", "-", "--classes", "Car", "--no-errors"])
    assert rc == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert list(data["AP_R40"]) == ["Car"]
    assert "errors" not in data
    assert "AP_R40" in captured.err  # the table went to stderr


def test_missing_result_file_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_dir, det_dir = write_set(tmp_path, n=10, skip_results=1)
    rc = main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir),
               "--json", "-"])
    assert rc == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["n_images"] == 10
    assert data["AP_R40"]["Car"]["easy"] == pytest.approx(20.0)  # 9 of 10: (9-1)/40
    assert any("000009.txt" in w and "no result file" in w for w in data["warnings"])
    assert "warning:" in captured.err and "000009.txt" in captured.err


def test_malformed_result_line_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt_dir, det_dir = write_set(tmp_path)
    bad = det_dir / "000003.txt"
    bad.write_text(bad.read_text() + "\nCar 0 0 -10 1 2 3 four 1 1 1 1 1 1 1 0.5\n")
    rc = main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir)])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{bad}:3" in err and "four" in err
    assert "Traceback" not in err


def test_malformed_label_line_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt_dir, det_dir = write_set(tmp_path)
    bad = gt_dir / "000001.txt"
    bad.write_text(bad.read_text() + "Car 0 0\n")
    assert main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err


def test_result_line_without_score_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "000000.txt"
    write_kitti_file(path, [KittiObject("Car", BOX, score=0.5), KittiObject("Car", BOX)])
    with pytest.raises(DataError, match=r"000000.txt:2: .*16 fields"):
        read_result_file(path)


def test_missing_folders_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    gt_dir, _ = write_set(tmp_path)
    assert main(["evaluate", "--labels", str(gt_dir), "--detections",
                 str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--labels", str(empty), "--detections", str(gt_dir)]) == 2
    assert "no *.txt label files" in capsys.readouterr().err


def test_split_file(tmp_path: Path) -> None:
    gt_dir, det_dir = write_set(tmp_path)
    split = tmp_path / "val.txt"
    split.write_text("000000\n000001\n")
    out = tmp_path / "ap.json"
    rc = main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir),
               "--split", str(split), "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["n_images"] == 2
    assert data["AP_R40"]["Car"]["easy"] == pytest.approx(2.5)  # (2-1)/40


def write_devkit_set(root: Path) -> tuple[Path, Path]:
    """A set on which the 2013 and 2017 devkits disagree (SPEC: the two differences).

    Images 0-9: one car 90 px tall, found exactly (scores 0.50 ... 0.59). Image 10: one car exactly
    40 px tall (the easy minimum height), found exactly (score 0.60). Image 0 also holds a car
    detection 20 px tall (under every minimum height) far from any object, scoring 0.95.
    """
    gt_dir, det_dir = root / "label_2", root / "data"
    gt_dir.mkdir()
    det_dir.mkdir()
    for i in range(11):
        box = BOX if i < 10 else (100.0, 100.0, 200.0, 140.0)
        dets = [KittiObject("Car", box, score=0.5 + i / 100)]
        if i == 0:
            dets.append(KittiObject("Car", (300.0, 100.0, 340.0, 120.0), score=0.95))
        write_kitti_file(gt_dir / f"{i:06d}.txt", [KittiObject("Car", box)])
        write_kitti_file(det_dir / f"{i:06d}.txt", dets)
    return gt_dir, det_dir


# Worked out from the rules (SPEC, KITTI evaluation) for write_devkit_set; every point below is a
# score threshold because N_gt <= 40 (one threshold per true positive).
# 2017: the 40 px car is ignored when easy (height <= 40) and valid otherwise; the 20 px detection
#   is ignored. Easy: N_gt 10, 10 thresholds at precision 1 -> AP_R40 9/40 = 22.5, AP_R11 3/11.
#   Moderate, hard: N_gt 11, 11 thresholds at precision 1 -> AP_R40 10/40 = 25, AP_R11 3/11.
# 2013: the 40 px car is valid (ignored only when height < 40) and the 20 px detection is a false
#   positive above every threshold: N_gt 11 everywhere, precision k/(k+1) at the k-th threshold,
#   made non-increasing from the right -> 11/12 at points 0-10 -> AP_R40 10 * (11/12) / 40,
#   AP_R11 3 * (11/12) / 11 = 25.
DEVKIT_AP = {
    "2017": ({"easy": 22.5, "moderate": 25.0, "hard": 25.0}, {d: 300 / 11 for d in DIFFS}),
    "2013": ({d: 1000 / 40 * 11 / 12 for d in DIFFS}, {d: 25.0 for d in DIFFS}),
}


@pytest.mark.parametrize("devkit", [None, "2017", "2013"])
def test_devkit_flag_selects_the_rules(tmp_path: Path, devkit: str | None) -> None:
    gt_dir, det_dir = write_devkit_set(tmp_path)
    out = tmp_path / "ap.json"
    flag = [] if devkit is None else ["--devkit", devkit]
    rc = main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir),
               "--classes", "Car", *flag, "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    r40, r11 = DEVKIT_AP[devkit or "2017"]  # 2017 is the default
    assert data["AP_R40"]["Car"] == pytest.approx(r40)
    assert data["AP_R11"]["Car"] == pytest.approx(r11)


def test_evaluate_dirs_matches_in_memory(tmp_path: Path) -> None:
    gt_dir, det_dir = write_set(tmp_path, n=50)
    result = evaluate_dirs(gt_dir, det_dir, ("Car",))
    assert result.ap_r40["Car"]["hard"] == pytest.approx(100.0)


def test_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    gt_dir, det_dir = write_set(tmp_path)
    plots = tmp_path / "plots"
    rc = main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir),
               "--plots", str(plots)])
    assert rc == 0
    files = sorted(p.name for p in plots.iterdir())
    assert files == ["car_pr.png"]  # Pedestrian, Cyclist not evaluated: no plot
    assert (plots / "car_pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_coco_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_dir, det_dir = write_set(tmp_path)
    rc = main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir),
               "--coco", "--json", "-"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        assert any("pycocotools" in w for w in data["warnings"])
        assert "coco" not in data
    else:
        assert data["coco"]["AP"]["Car"] == pytest.approx(100.0)
        assert data["coco"]["AP"]["Pedestrian"] is None
