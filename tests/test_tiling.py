"""Tiling: windows, objects cut by windows, merged tile predictions, and a tiled training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from squeezedet.config import TrainConfig
from squeezedet.data.dataset import DetectionDataset
from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.samples import IGNORE_OCCLUSION, Sample
from squeezedet.data.tiling import clip_objects_to_window, tile_origins, tile_windows
from squeezedet.errors import SqueezeDetError
from squeezedet.inference.tiled import predict_tiled


def test_tile_origins_by_hand():
    assert tile_origins(256, 64, 0.25) == [0, 48, 96, 144, 192]
    assert tile_origins(100, 64, 0.0) == [0, 36]  # last one flush with the edge
    assert tile_origins(64, 64, 0.5) == [0]
    assert tile_origins(50, 64, 0.5) == [0]
    assert tile_origins(128, 64, 0.5) == [0, 32, 64]
    with pytest.raises(SqueezeDetError, match="overlap"):
        tile_origins(100, 10, 1.0)


def test_tile_windows_cover_the_image_in_row_major_order():
    windows = tile_windows((100, 50), (64, 64), 0.0)
    assert windows == [(0, 0, 64, 50), (36, 0, 100, 50)]
    covered = np.zeros((300, 200), dtype=bool)
    for x0, y0, x1, y1 in tile_windows((200, 300), (64, 48), 0.3):
        assert x1 - x0 == 64 and y1 - y0 == 48
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_objects_cut_by_a_window():
    objs = [KittiObject("a", (10, 10, 30, 30)),    # wholly inside
            KittiObject("a", (50, 0, 70, 10)),     # half inside (100 of 200 px): kept
            KittiObject("b", (45, 20, 105, 30)),   # a quarter inside (150 of 600 px): ignored
            KittiObject("a", (80, 80, 90, 90)),    # outside: dropped
            KittiObject("DontCare", (55, 5, 65, 15))]
    got = clip_objects_to_window(objs, (0, 0, 60, 40))
    assert [(o.type, o.box, o.truncated, o.occluded) for o in got] == [
        ("a", (10, 10, 30, 30), 0.0, 0),
        ("a", (50, 0, 60, 10), 0.5, 0),
        ("b", (45, 20, 60, 30), 0.75, IGNORE_OCCLUSION),
        ("DontCare", (55, 5, 60, 15), 0.0, 0),
    ]
    # boxes are moved into the window's pixels
    moved = clip_objects_to_window([KittiObject("a", (110, 60, 130, 70))], (100, 50, 160, 90))
    assert moved[0].box == (10, 10, 30, 20)


def test_predict_tiled_merges_duplicates_and_moves_boxes():
    """A fake detector that finds the objects lying wholly inside the window it is given."""
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    objects = [((20, 20, 40, 40), 0.9, 0), ((90, 30, 110, 50), 0.8, 1), ((170, 70, 190, 90), 0.7, 0)]
    calls = []

    def detect(window: np.ndarray) -> dict:
        # the window is a view: recover its offset in the image
        y0 = (window.__array_interface__["data"][0] - image.__array_interface__["data"][0]) \
            // image.strides[0]
        x0 = ((window.__array_interface__["data"][0] - image.__array_interface__["data"][0])
              % image.strides[0]) // image.strides[1]
        h, w = window.shape[:2]
        calls.append((x0, y0, w, h))
        boxes, scores, labels = [], [], []
        for (x1, y1, x2, y2), s, c in objects:
            if x1 >= x0 and y1 >= y0 and x2 <= x0 + w and y2 <= y0 + h:
                boxes.append([x1 - x0, y1 - y0, x2 - x0, y2 - y0])
                scores.append(s)
                labels.append(c)
        return {"boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
                "scores": np.array(scores), "labels": np.array(labels)}

    out = predict_tiled(detect, image, tile=(100, 100), overlap=0.5, nms_iou=0.4)
    assert calls == [(0, 0, 100, 100), (50, 0, 100, 100), (100, 0, 100, 100)]
    assert out["boxes"].tolist() == [list(map(float, b)) for b, _, _ in objects]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert out["labels"].tolist() == [0, 1, 0] and out["labels"].dtype == torch.int64
    assert len(predict_tiled(detect, image, (100, 100), 0.5, max_detections=1)["boxes"]) == 1


def test_tiled_dataset_samples_are_tiles():
    img_dir = Path(__file__).parent  # any folder; the image is only opened by load()
    sample = Sample("x", img_dir / "missing.png",
                    (KittiObject("a", (10, 10, 30, 30)), KittiObject("a", (90, 10, 110, 30))),
                    size=(200, 100))
    ds = DetectionDataset([sample], ("a",), input_size=(32, 32), tile=(100, 100), tile_overlap=0.5)
    assert ds.ids == ["x@0_0", "x@50_0", "x@100_0"]
    assert ds.window(1) == (50, 0, 150, 100)
    # the second object (90..110) is half in tile 0, whole in tile 1, half in tile 2
    assert [o.box for o in ds.ground_truth(0)] == [(10, 10, 30, 30), (90, 10, 100, 30)]
    assert [o.box for o in ds.ground_truth(1)] == [(40, 10, 60, 30)]
    assert [o.box for o in ds.ground_truth(2)] == [(0, 10, 10, 30)]


def write_aerial(root: Path, n: int = 2, size: tuple[int, int] = (128, 64)) -> Path:
    """A flat VOC folder of ``n`` images with small squares (class "dot") and bars ("bar")."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    w, h = size
    for i in range(n):
        img = Image.fromarray(rng.integers(80, 120, size=(h, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        objs = []
        for k, x in enumerate(range(6, w - 16, 22)):
            y = int(rng.integers(4, h - 20))
            name, bw, bh, colour = (("dot", 10, 10, (230, 40, 40)) if (k + i) % 2 == 0
                                    else ("bar", 6, 16, (40, 40, 230)))
            draw.rectangle([x, y, x + bw - 1, y + bh - 1], fill=colour)
            objs.append(f"<object><name>{name}</name><bndbox><xmin>{x + 1}</xmin>"
                        f"<ymin>{y + 1}</ymin><xmax>{x + bw}</xmax><ymax>{y + bh}</ymax>"
                        "</bndbox></object>")
        img.save(root / f"img{i}.png")
        (root / f"img{i}.xml").write_text(f"<annotation><filename>img{i}.png</filename>"
                                          + "".join(objs) + "</annotation>")
    return root


@pytest.mark.slow  # 11-14 s of training; the tiling geometry tests stay in the default run
def test_training_on_a_tiled_two_image_data_set_overfits(tmp_path):
    from squeezedet.data.box_statistics import training_box_sizes
    from squeezedet.ops.kmeans import kmeans_anchors
    from squeezedet.train import train

    torch.manual_seed(0)
    root = write_aerial(tmp_path / "aerial")
    tile, size = (64, 64), (48, 48)  # 3 tiles an image, each resized to 48x48 (grid 3x3)
    wh = training_box_sizes(root, size, split="all", tile=tile, overlap=0.5)
    shapes, _ = kmeans_anchors(wh, k=2, seed=0)
    cfg = TrainConfig(recipe="paper", input_size=size, tile=tile, tile_overlap=0.5,
                      anchors=tuple(map(tuple, shapes.tolist())), train_split="all",
                      val_split="all", optimizer="adamw",
                      lr=1e-3, dropout=0.0, drift=(0, 0), flip_prob=0.0, batch_size=6, steps=150,
                      workers=0, device="cpu", log_every=50, checkpoint_every=1000)
    result = train(cfg, root, tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result.step == 150
    assert metrics["n_images"] == 6  # 2 images x 3 tiles
    # COCO-style AP@0.5 on the training tiles. Not one CPU's trajectory: another CPU's rounding
    # moves the run as another seed does, and over seeds 0-7 with PyTorch narrowed to AVX2 (fp32),
    # seeds 0-3 with ATEN_CPU_CAPABILITY=default and seed 0 unnarrowed (both AMX bf16 autocast),
    # 13 runs, it measured 82.7-100 (median 94.2); 70 leaves 12 points below the lowest.
    assert metrics["mAP50"] > 70, metrics


def test_predict_command_with_tiles(tmp_path, capsys):
    """Zero ConvDet weights: every tile gives the same detections, so the tiles of a 256x64 image
    (two 128x64 tiles, no overlap) give those of one 128x64 image, and the same moved by 128."""
    import squeezedet
    from squeezedet.checkpoint import save_checkpoint
    from squeezedet.cli import main

    model = squeezedet.create_model("squeezedet", input_size=(128, 64))
    with torch.no_grad():
        model.convdet.weight.zero_()
        model.convdet.bias.zero_()
    ckpt = tmp_path / "zero.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, ckpt)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 256, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)).save(tmp_path / "one.png")
    common = ["--weights", str(ckpt), "--device", "cpu", "--backend", "torch", "--no-draw",
              "--save-json", "--no-progress"]
    assert main(["predict", *common, "--source", str(tmp_path / "one.png"),
                 "--out", str(tmp_path / "one")]) == 0
    assert main(["predict", *common, "--source", str(tmp_path / "big.png"), "--out",
                 str(tmp_path / "big"), "--tile", "128x64", "--overlap", "0"]) == 0
    one = json.loads((tmp_path / "one" / "json" / "one.json").read_text())
    big = json.loads((tmp_path / "big" / "json" / "big.json").read_text())
    assert (big["width"], big["height"]) == (256, 64)
    boxes = sorted(tuple(d["box"]) for d in big["detections"])
    single = [tuple(d["box"]) for d in one["detections"]]
    want = sorted(single + [(x1 + 128, y1, x2 + 128, y2) for x1, y1, x2, y2 in single])
    assert len(single) > 0
    np.testing.assert_allclose(boxes, want, atol=1e-2)


def test_predict_tiled_drops_the_cut_off_parts_a_neighbour_sees_whole():
    """Tiles of 100 px with overlap 0.5 on a 200 px wide image start at x = 0, 50 and 100; a
    detector sees every object's part inside its window (as a real one would, clipped)."""
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    # 60 px wide: whole only in window 2 (x 50-150), cut at x = 100 by windows 1 and 3
    objects = [(80, 20, 140, 40), (0, 60, 30, 80)]  # the second touches the image's left border

    def detect(window: np.ndarray) -> dict:
        offset = window.__array_interface__["data"][0] - image.__array_interface__["data"][0]
        x0 = (offset % image.strides[0]) // image.strides[1]
        boxes = [[max(a, x0) - x0, b, min(c, x0 + window.shape[1]) - x0, d]
                 for a, b, c, d in objects if c > x0 and a < x0 + window.shape[1]]
        return {"boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
                "scores": np.full(len(boxes), 0.9), "labels": np.zeros(len(boxes), dtype=int)}

    out = predict_tiled(detect, image, tile=(100, 100), overlap=0.5, nms_iou=0.4)
    # the parts x 80-100 (window 1) and 100-140 (window 3) overlap the whole box by IoU 1/3 and
    # 2/3: NMS alone would keep the first beside it
    assert sorted(out["boxes"].tolist()) == [[0, 60, 30, 80], [80, 20, 140, 40]]
