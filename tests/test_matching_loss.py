import math

import pytest
import torch

from squeezedet.errors import SqueezeDetError
from squeezedet.loss import SqueezeDetLoss
from squeezedet.models.detector import HeadOutput
from squeezedet.ops.boxes import box_iou, xyxy_to_cxcywh
from squeezedet.ops.matching import assign_anchors, build_targets
from squeezedet.postprocess import PostProcess

ANCHORS = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [100, 100, 110, 110]])


def test_assignment_best_iou_then_nearest_free():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]])
    # box 0 takes anchor 0 (IoU 1). Box 1's best anchor (0) is taken and no free anchor overlaps
    # it, so it takes the nearest free one in (cx, cy, w, h): anchor 1 at squared distance
    # (25-6)^2 + (5-6)^2 = 362, against (105-6)^2 * 2 for anchor 2.
    assert assign_anchors(boxes, ANCHORS).tolist() == [0, 1]


def test_assignment_empty_image_and_too_many_objects():
    assert assign_anchors(torch.zeros(0, 4), ANCHORS).tolist() == []
    with pytest.raises(SqueezeDetError, match="4 objects but the model has only 3 anchors"):
        assign_anchors(torch.zeros(4, 4) + torch.tensor([0.0, 0, 1, 1]), ANCHORS)


def _sequential_reference(boxes, anchors):
    iou = box_iou(boxes, anchors)
    d = xyxy_to_cxcywh(boxes)[:, None] - xyxy_to_cxcywh(anchors)[None]
    dist = (d * d).sum(-1)
    taken, out = set(), []
    for i in range(len(boxes)):
        free = [j for j in range(len(anchors)) if j not in taken]
        best = max(free, key=lambda j: (iou[i, j].item(), -j))
        if iou[i, best] <= 0:
            best = min(free, key=lambda j: (dist[i, j].item(), j))
        taken.add(best)
        out.append(best)
    return out


def test_assignment_matches_sequential_rule_and_is_unique():
    from squeezedet.ops.anchors import make_anchors

    anchors = make_anchors((6, 3), (96, 48), [(10, 10), (20, 12), (8, 20)])
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        n = int(torch.randint(1, 40, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([90.0, 40])
        wh = torch.rand(n, 2, generator=g) * 20 + 2
        # crowd the boxes so collisions happen
        boxes = torch.cat((xy, xy + wh), 1)
        got = assign_anchors(boxes, anchors)
        assert got.unique().numel() == n
        assert got.tolist() == _sequential_reference(boxes, anchors)


def test_build_targets_batch_with_empty_image():
    t = build_targets([torch.tensor([[0.0, 0, 10, 10]]), torch.zeros(0, 4)],
                      [torch.tensor([2]), torch.zeros(0, dtype=torch.long)], ANCHORS)
    assert t["mask"].tolist() == [[True, False, False], [False, False, False]]
    assert t["labels"].tolist() == [[2, -1, -1], [-1, -1, -1]]
    assert t["boxes"][0, 0].tolist() == [0, 0, 10, 10]


def _tiny_case():
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    targets = build_targets([torch.tensor([[0.0, 0, 10, 10]])], [torch.tensor([1])], anchors)
    deltas = torch.tensor([[[0.1, 0, 0, 0], [1.0, 1, 1, 1]]], requires_grad=True)
    conf = torch.zeros(1, 2, requires_grad=True)
    cls = torch.tensor([[[0.0, math.log(3)], [5.0, -5.0]]], requires_grad=True)
    return HeadOutput(cls, conf, deltas), targets, anchors


def test_loss_terms_by_hand():
    head, targets, anchors = _tiny_case()
    loss = SqueezeDetLoss()(head, targets, anchors, image_size=(100, 100))
    # bbox: 5 / N * 0.1^2 with N = 1; the unassigned anchor's deltas do not count
    assert loss["bbox"].item() == pytest.approx(0.05, rel=1e-6)
    # predicted box (1, 0, 11, 10) vs ground truth (0, 0, 10, 10): IoU = 90 / 110.
    # conf: (9/11 - 0.5)^2 * 75 / 1 + (0 - 0.5)^2 * 100 / (A - N = 1)
    assert loss["conf"].item() == pytest.approx((9 / 11 - 0.5) ** 2 * 75 + 25, rel=1e-6)
    # class: p = (1/4, 3/4), label 1: -log(3/4) - log(1 - 1/4)
    assert loss["class"].item() == pytest.approx(-2 * math.log(0.75), rel=1e-6)
    assert loss["total"].item() == pytest.approx(
        0.05 + (9 / 11 - 0.5) ** 2 * 75 + 25 - 2 * math.log(0.75), rel=1e-6)


def test_confidence_target_carries_no_gradient():
    head, targets, anchors = _tiny_case()
    loss = SqueezeDetLoss()(head, targets, anchors, image_size=(100, 100))
    loss["conf"].backward()
    assert head.deltas.grad is None or torch.count_nonzero(head.deltas.grad) == 0
    # d/dc of (t - sigmoid(c))^2 * 75 at c = 0: -2 (t - 0.5) * 0.25 * 75
    assert head.conf_logits.grad[0, 0].item() == pytest.approx(-2 * (9 / 11 - 0.5) * 0.25 * 75,
                                                               rel=1e-5)


def test_loss_on_batch_without_objects_is_finite():
    anchors = ANCHORS
    targets = build_targets([torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)], anchors)
    head = HeadOutput(torch.zeros(1, 3, 2), torch.zeros(1, 3), torch.zeros(1, 3, 4))
    loss = SqueezeDetLoss()(head, targets, anchors, image_size=(200, 200))
    assert loss["bbox"].item() == 0 and loss["class"].item() == 0
    # all three anchors negative: 3 * 0.25 * 100 / 3
    assert loss["conf"].item() == pytest.approx(25.0)


def test_postprocess_top_k_threshold_and_per_class_nms():
    anchors = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]])
    # class probabilities: anchors 0, 1, 3 -> class 0 (p = 1), anchor 2 -> class 1
    big = 20.0
    cls = torch.tensor([[[big, 0], [big, 0], [0, big], [big, 0]]])
    conf = torch.logit(torch.tensor([[0.9, 0.8, 0.7, 0.3]]))
    head = HeadOutput(cls, conf, torch.zeros(1, 4, 4))
    out = PostProcess()(head, anchors, (100, 100))[0]
    # anchor 1 overlaps anchor 0 (same class) at 90/110 > 0.4 -> suppressed; anchor 2 is class 1
    assert out["labels"].tolist() == [0, 1, 0]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7, 0.3], abs=1e-5)
    assert out["boxes"][1].tolist() == [0, 0, 10, 10]
    out = PostProcess(score_threshold=0.4)(head, anchors, (100, 100))[0]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7], abs=1e-5)
    out = PostProcess(top_k=2)(head, anchors, (100, 100))[0]
    assert out["scores"].tolist() == pytest.approx([0.9], abs=1e-5)


def test_detection_score_by_hand():
    # anchor 0: logits (0, ln 2, 0) -> p = (1/4, 2/4, 1/4), best class 1 with 0.5; confidence
    # logit 0 -> 0.5; score 0.25. Anchor 1: logits (ln 3, 0, 0) -> 3/5 for class 0; confidence
    # logit ln 4 -> 4/5; score 0.48
    head = HeadOutput(class_logits=torch.tensor([[[0.0, math.log(2), 0.0], [math.log(3), 0.0, 0.0]]]),
                      conf_logits=torch.tensor([[0.0, math.log(4)]]), deltas=torch.zeros(1, 2, 4))
    scores, labels = PostProcess().scores(head)
    assert labels.tolist() == [[1, 0]]
    assert scores[0].tolist() == pytest.approx([0.25, 0.48], rel=1e-6)


def test_unflip_boxes_by_hand():
    from squeezedet.postprocess import flip_view, unflip_boxes

    box = torch.tensor([[10.0, 5, 30, 20]])  # in an image of 100 x 50 (W x H)
    assert unflip_boxes(box, (True, False), (100, 50)).tolist() == [[70, 5, 90, 20]]
    assert unflip_boxes(box, (False, True), (100, 50)).tolist() == [[10, 30, 30, 45]]
    assert unflip_boxes(box, (True, True), (100, 50)).tolist() == [[70, 30, 90, 45]]
    image = torch.arange(6.0).reshape(1, 1, 2, 3)  # rows [0 1 2], [3 4 5]
    assert flip_view(image, (True, False))[0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert flip_view(image, (True, True))[0, 0].tolist() == [[5, 4, 3], [2, 1, 0]]


def test_merge_views_maps_the_mirrored_views_boxes_back_and_suppresses_once():
    from squeezedet.postprocess import TTA_VIEWS

    # anchors in a 100 x 100 image: A at the left, its mirror image A' at the right, B alone
    anchors = torch.tensor([[10.0, 10, 30, 30], [70, 10, 90, 30], [40, 60, 60, 80]])
    cls = torch.zeros(1, 3, 1)

    def head(scores):
        return HeadOutput(cls, torch.logit(torch.tensor([scores])), torch.zeros(1, 3, 4))

    plain = head([0.9, 0.01, 0.01])  # the image: A
    mirrored = head([0.01, 0.8, 0.6])  # the mirrored image: A' (= A mirrored back) and B
    out = PostProcess().merge_views([plain, mirrored], TTA_VIEWS["hflip"], anchors, (100, 100))[0]
    # A (0.9) and A' mirrored back (0.8) are the same box: one kept; B mirrored back is
    # x 100-60 .. 100-40; the 0.01 candidates of both views are left (no threshold)
    assert out["scores"][:2].tolist() == pytest.approx([0.9, 0.6], abs=1e-5)
    assert out["boxes"][:2].tolist() == [[10, 10, 30, 30], [40, 60, 60, 80]]
    assert len(out["scores"]) == 3  # + the 0.01 at A' of the plain view (x 70-90)
    assert out["boxes"][2].tolist() == [70, 10, 90, 30]
