import math

import pytest
import torch

from squeezedet.ops.boxes import (
    batched_nms,
    box_iou,
    clip_boxes,
    cxcywh_to_xyxy,
    elementwise_iou,
    nms,
    xyxy_to_cxcywh,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((0, 0, 2, 2), (1, 1, 3, 3), 1 / 7),  # overlap 1, union 4 + 4 - 1
        ((0, 0, 2, 2), (0, 0, 2, 2), 1.0),
        ((0, 0, 4, 4), (1, 1, 3, 3), 4 / 16),  # contained
        ((0, 0, 1, 1), (1, 0, 2, 1), 0.0),  # touching edges
        ((0, 0, 1, 1), (5, 5, 6, 6), 0.0),  # disjoint
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
    ],
)
def test_iou_cases(a, b, expected):
    assert box_iou(t(a), t(b))[0, 0].item() == pytest.approx(expected, abs=1e-6)
    assert elementwise_iou(t(a)[0], t(b)[0]).item() == pytest.approx(expected, abs=1e-6)


def test_iou_matrix_shape_and_degenerate_boxes():
    iou = box_iou(t((0, 0, 2, 2), (3, 3, 3, 3)), t((0, 0, 2, 2), (1, 1, 3, 3), (3, 3, 3, 3)))
    assert iou.shape == (2, 3)
    assert iou[1].tolist() == [0.0, 0.0, 0.0]  # empty box: never NaN
    assert not torch.isnan(iou).any()


def test_cxcywh_round_trip():
    boxes = t((0, 0, 10, 20), (5.5, 3.25, 7.5, 9.0))
    c = xyxy_to_cxcywh(boxes)
    assert c[0].tolist() == [5.0, 10.0, 10.0, 20.0]
    assert torch.allclose(cxcywh_to_xyxy(c), boxes)


def test_clip():
    out = clip_boxes(t((-5, -1, 50, 8)), width=40, height=6)
    assert out.tolist() == [[0, 0, 40, 6]]


def test_nms_hand_made_set():
    boxes = t((0, 0, 10, 10), (1, 0, 11, 10), (20, 20, 30, 30), (5, 0, 15, 10))
    scores = torch.tensor([0.9, 0.8, 0.7, 0.5])
    # b1 overlaps b0 at 90/110 > 0.4: suppressed. b3 overlaps b0 at 50/150 < 0.4 and b1 at
    # 60/140 > 0.4, but b1 is already suppressed, so b3 stays (greedy NMS).
    assert nms(boxes, scores, 0.4).tolist() == [0, 2, 3]
    # unsorted input order: indices refer to the input, output by decreasing score
    perm = torch.tensor([3, 2, 1, 0])
    assert nms(boxes[perm], scores[perm], 0.4).tolist() == [3, 1, 0]


def test_nms_threshold_is_strict():
    boxes = t((0, 0, 10, 10), (5, 0, 15, 10))  # IoU exactly 1/3
    kept = nms(boxes, torch.tensor([0.9, 0.8]), 1 / 3)
    assert kept.tolist() == [0, 1]


def test_batched_nms_keeps_other_classes():
    boxes = t((0, 0, 10, 10), (0, 0, 10, 10), (1, 0, 11, 10))
    scores = torch.tensor([0.9, 0.6, 0.8])
    labels = torch.tensor([0, 1, 0])
    assert batched_nms(boxes, scores, labels, 0.4).tolist() == [0, 1]


def test_nms_empty():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.4).numel() == 0
    assert math.isclose(0.4, 0.4)
