"""Post-processing: raw ConvDet output → boxes, scores and labels per image.

As in the original: detection score = max_c p(c | object) · confidence; keep the ``top_k`` (64)
anchors with the highest score, then greedy NMS per class at IoU 0.4. No score threshold by default
(evaluation needs low scores for the PR curve); drawing uses 0.4.

Test-time flips (``tta``, not in the original): the image is also detected mirrored (``hflip``),
or mirrored, upside down and both (``flips``, for top-down imagery); each view's ``top_k``
candidates are mapped back into the image and one NMS runs over all of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from squeezedet.data.images import ChannelOrder, ImageInput, as_rgb_arrays, load_image
from squeezedet.data.kitti_format import KittiObject
from squeezedet.errors import SqueezeDetError
from squeezedet.models.detector import HeadOutput
from squeezedet.ops.boxes import batched_nms
from squeezedet.ops.coder import decode

#: test-time flip views, each ``(mirrored left-right, upside down)``; the first is the image
TTA_VIEWS: dict[str, tuple[tuple[bool, bool], ...]] = {
    "none": ((False, False),),
    "hflip": ((False, False), (True, False)),
    "flips": ((False, False), (True, False), (False, True), (True, True)),
}


def flip_view(batch: Tensor, view: tuple[bool, bool]) -> Tensor:
    """``batch`` ``[B, C, H, W]`` as ``view`` of :data:`TTA_VIEWS` sees it."""
    dims = [dim for dim, on in ((-1, view[0]), (-2, view[1])) if on]
    return batch.flip(dims) if dims else batch


def unflip_boxes(boxes: Tensor, view: tuple[bool, bool], image_size: tuple[int, int]) -> Tensor:
    """xyxy ``boxes`` found in ``view`` of an image of ``(W, H)`` pixels, in the image's pixels."""
    out = boxes.clone()
    if view[0]:
        out[..., 0], out[..., 2] = image_size[0] - boxes[..., 2], image_size[0] - boxes[..., 0]
    if view[1]:
        out[..., 1], out[..., 3] = image_size[1] - boxes[..., 3], image_size[1] - boxes[..., 1]
    return out


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
        # the largest softmax probability without the softmax: at the best logit m it is
        # exp(0) / Σ_c exp(l_c − m) = 1 / Σ_c exp(l_c − m), the softmax's own arithmetic there.
        # torch's softmax over 3 classes is slow per row: 1.07 of 2.2 ms for 16,848 anchors
        logits = head.class_logits.float()
        best, labels = logits.max(dim=-1)
        best_p = torch.exp(logits - best[..., None]).sum(dim=-1).reciprocal_()
        conf = torch.sigmoid(head.conf_logits.float())
        return best_p * conf, labels

    def __call__(self, head: HeadOutput, anchors: Tensor,
                 image_size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes": [D, 4] xyxy input pixels, "scores": [D], "labels": int64 [D]}``,
        sorted by decreasing score."""
        return self.suppress(*self.candidates(head, anchors, image_size))

    def candidates(self, head: HeadOutput, anchors: Tensor,
                   image_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """The ``top_k`` highest-scoring anchors' boxes ``[B, k, 4]`` (xyxy input pixels),
        scores ``[B, k]`` and labels ``[B, k]``."""
        scores, labels = self.scores(head)
        k = min(self.top_k, scores.shape[1])
        top_scores, top_idx = scores.topk(k, dim=1)
        deltas = torch.gather(head.deltas.float(), 1, top_idx[..., None].expand(-1, -1, 4))
        boxes = decode(deltas, anchors[top_idx], image_size)
        return boxes, top_scores, torch.gather(labels, 1, top_idx)

    def suppress(self, boxes: Tensor, scores: Tensor, labels: Tensor) -> list[dict[str, Tensor]]:
        """Per image, the candidates at or above ``score_threshold`` after per-class NMS."""
        results = []
        for b in range(scores.shape[0]):
            keep = scores[b] >= self.score_threshold
            bx, sc, lb = boxes[b][keep], scores[b][keep], labels[b][keep]
            kept = batched_nms(bx, sc, lb, self.nms_iou)
            results.append({"boxes": bx[kept], "scores": sc[kept], "labels": lb[kept]})
        return results

    def merge_views(self, heads: Sequence[HeadOutput], views: Sequence[tuple[bool, bool]],
                    anchors: Tensor, image_size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """As :meth:`__call__` for a batch detected in several ``views`` (one head each, see
        :data:`TTA_VIEWS`): every view's candidates in the image's pixels, one NMS over all."""
        if len(heads) == 1 and not any(views[0]):  # the image alone: no copies
            return self(heads[0], anchors, image_size)
        parts = [self.candidates(head, anchors, image_size) for head in heads]
        boxes = torch.cat([unflip_boxes(p[0], v, image_size)
                           for p, v in zip(parts, views, strict=True)], dim=1)
        return self.suppress(boxes, torch.cat([p[1] for p in parts], dim=1),
                             torch.cat([p[2] for p in parts], dim=1))


def to_original_pixels(boxes: Tensor, input_size: tuple[int, int],
                       orig_size: tuple[int, int]) -> Tensor:
    """Map xyxy boxes from network-input pixels ``(W, H)`` to an image of ``orig_size (H0, W0)``."""
    sx = orig_size[1] / input_size[0]
    sy = orig_size[0] / input_size[1]
    return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)


def detections_to_kitti(det: dict[str, Tensor], class_names: Sequence[str]) -> list[KittiObject]:
    """KITTI result objects (16 fields, 3-D fields 'unknown') for one image's detections."""
    return [
        KittiObject(type=class_names[int(lab)], box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                    score=float(s))
        for box, s, lab in zip(det["boxes"].tolist(), det["scores"].tolist(),
                               det["labels"].tolist(), strict=True)
    ]


@dataclass(frozen=True, eq=False)
class Detections:
    """The detections of one image, in that image's original pixels.

    Attributes:
        boxes: ``float32 [N, 4]`` xyxy, absolute pixels of the original image.
        scores: ``float32 [N]`` detection scores ``max_c p(c | object) · confidence`` in [0, 1],
            sorted in decreasing order.
        labels: ``int64 [N]`` class indices into ``class_names``.
        class_names: the model's class names.
        orig_size: ``(H, W)`` of the original image in pixels.
        source: the file the image came from, when it came from a file.
        image: the original image, ``uint8 [H, W, 3]`` RGB, when kept (arrays, Pillow images and
            tensors keep it; for files ``None`` and :meth:`plot` reads ``source`` again).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    class_names: tuple[str, ...]
    orig_size: tuple[int, int]
    source: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def names(self) -> list[str]:
        """The class name of every detection, ``[N]``."""
        return [self.class_names[int(i)] for i in self.labels.tolist()]

    def filter(self, min_score: float) -> Detections:
        """The detections scoring at least ``min_score``."""
        keep = self.scores >= min_score
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep],
                          self.class_names, self.orig_size, self.source, self.image)

    def to_kitti(self, min_score: float = 0.0) -> list[KittiObject]:
        """KITTI result objects (16 fields, 3-D fields 'unknown'), boxes in original pixels; write
        them with :func:`squeezedet.data.kitti_format.write_kitti_file`."""
        d = self.filter(min_score)
        return detections_to_kitti({"boxes": d.boxes, "scores": d.scores, "labels": d.labels},
                                   self.class_names)

    def to_dict(self, min_score: float = 0.0) -> dict[str, Any]:
        """A JSON-ready dict: ``image`` (source or null), ``width``, ``height`` (pixels) and
        ``detections``, a list of ``{"class", "label", "score", "box": [x1, y1, x2, y2]}`` with
        boxes in original pixels, best score first."""
        d = self.filter(min_score)
        return {
            "image": self.source,
            "width": self.orig_size[1],
            "height": self.orig_size[0],
            "detections": [
                {"class": self.class_names[lab], "label": lab, "score": round(score, 6),
                 "box": [round(v, 3) for v in box]}
                for box, score, lab in zip(d.boxes.tolist(), d.scores.tolist(),
                                           d.labels.tolist(), strict=True)
            ],
        }

    def to_json(self, min_score: float = 0.0, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string; with ``indent``, one detection a line."""
        data = self.to_dict(min_score)
        if indent is None:
            return json.dumps(data)
        pad = " " * indent
        head = json.dumps({k: v for k, v in data.items() if k != "detections"})[:-1]
        dets = f",\n{pad}{pad}".join(json.dumps(d) for d in data["detections"])
        body = f"[\n{pad}{pad}{dets}\n{pad}]" if dets else "[]"
        return f"{head},\n{pad}\"detections\": {body}}}"

    def plot(self, min_score: float = 0.0, image: ImageInput | None = None,
             channel_order: ChannelOrder = "rgb", **style: Any) -> Image.Image:
        """The original image with the detections scoring ≥ ``min_score`` drawn (class-coloured
        boxes, class name and score); returns a new RGB Pillow image.

        ``image`` overrides the stored image (it must have the original size); without either,
        the ``source`` file is read again. ``style``: ``line_width``, ``font_size`` of
        :func:`squeezedet.draw.draw_detections`.
        """
        from squeezedet.draw import draw_detections

        if image is not None:
            array = as_rgb_arrays(image, channel_order)[0][0]
        elif self.image is not None:
            array = self.image
        elif self.source is not None:
            array = load_image(self.source)
        else:
            raise SqueezeDetError("these detections keep no image; pass plot(image=...)")
        if tuple(array.shape[:2]) != tuple(self.orig_size):
            raise SqueezeDetError(
                f"image is {array.shape[1]}x{array.shape[0]} but the detections are for "
                f"{self.orig_size[1]}x{self.orig_size[0]} (W x H)"
            )
        d = self.filter(min_score)
        return draw_detections(array, d.boxes.numpy(), d.scores.numpy(), d.labels.numpy(),
                               self.class_names, **style)
