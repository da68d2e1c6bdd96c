"""Post-processing: raw ConvDet output → boxes, scores and labels per image.

As in the original: detection score = max_c p(c | object) · confidence; keep the ``top_k`` (64)
anchors with the highest score, then greedy NMS per class at IoU 0.4. No score threshold by default
(evaluation needs low scores for the PR curve); drawing uses 0.4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from squeezedet.models.detector import HeadOutput
from squeezedet.ops.boxes import batched_nms
from squeezedet.ops.coder import decode


@dataclass(frozen=True)
class PostProcess:
    """Turns a :class:`HeadOutput` into detections.

    Args:
        top_k: anchors kept per image before NMS.
        nms_iou: IoU above which a lower-scoring box of the same class is suppressed.
        score_threshold: minimum detection score kept (0 keeps everything).
    """

    top_k: int = 64
    nms_iou: float = 0.4
    score_threshold: float = 0.0

    def scores(self, head: HeadOutput) -> tuple[Tensor, Tensor]:
        """Detection score ``[B, A]`` and best class ``[B, A]`` for every anchor."""
        probs = torch.softmax(head.class_logits.float(), dim=-1)
        conf = torch.sigmoid(head.conf_logits.float())
        best_p, labels = probs.max(dim=-1)
        return best_p * conf, labels

    def __call__(self, head: HeadOutput, anchors: Tensor,
                 image_size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes": [D, 4] xyxy input pixels, "scores": [D], "labels": int64 [D]}``,
        sorted by decreasing score."""
        scores, labels = self.scores(head)
        k = min(self.top_k, scores.shape[1])
        top_scores, top_idx = scores.topk(k, dim=1)
        deltas = torch.gather(head.deltas.float(), 1, top_idx[..., None].expand(-1, -1, 4))
        boxes = decode(deltas, anchors[top_idx], image_size)
        top_labels = torch.gather(labels, 1, top_idx)
        results = []
        for b in range(scores.shape[0]):
            keep = top_scores[b] >= self.score_threshold
            bx, sc, lb = boxes[b][keep], top_scores[b][keep], top_labels[b][keep]
            kept = batched_nms(bx, sc, lb, self.nms_iou)
            results.append({"boxes": bx[kept], "scores": sc[kept], "labels": lb[kept]})
        return results
