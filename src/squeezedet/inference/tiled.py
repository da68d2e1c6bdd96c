"""Tiled prediction: a detector run on every window of a large image, merged with per-class NMS.

The windows are :func:`squeezedet.data.tiling.tile_windows`; boxes are moved back into the image
and merged with per-class non-maximum suppression. Choose an overlap at least as large as the
largest object, so that every object lies wholly inside some tile.

A box that touches a window's inner edge (one shared with a neighbouring window, not the image's
border) and lies wholly inside the strip the two windows share is the cut-off part of an object
the neighbour sees whole: it is dropped before merging, since NMS would keep both (a part and
the whole overlap by less than the threshold when the part is small).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from squeezedet.data.tiling import tile_origins
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
    xs, ys = tile_origins(width, tile[0], overlap), tile_origins(height, tile[1], overlap)
    all_boxes, all_scores, all_labels = [], [], []
    for j, y0 in enumerate(ys):
        for i, x0 in enumerate(xs):
            x1, y1 = min(x0 + tile[0], width), min(y0 + tile[1], height)
            out = detect(image[y0:y1, x0:x1])
            boxes = _as_tensor(out["boxes"], torch.float32).reshape(-1, 4)
            boxes = boxes + torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
            whole = ~(_cut_off(boxes[:, 0::2], xs, i, tile[0]) |
                      _cut_off(boxes[:, 1::2], ys, j, tile[1]))
            all_boxes.append(boxes[whole])
            all_scores.append(_as_tensor(out["scores"], torch.float32).reshape(-1)[whole])
            all_labels.append(_as_tensor(out["labels"], torch.int64).reshape(-1)[whole])
    boxes = torch.cat(all_boxes)
    scores = torch.cat(all_scores)
    labels = torch.cat(all_labels)
    keep = batched_nms(boxes, scores, labels, nms_iou)
    if max_detections is not None:
        keep = keep[:max_detections]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


#: a box this close (pixels) to a window's edge touches it
EDGE_PIXELS = 2.0


def _cut_off(ends: Tensor, origins: list[int], i: int, length: int) -> Tensor:
    """Which boxes of window ``i`` along one axis (``ends``: ``[N, 2]`` start and end, image
    pixels; windows start at ``origins`` and are ``length`` long) touch an inner edge and lie
    wholly in the strip shared with the neighbour across it."""
    cut = torch.zeros(len(ends), dtype=torch.bool)
    start, end = origins[i], origins[i] + length
    if i > 0:  # the left (top) neighbour covers up to origins[i - 1] + length
        cut |= (ends[:, 0] <= start + EDGE_PIXELS) & (ends[:, 1] <= origins[i - 1] + length)
    if i + 1 < len(origins):  # the right (bottom) neighbour starts at origins[i + 1]
        cut |= (ends[:, 1] >= end - EDGE_PIXELS) & (ends[:, 0] >= origins[i + 1])
    return cut


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
