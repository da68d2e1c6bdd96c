"""k-means anchor shapes (1 - IoU distance) and the anchors command."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from own_data import WRITERS

from squeezedet.cli import main
from squeezedet.data.box_statistics import training_box_sizes
from squeezedet.errors import SqueezeDetError
from squeezedet.ops.anchors import read_anchor_shapes
from squeezedet.ops.kmeans import iou_wh, kmeans_anchors, mean_best_iou

PLANTED = np.array([(12, 10), (40, 14), (15, 45), (60, 60), (120, 50)], dtype=np.float64)


def planted_boxes(n_per: int = 200, jitter: float = 0.04, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wh = np.repeat(PLANTED, n_per, axis=0)
    return wh * np.exp(rng.normal(0, jitter, size=wh.shape))


def test_iou_wh_by_hand():
    # (2, 2) vs (1, 4): intersection 1 * 2 = 2, union 4 + 4 - 2 = 6
    assert iou_wh(np.array([[2.0, 2.0]]), np.array([[1.0, 4.0], [2.0, 2.0]])) == \
        pytest.approx(np.array([[1 / 3, 1.0]]))


def test_mean_best_iou_by_hand():
    # box (2, 2): best is itself (1); box (4, 4) vs (2, 2): 4 / 16 = 0.25 -> mean 0.625
    assert mean_best_iou(np.array([[2.0, 2.0], [4.0, 4.0]]), [[2.0, 2.0]]) == pytest.approx(0.625)


def test_recovers_planted_shapes():
    shapes, score = kmeans_anchors(planted_boxes(), k=5, seed=0)
    order = np.argsort(PLANTED[:, 0] * PLANTED[:, 1])
    np.testing.assert_allclose(shapes, PLANTED[order], rtol=0.03)
    assert score > 0.9
    assert score == pytest.approx(mean_best_iou(planted_boxes(), shapes))


def test_seeded_and_sorted_by_area():
    wh = np.random.default_rng(3).uniform(5, 100, size=(300, 2))
    a, sa = kmeans_anchors(wh, k=6, seed=1)
    b, sb = kmeans_anchors(wh, k=6, seed=1)
    assert np.array_equal(a, b) and sa == sb
    areas = a[:, 0] * a[:, 1]
    assert np.all(np.diff(areas) >= 0)
    # more shapes fit at least as well
    _, s9 = kmeans_anchors(wh, k=9, seed=1)
    assert s9 >= sa


def test_too_few_boxes_is_a_clear_error():
    with pytest.raises(SqueezeDetError, match="at least k=3 distinct"):
        kmeans_anchors(np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]]), k=3)


def test_box_sizes_scale_to_the_input(tmp_path):
    root = WRITERS["voc"](tmp_path / "voc")
    wh = training_box_sizes(root, (100, 50), split="all")
    # a (200x100): cat 50x60 -> 25x30 (the difficult dog is left out);
    # b (160x120): dog 59.5x80 -> 37.1875x33.333, cat 40x40 -> 25x16.667
    np.testing.assert_allclose(np.sort(wh, axis=0), np.sort(np.array(
        [[25, 30], [37.1875, 80 * 50 / 120], [25, 40 * 50 / 120]]), axis=0), rtol=1e-6)


def test_anchors_command_writes_a_file_train_reads(tmp_path, capsys):
    root = WRITERS["coco"](tmp_path / "coco")
    out = tmp_path / "anchors.yaml"
    assert main(["anchors", "--data", str(root), "--k", "2", "--input-size", "100x50",
                 "--split", "all", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mean IoU of each box with its best anchor" in text and "default 9 shapes" in text
    shapes = read_anchor_shapes(str(out))
    assert len(shapes) == 2
    assert yaml.safe_load(out.read_text())["input_size"] == [100, 50]
