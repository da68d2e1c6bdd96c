import math

import pytest
import torch

from squeezedet.ops.anchors import KITTI_ANCHOR_SHAPES, make_anchors, scale_anchor_shapes
from squeezedet.ops.coder import decode, encode, safe_exp


def test_anchors_2x2_grid_literal():
    # W=100, H=60, gw=gh=2: centres x at 100/3, 200/3; y at 20, 40; shapes (10, 20), (4, 4)
    a = make_anchors((2, 2), (100, 60), [(10, 20), (4, 4)])
    x1, x2 = 100 / 3, 200 / 3
    expected = torch.tensor([
        [x1 - 5, 10, x1 + 5, 30], [x1 - 2, 18, x1 + 2, 22],
        [x2 - 5, 10, x2 + 5, 30], [x2 - 2, 18, x2 + 2, 22],
        [x1 - 5, 30, x1 + 5, 50], [x1 - 2, 38, x1 + 2, 42],
        [x2 - 5, 30, x2 + 5, 50], [x2 - 2, 38, x2 + 2, 42],
    ])
    assert torch.allclose(a, expected, atol=1e-4)


def test_kitti_anchor_count():
    a = make_anchors((78, 24), (1248, 384), KITTI_ANCHOR_SHAPES)
    assert a.shape == (16848, 4)
    # first anchor: centre (1248/79, 384/25), shape (36, 37)
    cx, cy = 1248 / 79, 384 / 25
    assert torch.allclose(a[0], torch.tensor([cx - 18, cy - 18.5, cx + 18, cy + 18.5]))


def test_scale_anchor_shapes():
    assert scale_anchor_shapes([(100, 40)], (1248, 384), (624, 192)) == ((50.0, 20.0),)


def test_encode_hand_values():
    anchor = torch.tensor([0.0, 0.0, 10.0, 20.0])  # centre (5, 10), 10 x 20
    box = torch.tensor([2.0, 4.0, 22.0, 24.0])  # centre (12, 14), 20 x 20
    d = encode(box, anchor)
    assert d.tolist() == pytest.approx([0.7, 0.2, math.log(2), 0.0], abs=1e-6)
    assert decode(d, anchor).tolist() == pytest.approx(box.tolist(), abs=1e-5)


def test_round_trip_random():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 1000
    wh = torch.rand(500, 2, generator=g) * 300 + 1
    boxes = torch.cat((xy, xy + wh), 1)
    ratio = torch.rand(500, 2, generator=g) * 1.5 + 0.5  # anchor / box size in [0.5, 2]
    anchors = torch.cat((xy + 7, xy + 7 + wh * ratio), 1)
    deltas = encode(boxes, anchors)
    assert deltas[:, 2:].abs().max() < 1  # ln(2) < 1: decode is the exact inverse here
    assert torch.allclose(decode(deltas, anchors), boxes, atol=1e-3)
    assert torch.allclose(encode(decode(deltas, anchors), anchors), deltas, atol=1e-4)


def test_safe_exp_values_and_continuity():
    x = torch.tensor([0.0, 1.0, 2.0, -1.0])
    assert safe_exp(x).tolist() == pytest.approx([1.0, math.e, 2 * math.e, math.exp(-1)])
    eps = 1e-4
    left = safe_exp(torch.tensor(1.0 - eps, dtype=torch.float64))
    right = safe_exp(torch.tensor(1.0 + eps, dtype=torch.float64))
    assert (right - left).item() == pytest.approx(2 * eps * math.e, rel=1e-3)  # slope e both sides
    for v in (1.0 - 1e-3, 1.0 + 1e-3):
        x = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        safe_exp(x).backward()
        assert x.grad.item() == pytest.approx(math.e, rel=2e-3)


def test_no_inf_nan_on_extreme_deltas():
    deltas = torch.tensor([[1e4, -1e4, 1e4, -1e4], [-1e4, 1e4, -1e4, 1e4]], requires_grad=True)
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).expand(2, 4)
    boxes = decode(deltas, anchors, image_size=(100, 50))
    assert torch.isfinite(boxes).all()
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= 100).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 50).all()
    unclipped = decode(deltas, anchors)
    unclipped.sum().backward()
    assert torch.isfinite(unclipped).all()
    assert torch.isfinite(deltas.grad).all()
