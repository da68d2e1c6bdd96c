"""Prediction for users: a :class:`Detector` turns images into :class:`Detections`.

>>> det = Detector.from_checkpoint("runs/demo/best.pt", device="cpu", conf=0.4)
>>> d = det("000001.png")                 # one input -> one Detections
>>> d.boxes, d.scores, d.labels           # xyxy in the original image's pixels
>>> d.plot().save("drawn.png")
>>> ds = det(["a.png", "b.jpg"])          # a list -> a list, run in batches
>>> for r in det.stream("drive.mp4", tracker=True):   # video, frames, camera "0", rtsp://...
...     r.frame, r.timestamp, r.detections, r.track_ids

Pipeline, per image: the input becomes a ``uint8 [H0, W0, 3]`` RGB array; it is resized to the
network's ``(W, H)`` with the training :class:`~squeezedet.data.transforms.Resize` (Pillow bilinear,
aspect ratio not kept); the batch ``float32 [B, 3, H, W]`` (RGB, 0–255) goes through the runner (any
backend of :mod:`squeezedet.deployment.runners`), :func:`~squeezedet.models.detector.split_head` and
:class:`~squeezedet.postprocess.PostProcess` (top 64 anchors, per-class NMS at IoU 0.4, score ≥
``conf``, or the ``top_k`` and ``nms_iou`` the model's run validated with under
:meth:`Detector.from_checkpoint`); boxes are then scaled by ``(W0 / W, H0 / H)`` back to the
original pixels. Boxes are clipped to the image by the decoder, so they stay inside
``[0, W0] × [0, H0]``.

Accepted inputs (single, or a list/tuple of them, or one batched array/tensor):

- a path (``str`` or :class:`~pathlib.Path`) of an image file, read with
  :func:`~squeezedet.data.images.load_image` (a bad file raises :class:`DataError` naming it);
- a Pillow image (converted to RGB the same way as files are);
- a NumPy array ``[H, W, 3]`` (or ``[H, W, 4]``, alpha dropped, or ``[H, W]`` grayscale) or a batch
  ``[B, H, W, 3]``, in ``channel_order`` (``"rgb"``, or ``"bgr"`` as OpenCV reads images);
- a torch tensor ``[3, H, W]`` or ``[B, 3, H, W]`` in ``channel_order``.

Arrays and tensors hold 0–255 values; ``uint8`` is used as is, other dtypes are rounded and clipped
to ``uint8`` (so every input type gives the same detections). A float tensor scaled to 0–1 is
almost certainly a mistake and gets a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from torch import Tensor

from squeezedet.checkpoint import model_settings
from squeezedet.data.images import ChannelOrder, ImageInput, as_rgb_arrays
from squeezedet.deployment.preprocess import runner_input
from squeezedet.deployment.runners import (
    Runner,
    light_torch_threads,
    load_runner,
    recorded_postprocess,
)
from squeezedet.errors import SqueezeDetError
from squeezedet.inference.stream import VideoStream
from squeezedet.models.detector import split_head
from squeezedet.ops.anchors import make_anchors
from squeezedet.postprocess import (
    TTA_VIEWS,
    Detections,
    PostProcess,
    flip_view,
    to_original_pixels,
)


class Detector:
    """Runs a trained SqueezeDet on images of any size and returns :class:`Detections`.

    Args:
        runner: a :class:`~squeezedet.deployment.runners.Runner` (any backend); its ``meta`` gives the class
            names, network input size ``(W, H)`` and anchor shapes.
        conf: minimum detection score returned (0 returns everything kept after NMS, which is what
            evaluation needs; 0.4 is the original's drawing threshold).
        top_k: anchors kept per image before NMS (64 in the original).
        nms_iou: per-class NMS IoU threshold (0.4 in the original).
        batch_size: images per network call when given a list.
        tta: test-time flips (a key of :data:`~squeezedet.postprocess.TTA_VIEWS`): ``"none"``;
            ``"hflip"``, also the mirrored image; ``"flips"``, also upside down and both, for
            top-down imagery. Each view is one more network call.
    """

    def __init__(self, runner: Runner, *, conf: float = 0.4, top_k: int = 64,
                 nms_iou: float = 0.4, batch_size: int = 8, tta: str = "none") -> None:
        if not 0.0 <= conf <= 1.0:
            raise SqueezeDetError(f"conf must be between 0 and 1, got {conf}")
        if tta not in TTA_VIEWS:
            raise SqueezeDetError(f"tta must be one of {', '.join(TTA_VIEWS)}, got {tta!r}")
        if batch_size < 1:
            raise SqueezeDetError(f"batch size must be at least 1, got {batch_size}")
        meta = runner.meta
        self.runner = runner
        self.meta = meta
        settings = model_settings(meta)
        self.class_names: tuple[str, ...] = settings["class_names"]
        self.input_size: tuple[int, int] = settings["input_size"]
        self.anchor_shapes: tuple[tuple[float, float], ...] = settings["anchor_shapes"]
        self.anchor_centers: str = settings["anchor_centers"]
        self.postprocess = PostProcess(top_k=top_k, nms_iou=nms_iou, score_threshold=conf)
        self.batch_size = int(batch_size)
        self.views = TTA_VIEWS[tta]
        self._anchors: dict[tuple[int, int, str], Tensor] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", backend: str = "auto",
                        **kwargs: Any) -> Detector:
        """A detector for a checkpoint (or an exported file, with its backend); ``kwargs`` go to
        :class:`Detector` (``conf``, ``top_k``, ``nms_iou``, ``batch_size``, ``tta``). The
        ``top_k``, ``nms_iou`` and ``tta`` not given are those the model's training run
        validated with, when the file records them (:func:`recorded_postprocess`), so that the
        detector gives what validation measured; else :class:`Detector`'s defaults."""
        return cls(load_runner(path, backend=backend, device=device),
                   **{**recorded_postprocess(path), **kwargs})

    @property
    def conf(self) -> float:
        """Minimum score of the detections returned."""
        return self.postprocess.score_threshold

    @overload
    def __call__(self, images: Sequence[ImageInput],
                 channel_order: ChannelOrder = ...) -> list[Detections]: ...

    @overload
    def __call__(self, images: ImageInput,
                 channel_order: ChannelOrder = ...) -> Detections | list[Detections]: ...

    def __call__(self, images: ImageInput | Sequence[ImageInput],
                 channel_order: ChannelOrder = "rgb") -> Detections | list[Detections]:
        """Detect objects; one image gives one :class:`Detections`, a list (or a batched array
        or tensor) gives a list. Inputs: see the module docstring. A list is read
        ``batch_size`` images at a time, so a long list of files is not held in memory at once."""
        if isinstance(images, (list, tuple)):
            results: list[Detections] = []
            for start in range(0, len(images), self.batch_size):
                chunk = list(images[start:start + self.batch_size])
                results += self._detect_inputs(chunk, channel_order)[0]
            return results
        results, single = self._detect_inputs(images, channel_order)
        return results[0] if single else results

    def stream(self, source: str | int, **options: Any) -> VideoStream:
        """Detections (and tracks) frame by frame over a video file, folder of frames, camera
        index or network stream: an iterator of
        :class:`~squeezedet.inference.stream.StreamResult` with decoding, detection and tracking
        overlapped and memory flat; ``options``: ``tracker``, ``realtime``, ``threaded``,
        ``queue_size``, ``options`` (time-outs), ``keep_images``, ``after`` — see
        :class:`~squeezedet.inference.stream.VideoStream`. Opening a source that cannot be opened
        raises a one-line :class:`SqueezeDetError`."""
        return VideoStream(self, source, **options)

    def _detect_inputs(self, images: ImageInput | Sequence[ImageInput],
                       channel_order: ChannelOrder) -> tuple[list[Detections], bool]:
        arrays, sources, single = as_rgb_arrays(images, channel_order)
        keep = [s is None for s in sources]  # files are read again by plot(); arrays are kept
        return self.detect_arrays(arrays, sources, keep), single

    def preprocess(self, arrays: Sequence[np.ndarray]) -> Tensor:
        """``uint8 [H0, W0, 3]`` RGB arrays (any sizes) → the runner's input batch (see
        :func:`runner_input`)."""
        return runner_input(self.runner, arrays, self.input_size)

    def _anchors_for(self, grid: tuple[int, int], device: torch.device) -> Tensor:
        key = (grid[0], grid[1], str(device))
        if key not in self._anchors:
            self._anchors[key] = make_anchors(grid, self.input_size, self.anchor_shapes,
                                              device=device, centers=self.anchor_centers)
        return self._anchors[key]

    def detect_batch(self, batch: Tensor,
                     orig_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Run one pre-processed batch ``float32 [B, 3, H, W]``; per image ``{"boxes": [D, 4] xyxy
        in original pixels, "scores": [D], "labels": int64 [D]}`` on the CPU. ``orig_sizes``:
        ``(H0, W0)`` of each original image."""
        with light_torch_threads(self.runner):
            return self._detect_batch(batch, orig_sizes)

    def _detect_batch(self, batch: Tensor,
                      orig_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        k, c = len(self.anchor_shapes), len(self.class_names)
        heads = []
        for view in self.views:
            out = self.runner(flip_view(batch, view))
            if not isinstance(out, Tensor):
                out = torch.as_tensor(np.asarray(out))
            if out.ndim != 4 or out.shape[1] != k * (c + 5):
                raise SqueezeDetError(
                    f"the model's output has shape {list(out.shape)}, expected "
                    f"[B, {k * (c + 5)}, gh, gw] "
                    f"for {k} anchors and {c} classes; the weights file's metadata does not fit it"
                )
            heads.append(split_head(out.float(), k, c))
        anchors = self._anchors_for((int(out.shape[-1]), int(out.shape[-2])), out.device)
        dets = self.postprocess.merge_views(heads, self.views, anchors, self.input_size)
        results = []
        for det, size in zip(dets, orig_sizes, strict=True):
            boxes = to_original_pixels(det["boxes"], self.input_size, size)
            results.append({"boxes": boxes.float().cpu(), "scores": det["scores"].float().cpu(),
                            "labels": det["labels"].long().cpu()})
        return results

    def detect_arrays(self, arrays: Sequence[np.ndarray],
                      sources: Sequence[str | None] | None = None,
                      keep_images: Sequence[bool] | bool = True) -> list[Detections]:
        """Detections for ``uint8 [H0, W0, 3]`` RGB arrays, in batches of ``batch_size``.

        ``sources`` (one per array, optional) are recorded in the results; ``keep_images`` says
        whether each result keeps its array for :meth:`Detections.plot`.
        """
        sources = list(sources) if sources is not None else [None] * len(arrays)
        keep = [keep_images] * len(arrays) if isinstance(keep_images, bool) else list(keep_images)
        results: list[Detections] = []
        for start in range(0, len(arrays), self.batch_size):
            chunk = arrays[start:start + self.batch_size]
            sizes = [(int(a.shape[0]), int(a.shape[1])) for a in chunk]
            with light_torch_threads(self.runner):  # pre-processing too: see that function
                batch = self.preprocess(chunk)
            dets = self.detect_batch(batch, sizes)
            for i, (det, size) in enumerate(zip(dets, sizes, strict=True)):
                j = start + i
                results.append(Detections(
                    boxes=det["boxes"], scores=det["scores"], labels=det["labels"],
                    class_names=self.class_names, orig_size=size, source=sources[j],
                    image=chunk[i] if keep[j] else None,
                ))
        return results
