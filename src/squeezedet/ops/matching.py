"""Target assignment: each ground-truth box gets exactly one anchor.

The rule of the original SqueezeDet, taken box by box in label order: a box takes the highest-IoU
anchor that no earlier box of the same image has taken; when no free anchor overlaps it at all, it
takes the free anchor nearest in squared ``(cx, cy, w, h)`` distance. Every other anchor is a
negative.

The implementation is vectorised over anchors and boxes: in each round every pending box proposes
its best free anchor at once, and the proposals are accepted up to the first box whose proposal
collides with an earlier box's; that prefix is exactly what the sequential rule would give. Rounds
repeat only on collisions, which are rare, so the loop runs a handful of times per image whatever
the number of boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from squeezedet.errors import SqueezeDetError
from squeezedet.ops.boxes import box_iou, xyxy_to_cxcywh


def assign_anchors(boxes: Tensor, anchors: Tensor) -> Tensor:
    """Anchor index for every ground-truth box of one image.

    Args:
        boxes: ``[N, 4]`` xyxy ground-truth boxes (N may be 0), in label order.
        anchors: ``[A, 4]`` xyxy anchors.

    Returns:
        ``int64 [N]`` distinct anchor indices.

    Raises:
        SqueezeDetError: when the image has more boxes than there are anchors.
    """
    n, a = boxes.shape[0], anchors.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=anchors.device)
    if n > a:
        raise SqueezeDetError(
            f"an image has {n} objects but the model has only {a} anchors; use a larger input "
            "size or more anchor shapes, or drop objects from that image"
        )
    iou = box_iou(boxes, anchors)  # [N, A]
    diff = xyxy_to_cxcywh(boxes)[:, None, :] - xyxy_to_cxcywh(anchors)[None, :, :]
    dist = (diff * diff).sum(-1)  # [N, A]
    assigned = torch.full((n,), -1, dtype=torch.long, device=anchors.device)
    taken = torch.zeros(a, dtype=torch.bool, device=anchors.device)
    pending = torch.arange(n, device=anchors.device)
    while pending.numel() > 0:
        best_iou, best = iou[pending].masked_fill(taken, -1.0).max(dim=1)
        nearest = dist[pending].masked_fill(taken, float("inf")).argmin(dim=1)
        choice = torch.where(best_iou > 0, best, nearest)
        collides = (choice[:, None] == choice[None, :]).tril(diagonal=-1).any(dim=1)
        hits = collides.nonzero()
        stop = int(hits[0, 0]) if hits.numel() else choice.numel()
        assigned[pending[:stop]] = choice[:stop]
        taken[choice[:stop]] = True
        pending = pending[stop:]
    return assigned


def build_targets(
    gt_boxes: list[Tensor], gt_labels: list[Tensor], anchors: Tensor
) -> dict[str, Tensor]:
    """Dense per-anchor training targets for a batch.

    Args:
        gt_boxes: per image ``[N_i, 4]`` xyxy boxes in input pixels.
        gt_labels: per image ``int64 [N_i]`` class indices.
        anchors: ``[A, 4]`` xyxy.

    Returns:
        ``mask`` bool ``[B, A]`` (assigned anchors), ``boxes`` ``[B, A, 4]`` (the assigned ground
        truth, zeros elsewhere) and ``labels`` int64 ``[B, A]`` (−1 where not assigned).
    """
    b, a = len(gt_boxes), anchors.shape[0]
    mask = torch.zeros(b, a, dtype=torch.bool, device=anchors.device)
    boxes = torch.zeros(b, a, 4, dtype=anchors.dtype, device=anchors.device)
    labels = torch.full((b, a), -1, dtype=torch.long, device=anchors.device)
    for i, (gtb, gtl) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        idx = assign_anchors(gtb.to(anchors), anchors)
        mask[i, idx] = True
        boxes[i, idx] = gtb.to(anchors)
        labels[i, idx] = gtl.to(anchors.device)
    return {"mask": mask, "boxes": boxes, "labels": labels}
