"""Detector / Detections: mapping back to original pixels, input types, KITTI and JSON output,
drawing. Expected numbers are worked out by hand in the comments."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import squeezedet
from squeezedet.checkpoint import save_checkpoint
from squeezedet.data.kitti_format import read_kitti_file, write_kitti_file
from squeezedet.draw import PALETTE, draw_detections
from squeezedet.errors import DataError, SqueezeDetError
from squeezedet.eval.kitti import read_result_file
from squeezedet.inference import Detections, Detector


class FakeRunner:
    """A runner with a hand-made head: one anchor shape (16×16) on an 8×4 grid at 128×64, two
    classes. Every anchor has confidence logit −10 except the one at row 1, column 2."""

    def __init__(self) -> None:
        self.meta: dict[str, Any] = {"class_names": ["Car", "Pedestrian"], "input_size": [128, 64],
                                     "anchor_shapes": [[16.0, 16.0]]}
        self.device = torch.device("cpu")
        self.calls: list[torch.Tensor] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(images)
        # channels: class logits 0-1 (K=1, C=2), confidence 2, deltas 3-6 (dx, dy, dw, dh)
        out = torch.zeros(images.shape[0], 7, 4, 8)
        out[:, 2] = -10.0
        out[:, 1, 1, 2] = math.log(3.0)  # p(Pedestrian) = 3 / (1 + 3) = 0.75
        out[:, 2, 1, 2] = 5.0
        out[:, 3:7, 1, 2] = torch.tensor([0.25, -0.5, math.log(2.0), 0.0])
        return out


# The anchor at row 1, column 2 of an 8x4 grid at 128x64 is centred at
# (3 * 128 / 9, 2 * 64 / 5) = (42.6667, 25.6). Decoded: cx = 42.6667 + 0.25 * 16 = 46.6667,
# cy = 25.6 - 0.5 * 16 = 17.6, w = 16 * 2 = 32, h = 16, i.e. (30.6667, 9.6, 62.6667, 25.6) in
# network pixels. Score = 0.75 * sigmoid(5) = 0.75 / (1 + e^-5) = 0.744980.
NET_BOX = [30.0 + 2.0 / 3.0, 9.6, 62.0 + 2.0 / 3.0, 25.6]
SCORE = 0.75 / (1.0 + math.exp(-5.0))


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (128, 64, NET_BOX),                                                # network size
        (320, 96, [76.0 + 2.0 / 3.0, 14.4, 156.0 + 2.0 / 3.0, 38.4]),       # ×2.5, ×1.5
        (64, 200, [15.0 + 1.0 / 3.0, 30.0, 31.0 + 1.0 / 3.0, 80.0]),        # ×0.5, ×3.125
    ],
)
def test_boxes_are_mapped_back_to_original_pixels(width: int, height: int,
                                                  expected: list[float]) -> None:
    det = Detector(FakeRunner(), conf=0.4)
    d = det(np.zeros((height, width, 3), dtype=np.uint8))
    assert isinstance(d, Detections)
    assert d.orig_size == (height, width)
    assert d.names == ["Pedestrian"]
    torch.testing.assert_close(d.boxes, torch.tensor([expected]), rtol=0, atol=1e-4)
    torch.testing.assert_close(d.scores, torch.tensor([SCORE]), rtol=0, atol=1e-6)
    assert d.labels.tolist() == [1]


def test_a_batch_of_different_sizes_maps_each_image_with_its_own_scale() -> None:
    runner = FakeRunner()
    det = Detector(runner, conf=0.4, batch_size=8)
    images = [np.zeros((96, 320, 3), np.uint8), np.zeros((200, 64, 3), np.uint8)]
    out = det(images)
    assert isinstance(out, list) and len(out) == 2
    assert len(runner.calls) == 1 and runner.calls[0].shape == (2, 3, 64, 128)
    torch.testing.assert_close(out[0].boxes[0, 2], torch.tensor(156.0 + 2.0 / 3.0), atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(out[1].boxes[0, 3], torch.tensor(80.0), atol=1e-4, rtol=0)


def test_conf_zero_keeps_the_low_scores_and_batches_are_split() -> None:
    runner = FakeRunner()
    det = Detector(runner, conf=0.0, batch_size=2)
    out = det([np.zeros((64, 128, 3), np.uint8)] * 3)
    assert [c.shape[0] for c in runner.calls] == [2, 1]
    # 32 anchors: one scores 0.745, the other 31 score 0.5 * sigmoid(-10). No pair overlaps by
    # IoU >= 0.4, whatever the classes: 16x16 boxes 14.22 px apart in x overlap by
    # 1.78 * 16 / (512 - 28.4) = 0.06, 12.8 px apart in y by 3.2 * 16 / (512 - 51.2) = 0.11; the
    # 32x16 box meets its right neighbour in 13.78 x 8 px, IoU 110.2 / 657.8 = 0.17. So all stay.
    assert all(len(d) == 32 for d in out)
    assert float(out[0].scores[1]) == pytest.approx(0.5 / (1.0 + math.exp(10.0)), rel=1e-4)


def test_pre_processing_gives_the_runner_rgb_0_255_at_network_size() -> None:
    runner = FakeRunner()
    det = Detector(runner)
    rgb = np.empty((30, 50, 3), np.uint8)
    rgb[...] = (10, 20, 200)
    det(rgb)
    det(np.ascontiguousarray(rgb[:, :, ::-1]), channel_order="bgr")
    for x in runner.calls:  # a constant image stays constant under bilinear resizing
        assert x.dtype == torch.float32 and x.shape == (1, 3, 64, 128)
        assert torch.equal(x[0, :, 5, 7], torch.tensor([10.0, 20.0, 200.0]))
        assert float(x.min()) == 10.0 and float(x.max()) == 200.0


# ------------------------------------------------------------------ a real (tiny) checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 128x64 SqueezeDet with random weights; ConvDet scaled up so scores depend on the image."""
    torch.manual_seed(0)
    model = squeezedet.create_model("squeezedet", input_size=(128, 64))
    torch.nn.init.normal_(model.convdet.weight, std=0.003)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, path)
    return path


@pytest.fixture(scope="module")
def detector(checkpoint: Path) -> Detector:
    return Detector.from_checkpoint(checkpoint, device="cpu", backend="torch", conf=0.0)


def _random_image(seed: int, height: int = 50, width: int = 100) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _same(a: Detections, b: Detections, atol: float = 1e-4) -> None:
    torch.testing.assert_close(a.boxes, b.boxes, rtol=0, atol=atol)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=atol / 100)
    assert torch.equal(a.labels, b.labels)
    assert a.orig_size == b.orig_size


def test_every_input_type_gives_the_same_detections(detector: Detector, tmp_path: Path) -> None:
    rgb = _random_image(1)
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    reference = detector(str(path))
    assert isinstance(reference, Detections)
    assert len(reference) > 5 and float(reference.scores.max()) > float(reference.scores.min())
    assert reference.source == str(path) and reference.image is None
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    singles = [
        detector(path),
        detector(Image.open(path)),
        detector(Image.fromarray(rgb).convert("RGBA")),
        detector(rgb),
        detector(rgb.astype(np.float32)),
        detector(bgr, channel_order="bgr"),
        detector(chw),
        detector(chw.float()),
        detector(chw.flip(0), channel_order="bgr"),
    ]
    for d in singles:
        assert isinstance(d, Detections)
        _same(d, reference)
    batched = [detector(rgb[None]), detector(chw[None]), detector([str(path)]), detector((rgb,))]
    for out in batched:
        assert isinstance(out, list) and len(out) == 1
        _same(out[0], reference)


def test_a_batch_equals_the_images_one_by_one(detector: Detector) -> None:
    images = [_random_image(2, 50, 100), _random_image(3, 80, 60), _random_image(4, 64, 128)]
    together = detector(images)
    for image, d in zip(images, together, strict=True):
        _same(d, detector(image), atol=1e-3)  # batched convolutions round differently


def test_boxes_lie_inside_the_original_image(detector: Detector) -> None:
    d = detector(_random_image(5, 37, 211))
    assert float(d.boxes.min()) >= 0.0
    assert float(d.boxes[:, [0, 2]].max()) <= 211.0 and float(d.boxes[:, [1, 3]].max()) <= 37.0
    assert torch.all(d.scores[:-1] >= d.scores[1:])


def test_kitti_output_round_trips_through_the_evaluators_parser(detector: Detector,
                                                                tmp_path: Path) -> None:
    d = detector(_random_image(6, 90, 300))
    path = tmp_path / "000001.txt"
    write_kitti_file(path, d.to_kitti())
    for objs in (read_result_file(path), read_kitti_file(path)):
        assert len(objs) == len(d)
        assert [o.type for o in objs] == d.names
        boxes = torch.tensor([o.box for o in objs])
        torch.testing.assert_close(boxes, d.boxes, rtol=0, atol=0.005 + 1e-4)  # 2 decimals
        scores = torch.tensor([o.score for o in objs])
        torch.testing.assert_close(scores, d.scores, rtol=0, atol=5e-7 + 1e-7)  # 6 decimals
    assert len(d.to_kitti(min_score=1.1)) == 0


def test_json_output(detector: Detector) -> None:
    d = detector(_random_image(7))
    data = json.loads(d.to_json())
    assert (data["width"], data["height"], data["image"]) == (100, 50, None)
    assert len(data["detections"]) == len(d)
    first = data["detections"][0]
    assert first["class"] == d.names[0] and first["label"] == int(d.labels[0])
    assert first["score"] == pytest.approx(float(d.scores[0]), abs=1e-6)
    assert first["box"] == pytest.approx(d.boxes[0].tolist(), abs=1e-3)
    assert json.loads(d.to_json(indent=1)) == data  # one detection a line, same content
    assert json.loads(d.to_json(min_score=1.1, indent=1))["detections"] == []
    threshold = float(d.scores[2])
    assert len(json.loads(d.to_json(min_score=threshold))["detections"]) == 3


def test_plot_returns_the_image_with_boxes(detector: Detector, tmp_path: Path) -> None:
    rgb = _random_image(8)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    from_array = detector(rgb).plot()
    from_file = detector(path).plot()  # read again from the source file
    assert from_array.size == (100, 50) and from_array.mode == "RGB"
    assert np.array_equal(np.asarray(from_array), np.asarray(from_file))
    assert not np.array_equal(np.asarray(from_array), rgb)
    # above every score: nothing drawn
    assert np.array_equal(np.asarray(detector(rgb).plot(min_score=1.1)), rgb)


def test_draw_detections_draws_the_class_colour_on_the_outline_only() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    # box x 10..50, y 30..55; line width 2 drawn inwards: columns 10-11 and 48-49, rows 30-31
    # and 53-54. The label (font 11 px + 4 px padding) sits above it, in rows < 30.
    drawn = np.asarray(draw_detections(image, [[10, 30, 50, 55]], [0.9], [1], ["Car", "Ped"],
                                       line_width=2, font_size=11))
    ped = PALETTE[1]
    assert tuple(drawn[54, 30]) == ped and tuple(drawn[40, 10]) == ped
    assert tuple(drawn[40, 49]) == ped and tuple(drawn[31, 30]) == ped
    assert tuple(drawn[42, 30]) == (0, 0, 0)  # inside the box
    assert tuple(drawn[58, 70]) == (0, 0, 0)  # outside
    assert np.any(np.all(drawn[:30] == ped, axis=-1))  # the label background above the box
    assert image.max() == 0  # input untouched


def test_a_small_boxs_label_follows_its_size() -> None:
    """On a 1000 px high image the default label text is 35 px (3.5 %); a box 30 px high gets
    text of 40 % of that, 12 px: its label (text plus 4 px padding) spans at most 16 rows above
    it, where the image's size alone would give some 30. A tall box keeps the image's size."""
    from squeezedet.draw import label_font_size

    assert (label_font_size(30, 35), label_font_size(200, 35), label_font_size(6, 35)) == (12, 35, 9)
    image = np.zeros((1000, 400, 3), np.uint8)
    drawn = np.asarray(draw_detections(image, [[100, 500, 130, 530]], [0.9], [1], ["Car", "Ped"],
                                       line_width=2))
    rows = np.nonzero(np.all(drawn[:500] == PALETTE[1], axis=-1).any(axis=1))[0]
    assert 9 <= len(rows) <= 16 and rows.max() == 499  # right above the box


def test_bad_inputs_raise_one_line_errors(detector: Detector, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        detector(bad)
    with pytest.raises(SqueezeDetError, match="shape"):
        detector(np.zeros((4, 5, 6, 7, 8), np.uint8)[0, 0])
    with pytest.raises(SqueezeDetError, match="channel_order"):
        detector(np.zeros((8, 8, 3), np.uint8), channel_order="rbg")  # type: ignore[arg-type]
    with pytest.raises(SqueezeDetError, match="cannot read an image"):
        detector(42)  # type: ignore[arg-type]
    with pytest.raises(SqueezeDetError, match="not found"):
        Detector.from_checkpoint(tmp_path / "missing.pt")
    with pytest.warns(UserWarning, match="0–255"):
        detector(torch.rand(3, 20, 20))


def test_network_batch_layouts_and_uint8_hold_the_same_pixels():
    from squeezedet.deployment.preprocess import network_batch

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (30, 50, 3), dtype=np.uint8) for _ in range(2)]
    nchw = network_batch(arrays, (50, 30))  # same size: the resize leaves the pixels alone
    nhwc = network_batch(arrays, (50, 30), channels_last=True)
    raw = network_batch(arrays, (50, 30), channels_last=True, uint8=True)
    assert nchw.dtype == nhwc.dtype == torch.float32 and raw.dtype == torch.uint8
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and nchw.is_contiguous()
    assert raw.is_contiguous(memory_format=torch.channels_last)
    expected = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    assert torch.equal(nchw, expected.float()) and torch.equal(nhwc, expected.float())
    assert torch.equal(raw, expected)
    raw_nchw = network_batch(arrays, (50, 30), uint8=True)
    assert raw_nchw.dtype == torch.uint8 and raw_nchw.is_contiguous()
    assert torch.equal(raw_nchw, expected)


def test_mirror_tta_sees_an_image_and_its_mirror_alike(tmp_path: Path) -> None:
    """With ``tta="hflip"`` an image and its mirror image are detected in the same two views
    (each is the other's mirrored view), so their detections are mirror images of each other;
    without it, a random model's are not."""
    from random_model import random_checkpoint

    weights = random_checkpoint(tmp_path, (128, 64))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)  # the network's size: no resize
    mirror = np.ascontiguousarray(image[:, ::-1])

    def mirrored(det: Detections) -> list[list[float]]:
        b = det.boxes
        return sorted(torch.stack([128 - b[:, 2], b[:, 1], 128 - b[:, 0], b[:, 3]], 1).tolist())

    tta = Detector.from_checkpoint(weights, conf=0.0, tta="hflip")
    a, b = tta(image), tta(mirror)
    assert len(a) == len(b) > 0
    assert np.allclose(sorted(a.boxes.tolist()), mirrored(b), atol=1e-3)
    plain = Detector.from_checkpoint(weights, conf=0.0)
    a, b = plain(image), plain(mirror)
    assert len(a) != len(b) or not np.allclose(sorted(a.boxes.tolist()), mirrored(b), atol=1e-3)
    with pytest.raises(SqueezeDetError, match="tta must be one of none, hflip, flips"):
        Detector.from_checkpoint(weights, tta="rot90")
