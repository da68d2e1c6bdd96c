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


def test_split_file_and_devkit_2013(tmp_path: Path) -> None:
    gt_dir, det_dir = write_set(tmp_path)
    split = tmp_path / "val.txt"
    split.write_text("000000\n000001\n")
    out = tmp_path / "ap.json"
    rc = main(["evaluate", "--labels", str(gt_dir), "--detections", str(det_dir),
               "--split", str(split), "--devkit", "2013", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["n_images"] == 2
    assert data["AP_R40"]["Car"]["easy"] == pytest.approx(2.5)  # (2-1)/40


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
