"""`squeezedet demo` end to end at toy scale: every promised output is written."""

import json

from squeezedet.cli import main


def test_demo_writes_all_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    from PIL import Image

    Image.new("RGB", (300, 90), (90, 90, 90)).save(photo_dir / "p.png")
    code = main(["demo", "--out", str(out), "--minutes", "0.02", "--num-images", "12",
                 "--size", "192x64", "--images", str(photo_dir), "--quiet", "workers=0",
                 "val_max_images=3"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["AP_R40"]) == {"Car", "Pedestrian", "Cyclist"}
    assert {"AP_R11", "mAP_R40", "mAP_R11", "evaluated", "n_images", "warnings"} <= set(metrics)
    assert (out / "ap_table.txt").read_text().startswith("KITTI 2-D AP")
    assert len(list((out / "detections").glob("val_*.png"))) == 3  # 25% of 12 images
    assert (out / "detections" / "photos" / "p.png").exists()
    assert (out / "train" / "best.pt").exists() or (out / "train" / "last.pt").exists()
    printed = capsys.readouterr().out
    assert "mean moderate AP_R40" in printed and "demo finished" in printed
    # a second run reuses the data and the finished training run
    assert main(["demo", "--out", str(out), "--num-images", "12", "--size", "192x64",
                 "--quiet", "workers=0"]) == 0
    assert "reusing the finished training run" in capsys.readouterr().out
