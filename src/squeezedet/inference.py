"""Prediction for users: a :class:`Detector` turns images into :class:`Detections`.

>>> det = Detector.from_checkpoint("runs/demo/best.pt", device="cpu", conf=0.4)
>>> d = det("000001.png")                 # one input -> one Detections
>>> d.boxes, d.scores, d.labels           # xyxy in the original image's pixels
>>> d.plot().save("drawn.png")
>>> ds = det(["a.png", "b.jpg"])          # a list -> a list, run in batches

Pipeline, per image: the input becomes a ``uint8 [H0, W0, 3]`` RGB array; it is resized to the
network's ``(W, H)`` with the training :class:`~squeezedet.data.transforms.Resize` (Pillow bilinear,
aspect ratio not kept); the batch ``float32 [B, 3, H, W]`` (RGB, 0–255) goes through the runner (any
backend of :mod:`squeezedet.runtime`), :func:`~squeezedet.models.detector.split_head` and
:class:`~squeezedet.postprocess.PostProcess` (top 64 anchors, per-class NMS at IoU 0.4, score ≥
``conf``); boxes are then scaled by ``(W0 / W, H0 / H)`` back to the original pixels. Boxes are
clipped to the image by the decoder, so they stay inside ``[0, W0] × [0, H0]``.

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

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, overload

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from squeezedet.data.images import _to_rgb8, load_image
from squeezedet.errors import SqueezeDetError
from squeezedet.kitti_format import KittiObject
from squeezedet.models.detector import split_head
from squeezedet.ops.anchors import make_anchors
from squeezedet.postprocess import PostProcess
from squeezedet.runtime import Runner

#: One image as the detector accepts it (see the module docstring).
ImageInput = Union[str, Path, Image.Image, np.ndarray, Tensor]  # noqa: UP007 - a runtime alias
ChannelOrder = Literal["rgb", "bgr"]


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
        them with :func:`squeezedet.kitti_format.write_kitti_file`."""
        from squeezedet.engine import detections_to_kitti

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


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise SqueezeDetError(f"image arrays must hold numbers 0–255, got dtype {array.dtype}")
    return np.clip(np.rint(array.astype(np.float64)), 0, 255).astype(np.uint8)


def _hwc_to_rgb(array: np.ndarray, channel_order: ChannelOrder) -> np.ndarray:
    """``[H, W]``, ``[H, W, 1|3|4]`` in ``channel_order`` → ``uint8 [H, W, 3]`` RGB."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise SqueezeDetError(
            "an image array must be [H, W, 3] (or [H, W], [H, W, 4]), "
            f"got shape {list(array.shape)}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise SqueezeDetError(f"image has no pixels (shape {list(array.shape)})")
    array = _array_to_uint8(array)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[:, :, :3]
    if channel_order == "bgr":
        array = array[:, :, ::-1]
    return np.ascontiguousarray(array)


def as_rgb_arrays(
    images: ImageInput | Sequence[ImageInput], channel_order: ChannelOrder = "rgb"
) -> tuple[list[np.ndarray], list[str | None], bool]:
    """Normalise any accepted input (module docstring) to ``uint8 [H, W, 3]`` RGB arrays.

    Returns ``(arrays, sources, single)``: ``sources`` holds the file path of each image read from
    a file (else ``None``); ``single`` tells whether the caller gave one image (not a list and not
    a batched array/tensor).
    """
    if channel_order not in ("rgb", "bgr"):
        raise SqueezeDetError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    if isinstance(images, (list, tuple)):
        arrays: list[np.ndarray] = []
        sources: list[str | None] = []
        for item in images:
            a, s, single = as_rgb_arrays(item, channel_order)
            if not single:
                raise SqueezeDetError("a list of images may not contain batched arrays or lists")
            arrays += a
            sources += s
        return arrays, sources, False
    if isinstance(images, (str, Path)):
        return [load_image(images)], [str(images)], True
    if isinstance(images, Image.Image):
        images.load()
        return [_to_rgb8(images, Path("<PIL image>"))], [None], True
    if isinstance(images, Tensor):
        t = images.detach().cpu()
        if t.is_floating_point() and t.numel() and float(t.max()) <= 1.0:
            warnings.warn("image tensor values are all ≤ 1: the detector expects 0–255 pixel "
                          "values", stacklevel=3)
        if t.ndim == 3:
            return [_hwc_to_rgb(t.permute(1, 2, 0).numpy(), channel_order)], [None], True
        if t.ndim == 4:
            arrays = [_hwc_to_rgb(x.permute(1, 2, 0).numpy(), channel_order) for x in t]
            return arrays, [None] * len(arrays), False
        raise SqueezeDetError(
            f"an image tensor must be [3, H, W] or [B, 3, H, W], got {list(t.shape)}")
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            arrays = [_hwc_to_rgb(x, channel_order) for x in images]
            return arrays, [None] * len(arrays), False
        return [_hwc_to_rgb(images, channel_order)], [None], True
    raise SqueezeDetError(
        f"cannot read an image from a {type(images).__name__}; give a path, a PIL image, a NumPy "
        "array or a tensor"
    )


def runner_input(runner: Any, arrays: Sequence[np.ndarray], input_size: tuple[int, int]) -> Tensor:
    """``uint8 [H0, W0, 3]`` RGB arrays (any sizes) → ``[B, 3, H, W]`` RGB 0–255 at the network
    size ``(W, H)`` for ``runner``, resized like training
    (:class:`~squeezedet.data.transforms.Resize`): ``uint8`` for eager PyTorch (the model converts
    it), ``float32`` for the other runners."""
    from squeezedet.export import network_batch
    from squeezedet.runtime import TorchRunner, is_torch_runner

    eager = isinstance(runner, TorchRunner)
    # PyTorch on the CPU is the lean path (one image, little memory): Pillow, not OpenCV
    lean = is_torch_runner(runner) and runner.device.type == "cpu"
    return network_batch(arrays, input_size, opencv=not lean,
                         channels_last=getattr(runner, "channels_last", False), uint8=eager)


class Detector:
    """Runs a trained SqueezeDet on images of any size and returns :class:`Detections`.

    Args:
        runner: a :class:`~squeezedet.runtime.Runner` (any backend); its ``meta`` gives the class
            names, network input size ``(W, H)`` and anchor shapes.
        conf: minimum detection score returned (0 returns everything kept after NMS, which is what
            evaluation needs; 0.4 is the original's drawing threshold).
        top_k: anchors kept per image before NMS (64 in the original).
        nms_iou: per-class NMS IoU threshold (0.4 in the original).
        batch_size: images per network call when given a list.
    """

    def __init__(self, runner: Runner, *, conf: float = 0.4, top_k: int = 64,
                 nms_iou: float = 0.4, batch_size: int = 8) -> None:
        if not 0.0 <= conf <= 1.0:
            raise SqueezeDetError(f"conf must be between 0 and 1, got {conf}")
        if batch_size < 1:
            raise SqueezeDetError(f"batch size must be at least 1, got {batch_size}")
        meta = runner.meta
        self.runner = runner
        self.meta = meta
        self.class_names: tuple[str, ...] = tuple(meta["class_names"])
        self.input_size: tuple[int, int] = (int(meta["input_size"][0]), int(meta["input_size"][1]))
        self.anchor_shapes = tuple((float(w), float(h)) for w, h in meta["anchor_shapes"])
        self.anchor_centers: str = meta.get("anchor_centers", "original")
        self.postprocess = PostProcess(top_k=top_k, nms_iou=nms_iou, score_threshold=conf)
        self.batch_size = int(batch_size)
        self._anchors: dict[tuple[int, int, str], Tensor] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", backend: str = "auto",
                        **kwargs: Any) -> Detector:
        """A detector for a checkpoint (or an exported file, with its backend); ``kwargs`` go to
        :class:`Detector` (``conf``, ``top_k``, ``nms_iou``, ``batch_size``)."""
        from squeezedet.runtime import load_runner

        return cls(load_runner(path, backend=backend, device=device), **kwargs)

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
        from squeezedet.runtime import light_torch_threads

        with light_torch_threads(self.runner):
            return self._detect_batch(batch, orig_sizes)

    def _detect_batch(self, batch: Tensor,
                      orig_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        from squeezedet.engine import to_original_pixels

        out = self.runner(batch)
        if not isinstance(out, Tensor):
            out = torch.as_tensor(np.asarray(out))
        k, c = len(self.anchor_shapes), len(self.class_names)
        if out.ndim != 4 or out.shape[1] != k * (c + 5):
            raise SqueezeDetError(
                f"the model's output has shape {list(out.shape)}, expected "
                f"[B, {k * (c + 5)}, gh, gw] "
                f"for {k} anchors and {c} classes; the weights file's metadata does not fit it"
            )
        head = split_head(out.float(), k, c)
        anchors = self._anchors_for((int(out.shape[-1]), int(out.shape[-2])), out.device)
        dets = self.postprocess(head, anchors, self.input_size)
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
            dets = self.detect_batch(self.preprocess(chunk), sizes)
            for i, (det, size) in enumerate(zip(dets, sizes, strict=True)):
                j = start + i
                results.append(Detections(
                    boxes=det["boxes"], scores=det["scores"], labels=det["labels"],
                    class_names=self.class_names, orig_size=size, source=sources[j],
                    image=chunk[i] if keep[j] else None,
                ))
        return results
