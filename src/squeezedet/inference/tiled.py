"""Tiled prediction: a detector run on every window of a large image, merged with per-class NMS.

The windows are :func:`squeezedet.data.tiling.tile_windows`; boxes are moved back into the image
and merged with per-class non-maximum suppression. Choose an overlap at least as large as the
largest object, so that every object lies wholly inside some tile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from squeezedet.data.tiling import tile_windows
from squeezedet.errors import SqueezeDetError
from squeezedet.ops.boxes import batched_nms
from squeezedet.postprocess import Detections


def _as_tensor(value: Any, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value,
                           dtype=dtype).cpu()


def predict_tiled(
    detect: Callable[[np.ndarray], Mapping[str, Any]],
    image: np.ndarray,
    tile: tuple[int, int],
    overlap: float = 0.2,
    nms_iou: float = 0.4,
    max_detections: int | None = None,
) -> dict[str, Tensor]:
    """Detect objects in a large image tile by tile and merge the results.

    Args:
        detect: called with each window, ``uint8 [h, w, 3]`` RGB (a view into ``image``); returns a
            mapping with ``"boxes"`` (``[N, 4]`` xyxy in the window's pixels), ``"scores"``
            (``[N]``) and ``"labels"`` (``[N]`` class indices), as tensors or arrays.
        image: the whole image, ``uint8 [H, W, 3]`` RGB.
        tile: window size ``(W, H)`` in image pixels. overlap: fraction shared by neighbours.
        nms_iou: per-class NMS threshold for merging (a box is dropped when its IoU with a
            higher-scoring box of its class is greater than this).
        max_detections: keep at most this many merged boxes (highest scores), ``None``: all.

    Returns:
        ``{"boxes": float32 [D, 4] xyxy image pixels, "scores": float32 [D], "labels": int64 [D]}``
        sorted by decreasing score.
    """
    if image.ndim != 3:
        raise SqueezeDetError(f"expected an image [H, W, 3], got shape {tuple(image.shape)}")
    height, width = image.shape[:2]
    all_boxes, all_scores, all_labels = [], [], []
    for x0, y0, x1, y1 in tile_windows((width, height), tile, overlap):
        out = detect(image[y0:y1, x0:x1])
        boxes = _as_tensor(out["boxes"], torch.float32).reshape(-1, 4)
        offset = torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
        all_boxes.append(boxes + offset)
        all_scores.append(_as_tensor(out["scores"], torch.float32).reshape(-1))
        all_labels.append(_as_tensor(out["labels"], torch.int64).reshape(-1))
    boxes = torch.cat(all_boxes)
    scores = torch.cat(all_scores)
    labels = torch.cat(all_labels)
    keep = batched_nms(boxes, scores, labels, nms_iou)
    if max_detections is not None:
        keep = keep[:max_detections]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def detect_tiled(detector: Any, image: np.ndarray, tile: tuple[int, int], overlap: float = 0.2,
                 source: str | None = None, keep_image: bool = True) -> Any:
    """:class:`~squeezedet.postprocess.Detections` of a large image, found tile by tile with a
    :class:`~squeezedet.inference.detector.Detector` and merged by :func:`predict_tiled` at the detector's
    NMS threshold. ``image``: ``uint8 [H, W, 3]`` RGB; boxes come back in its pixels."""
    def detect(window: np.ndarray) -> dict[str, Tensor]:
        det = detector.detect_arrays([window], keep_images=False)[0]
        return {"boxes": det.boxes, "scores": det.scores, "labels": det.labels}

    merged = predict_tiled(detect, image, tile, overlap, detector.postprocess.nms_iou)
    return Detections(boxes=merged["boxes"], scores=merged["scores"], labels=merged["labels"],
                      class_names=detector.class_names,
                      orig_size=(int(image.shape[0]), int(image.shape[1])), source=source,
                      image=image if keep_image else None)
