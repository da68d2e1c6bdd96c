"""SqueezeDet's multi-task loss, returning each term by name.

With ``m`` = 1 on assigned anchors, ``N`` assigned anchors in the batch, ``A`` anchors per image and
``B`` images (weights from the original KITTI config):

- ``bbox``  = λ_bbox / N · Σ m · ‖δ̂ − δ*‖²                                         (λ_bbox = 5)
- ``conf``  = mean over images of Σ_a (IoU·m − σ(ĉ))² · (m·λ⁺/N + (1 − m)·λ⁻/(A − N)),
  (λ⁺ = 75, λ⁻ = 100, A − N clamped at 1) where IoU is between the decoded (clipped) predicted
  box and its ground truth, computed without gradient;
- ``class`` = λ_cls / N · Σ m · Σ_c [−l_c·log(p_c + ε) − (1 − l_c)·log(1 − p_c + ε)], p = softmax
  (the original code's binary cross-entropy on softmax outputs; λ_cls = 1, ε = 1e-16).

``total`` is their sum. Weight decay is applied by the optimiser, not here. When a batch has no
objects, N is taken as 1 so every term stays finite (the box and class terms are then 0).

Data-parallel training splits a batch across processes. Given ``num_assigned`` (N of the whole
batch) and ``num_images`` (its B), a process's terms are its share of the whole batch's: summed
over the processes they give exactly the loss of the whole batch in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from squeezedet.models.detector import HeadOutput
from squeezedet.ops.boxes import elementwise_iou
from squeezedet.ops.coder import decode, encode


@dataclass(frozen=True)
class LossWeights:
    """Loss coefficients of the original KITTI configuration."""

    bbox: float = 5.0
    conf_pos: float = 75.0
    conf_neg: float = 100.0
    cls: float = 1.0
    eps: float = 1e-16


class SqueezeDetLoss(torch.nn.Module):
    """Loss of a :class:`~squeezedet.models.detector.HeadOutput` against dense anchor targets."""

    def __init__(self, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.w = weights or LossWeights()

    def forward(self, head: HeadOutput, targets: dict[str, Tensor], anchors: Tensor,
                image_size: tuple[int, int], num_assigned: Tensor | None = None,
                num_images: int | None = None) -> dict[str, Tensor]:
        """Named loss terms.

        Args:
            head: per-anchor predictions, ``A`` anchors per image.
            targets: from :func:`~squeezedet.ops.matching.build_targets`: ``mask [B, A]``,
                ``boxes [B, A, 4]`` xyxy, ``labels [B, A]``.
            anchors: ``[A, 4]`` xyxy.
            image_size: ``(W, H)`` to clip decoded boxes for the IoU target.
            num_assigned: N counted over a batch of which this is a part (scalar); default: here.
            num_images: B of that batch; default: this batch's.
        """
        w = self.w
        mask = targets["mask"]
        m = mask.to(head.deltas.dtype)
        b, a = mask.shape
        n_batch = m.sum() if num_assigned is None else num_assigned.to(m.dtype)
        n = n_batch.clamp(min=1.0)

        deltas = head.deltas.float()
        gt_boxes = targets["boxes"].float()
        # encode only where assigned; elsewhere use the anchor itself so log() sees valid sizes
        safe_gt = torch.where(mask[..., None], gt_boxes, anchors.expand_as(gt_boxes))
        target_deltas = encode(safe_gt, anchors.expand_as(safe_gt))
        bbox = w.bbox / n * (m[..., None] * (deltas - target_deltas) ** 2).sum()

        with torch.no_grad():
            pred_boxes = decode(deltas, anchors, image_size)
            iou = elementwise_iou(pred_boxes, gt_boxes) * m
        conf = torch.sigmoid(head.conf_logits.float())
        # as in the original: negatives share λ⁻ over (A − N), with N counted over the batch
        neg_count = (a - n_batch).clamp(min=1.0)
        weight = m * (w.conf_pos / n) + (1 - m) * (w.conf_neg / neg_count)
        per_image = ((iou - conf) ** 2 * weight).sum(dim=1)
        conf_loss = per_image.mean() if num_images is None else per_image.sum() / num_images

        labels = targets["labels"].clamp(min=0)
        probs = torch.softmax(head.class_logits.float(), dim=-1)
        onehot = torch.nn.functional.one_hot(labels, probs.shape[-1]).to(probs.dtype)
        bce = -onehot * torch.log(probs + w.eps) - (1 - onehot) * torch.log(1 - probs + w.eps)
        cls = w.cls / n * (m * bce.sum(dim=-1)).sum()

        return {"bbox": bbox, "conf": conf_loss, "class": cls, "total": bbox + conf_loss + cls}
