"""Tiling of large images (aerial, microscopy): overlapping windows and merged predictions.

A tile of ``(tw, th)`` pixels is moved in steps of ``round(tw * (1 - overlap))`` (at least 1); the
last tile of a row (column) is placed flush with the right (bottom) edge, so every pixel is covered
and no tile leaves the image. An image smaller than the tile along an axis gets one window of the
image's own length there (no padding; the window is then resized to the network like any image).

For training, every window is one sample (see :class:`squeezedet.data.base.DetectionDataset`);
for prediction, :func:`predict_tiled` runs a detector on every window, moves the boxes back into the
image and merges them with per-class non-maximum suppression. Choose an overlap at least as large
as the largest object, so that every object lies wholly inside some tile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from squeezedet.errors import SqueezeDetError
from squeezedet.ops.boxes import batched_nms


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of the windows along one axis of ``length`` pixels.

    >>> tile_origins(256, 64, 0.25)   # stride 48, the last one flush with the edge
    [0, 48, 96, 144, 192]
    >>> tile_origins(50, 64, 0.25)
    [0]
    """
    if tile <= 0 or length <= 0:
        raise SqueezeDetError(
            f"tile and image sizes must be positive (tile {tile}, image {length})")
    if not 0.0 <= overlap < 1.0:
        raise SqueezeDetError(f"the tile overlap must be in [0, 1), got {overlap}")
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    origins = list(range(0, length - tile + 1, stride))
    if origins[-1] != length - tile:
        origins.append(length - tile)
    return origins


def tile_windows(image_size: tuple[int, int], tile: tuple[int, int],
                 overlap: float) -> list[tuple[int, int, int, int]]:
    """Windows ``(x0, y0, x1, y1)`` (pixels, end exclusive) covering an image of ``(W, H)``, in
    row-major order (top row first, left to right)."""
    width, height = image_size
    tw, th = tile
    xs = tile_origins(width, tw, overlap)
    ys = tile_origins(height, th, overlap)
    return [(x, y, min(x + tw, width), min(y + th, height)) for y in ys for x in xs]


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
    """:class:`~squeezedet.inference.Detections` of a large image, found tile by tile with a
    :class:`~squeezedet.inference.Detector` and merged by :func:`predict_tiled` at the detector's
    NMS threshold. ``image``: ``uint8 [H, W, 3]`` RGB; boxes come back in its pixels."""
    from squeezedet.inference import Detections

    def detect(window: np.ndarray) -> dict[str, Tensor]:
        det = detector.detect_arrays([window], keep_images=False)[0]
        return {"boxes": det.boxes, "scores": det.scores, "labels": det.labels}

    merged = predict_tiled(detect, image, tile, overlap, detector.postprocess.nms_iou)
    return Detections(boxes=merged["boxes"], scores=merged["scores"], labels=merged["labels"],
                      class_names=detector.class_names,
                      orig_size=(int(image.shape[0]), int(image.shape[1])), source=source,
                      image=image if keep_image else None)
