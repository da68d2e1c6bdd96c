"""KITTI tracking evaluation (HOTA, MOTA, IDF1, ID switches through TrackEval) on cases worked out
by hand, KITTI's ignore rules, the file readers' one-line errors, and `evaluate --tracking`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from squeezedet.cli import main
from squeezedet.data.kitti_tracking import parse_tracking_line, read_tracking_file
from squeezedet.errors import DataError, SqueezeDetError

pytest.importorskip("trackeval", reason="TrackEval is not installed (pip install --no-deps trackeval)")

from squeezedet.eval.tracking import evaluate_tracking_dirs  # noqa: E402

G1 = (100, 100, 200, 200)  # ground-truth car 1 (height 100)
G2 = (400, 100, 500, 220)  # ground-truth car 2
AWAY = (700, 50, 760, 110)  # a box over nothing (height 60 > 25)


def line(frame: int, tid: int, box: tuple[float, ...], cls: str = "Car", score: float | None = None,
         truncated: int = 0, occluded: int = 0) -> str:
    x1, y1, x2, y2 = box
    text = (f"{frame} {tid} {cls} {truncated} {occluded} -10 {x1} {y1} {x2} {y2} "
            f"-1 -1 -1 -1000 -1000 -1000 -10")
    return text + (f" {score}" if score is not None else "")


def write(folder: Path, seq: str, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{seq}.txt").write_text("".join(x + "\n" for x in lines))


def hand_case(tmp_path: Path) -> tuple[Path, Path]:
    """4 frames, two cars always in view. The tracker: frames 0-1 right (ids 1, 2); frame 2 gives
    car 2 a new id 3 (an ID switch); frame 3 misses car 2 and puts a box where nothing is."""
    gt = [line(f, g, box) for f in range(4) for g, box in ((1, G1), (2, G2))]
    res = [line(0, 1, G1, score=0.9), line(0, 2, G2, score=0.9),
           line(1, 1, G1, score=0.9), line(1, 2, G2, score=0.9),
           line(2, 1, G1, score=0.9), line(2, 3, G2, score=0.9),
           line(3, 1, G1, score=0.9), line(3, 4, AWAY, score=0.9)]
    write(tmp_path / "label_02", "0000", gt)
    write(tmp_path / "res", "0000", res)
    return tmp_path, tmp_path / "res"


def test_metrics_worked_out_by_hand(tmp_path: Path) -> None:
    gt_dir, res_dir = hand_case(tmp_path)
    m = evaluate_tracking_dirs(gt_dir, res_dir, classes=["Car"]).metrics["Car"]
    # CLEAR MOT: 8 ground-truth boxes; TP 7, FN 1 (car 2 on frame 3), FP 1 (the box over nothing),
    # one ID switch (car 2: id 2 -> 3). MOTA = 1 - (FN + FP + IDSW) / GT = 1 - 3/8
    assert (m["TP"], m["FN"], m["FP"], m["IDSW"]) == (7, 1, 1, 1)
    assert m["MOTA"] == pytest.approx(5 / 8)
    # identity: the best one-to-one pairing of ids is car 1 <-> 1 (4 frames), car 2 <-> 2 (2);
    # IDTP 6, IDFN 8 - 6 = 2, IDFP 8 - 6 = 2; IDF1 = 2*6 / (2*6 + 2 + 2)
    assert m["IDF1"] == pytest.approx(12 / 16)
    # HOTA (boxes exact, so the same at every IoU threshold): DetA = TP / (TP + FN + FP) = 7/9;
    # AssA = mean over the 7 TPs of TPA / (TPA + FNA + FPA): car 1 with id 1: 4/4 (4 TPs),
    # car 2 with id 2: 2/(2 + 2 + 0) (2 TPs), car 2 with id 3: 1/(1 + 3 + 0) (1 TP)
    ass_a = (4 * 1 + 2 * 0.5 + 1 * 0.25) / 7
    assert m["DetA"] == pytest.approx(7 / 9)
    assert m["AssA"] == pytest.approx(ass_a)
    assert m["HOTA"] == pytest.approx(math.sqrt(7 / 9 * ass_a))
    assert m["LocA"] == pytest.approx(1.0)
    assert (m["GT_IDs"], m["IDs"]) == (2, 4)


def test_perfect_tracks_score_one(tmp_path: Path) -> None:
    gt = [line(f, g, box) for f in range(5) for g, box in ((1, G1), (2, G2))]
    write(tmp_path / "label_02", "0001", gt)
    write(tmp_path / "res", "0001", [x + " 0.8" for x in gt])
    m = evaluate_tracking_dirs(tmp_path, tmp_path / "res", classes=["Car"]).metrics["Car"]
    assert (m["HOTA"], m["MOTA"], m["IDF1"], m["IDSW"]) == (pytest.approx(1), pytest.approx(1),
                                                             pytest.approx(1), 0)


def test_kitti_ignore_rules(tmp_path: Path) -> None:
    # ground truth: a car, a van (neighbour class) and a DontCare region; tracker boxes on the van,
    # inside the DontCare region and one 20 px tall over nothing: none of them is a false positive
    dont_care = (600, 300, 800, 400)
    gt = [line(0, 1, G1), line(0, 2, G2, cls="Van"), line(0, -1, dont_care, cls="DontCare")]
    res = [line(0, 1, G1, score=0.9), line(0, 2, G2, score=0.9),
           line(0, 3, (620, 320, 700, 380), score=0.9), line(0, 4, (50, 300, 90, 320), score=0.9)]
    write(tmp_path / "label_02", "0002", gt)
    write(tmp_path / "res", "0002", res)
    m = evaluate_tracking_dirs(tmp_path, tmp_path / "res", classes=["Car"]).metrics["Car"]
    assert (m["TP"], m["FP"], m["FN"]) == (1, 0, 0)
    # the same boxes 40 px tall and outside the region do count
    res[2] = line(0, 3, (620, 200, 700, 260), score=0.9)
    write(tmp_path / "res", "0002", res)
    m = evaluate_tracking_dirs(tmp_path, tmp_path / "res", classes=["Car"]).metrics["Car"]
    assert (m["TP"], m["FP"]) == (1, 1)


def test_classes_are_evaluated_separately(tmp_path: Path) -> None:
    gt = [line(0, 1, G1), line(0, 2, G2, cls="Pedestrian")]
    # the tracker calls the pedestrian a car: a car FP and a missed pedestrian
    res = [line(0, 1, G1, score=0.9), line(0, 2, G2, score=0.9)]
    write(tmp_path / "label_02", "0003", gt)
    write(tmp_path / "res", "0003", res)
    result = evaluate_tracking_dirs(tmp_path, tmp_path / "res")
    assert result.classes == ["Car", "Pedestrian"]
    assert (result.metrics["Car"]["TP"], result.metrics["Car"]["FP"]) == (1, 1)
    assert (result.metrics["Pedestrian"]["TP"], result.metrics["Pedestrian"]["FN"]) == (0, 1)


def test_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "0000.txt"
    path.write_text(line(0, 1, G1) + "\n" + "0 1 Car 0 0 -10 1 2 3\n")
    with pytest.raises(DataError) as info:
        read_tracking_file(path)
    assert str(info.value).startswith(f"{path}:2: expected 17 fields") and "\n" not in str(info.value)
    with pytest.raises(DataError, match="frame 'x' is not a number"):
        parse_tracking_line(line(0, 1, G1).replace("0 1", "x 1", 1), "f.txt", 3)
    with pytest.raises(DataError, match="f.txt:3: track id '1.5' is not a whole number"):
        parse_tracking_line(line(0, 1, G1).replace("0 1", "0 1.5", 1), "f.txt", 3)
    with pytest.raises(DataError, match="f.txt:4: box"):
        parse_tracking_line(line(0, 1, (10, 10, 5, 20)), "f.txt", 4)


def test_duplicate_track_id_in_a_frame_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "label_02", "0000", [line(0, 1, G1)])
    write(tmp_path / "res", "0000", [line(0, 1, G1, score=0.9), line(0, 1, G2, score=0.9)])
    with pytest.raises(DataError, match="track id 1 appears twice on frame 0"):
        evaluate_tracking_dirs(tmp_path, tmp_path / "res")


def test_cyclist_is_refused(tmp_path: Path) -> None:
    gt_dir, res_dir = hand_case(tmp_path)
    with pytest.raises(SqueezeDetError, match="only Car and Pedestrian"):
        evaluate_tracking_dirs(gt_dir, res_dir, classes=["Cyclist"])


def test_evaluate_tracking_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_dir, res_dir = hand_case(tmp_path)
    write(gt_dir / "label_02", "0009", [line(0, 1, G1)])  # no result file: a warning
    out_json = tmp_path / "m.json"
    code = main(["evaluate", "--tracking", "--labels", str(gt_dir), "--detections", str(res_dir),
                 "--json", str(out_json)])
    captured = capsys.readouterr()
    assert code == 0
    assert "HOTA" in captured.out and "2 sequences" in captured.out
    assert "Pedestrian    no ground truth and no tracks" in captured.out
    assert "0009.txt: no result file" in captured.err
    data = json.loads(out_json.read_text())
    assert data["sequences"] == ["0000", "0009"]
    # car 1 on frame 0 of sequence 0009 is one more miss: TP 7, FN 2, FP 1, IDSW 1 over 9 boxes
    assert data["metrics"]["Car"]["MOTA"] == pytest.approx(1 - 4 / 9)
    assert data["per_sequence"]["0000"]["Car"]["MOTA"] == pytest.approx(5 / 8)
