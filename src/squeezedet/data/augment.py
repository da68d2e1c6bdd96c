"""Augmentation for small data sets: zoom in and out, both flips, quarter turns, colour jitter and
mosaic, so that a few photographs give many different training views.

The transforms follow :mod:`squeezedet.data.transforms`' protocol ``t(image, target, rng) ->
(image, target)`` (``image`` ``uint8 [H, W, 3]`` RGB, ``target["boxes"]`` ``float32 [N, 4]``
``(x1, y1, x2, y2)`` in pixels, pixel ``i`` covering ``[i, i + 1)``) and never modify their inputs.
Every per-box array of the target (``labels`` and the like: first dimension ``N``) follows the
boxes, also when boxes are dropped.

- :class:`ScaleCrop` (zoom): a window of ``size / s`` source pixels, ``s`` drawn log-uniformly from
  ``scale``, resized to ``size``; ``s > 1`` zooms in, ``s < 1`` zooms out (the window reaches past
  the image, padded with the mean colour). Boxes are moved, scaled by ``s`` and clipped; a box that
  keeps less than ``min_visible`` of its area stops being a target.
- :class:`VerticalFlip`: ``y -> H - y``.
- :class:`Rotate90`: a quarter turn ``k`` times counter-clockwise, ``k`` uniform in {0, 1, 2, 3}; only
  for top-down imagery (aerial, microscopy), never for driving scenes, whose up is fixed.
- :class:`ColorJitter`: brightness, contrast and saturation scaled by factors drawn from
  ``[1 - a, 1 + a]``; boxes untouched.
- :func:`mosaic`: four samples, each zoomed into one quadrant around a random centre of the output,
  so one image holds the objects of four.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from squeezedet.data.transforms import (
    MEAN_RGB_UINT8,
    MIN_CLIPPED_SIZE,
    Compose,
    Drift,
    HorizontalFlip,
    RandomCrop,
    Resize,
    ResizeCrop,
    Target,
    Transform,
    build_transforms,
    resize_image,
)

#: the zoom range of ``augment=zoom``: objects shown from half to 1.6 times their size at the
#: network input
ZOOM_SCALE = (0.5, 1.6)
#: the share of training samples made a mosaic with ``augment=mosaic``
MOSAIC_PROB = 0.5
#: the colour jitter of ``augment=jitter`` (brightness, contrast, saturation)
JITTER = (0.3, 0.3, 0.3)


def _boxes(target: Target) -> np.ndarray:
    boxes = target.get("boxes")
    if boxes is None:
        return np.zeros((0, 4), dtype=np.float64)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _with_boxes(target: Target, boxes: np.ndarray, keep: np.ndarray | None = None) -> Target:
    """``target`` with new boxes; per-box arrays cut to ``keep`` (a boolean mask over the old boxes)."""
    n = len(_boxes(target))
    result = {**target, "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4)}
    if keep is not None:
        for key, value in target.items():
            if key != "boxes" and isinstance(value, np.ndarray) and value.shape[:1] == (n,):
                result[key] = value[keep]
    return result


def clip_boxes(boxes: np.ndarray, width: float, height: float, min_visible: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to ``[0, width] x [0, height]`` and the mask of those kept: at least
    ``min_visible`` of the box's area inside and at least :data:`MIN_CLIPPED_SIZE` pixels wide and
    high."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped = np.stack([np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 1], 0, height),
                        np.clip(boxes[:, 2], 0, width), np.clip(boxes[:, 3], 0, height)], axis=1)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    visible = np.where(area > 0, w * h / np.maximum(area, 1e-12), 0.0)
    keep = (w >= MIN_CLIPPED_SIZE) & (h >= MIN_CLIPPED_SIZE) & (visible >= min_visible)
    return clipped[keep], keep


def crop_window(image: np.ndarray, x0: int, y0: int, width: int, height: int,
                fill: Sequence[int] = MEAN_RGB_UINT8) -> np.ndarray:
    """The ``width x height`` window of ``image`` whose top-left corner is ``(x0, y0)`` (which may
    lie outside the image); pixels outside the image get ``fill``."""
    h, w = image.shape[:2]
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[...] = np.asarray(fill, dtype=np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + width, w), min(y0 + height, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


class ScaleCrop:
    """Zoom in or out: ``size = (W, H)`` output pixels cut from a window of ``(W / s, H / s)``
    source pixels (rounded), ``s = exp(u)``, ``u`` uniform in ``[ln lo, ln hi]`` for
    ``scale = (lo, hi)``.

    The window's corner is uniform over the positions that keep it overlapping the image as much as
    it can: inside the image when it is smaller, covering it when it is larger. With probability
    ``focus`` (and boxes present) it is placed so that a box drawn at random is inside it where
    possible. Source pixel ``(x, y)`` lands at ``((x - x0) * W / ww, (y - y0) * H / wh)`` for the
    window ``(x0, y0, ww, wh)``; boxes move so and are clipped (:func:`clip_boxes`).
    """

    def __init__(self, size: tuple[int, int], scale: tuple[float, float] = (0.5, 2.0),
                 focus: float = 0.5, min_visible: float = 0.5) -> None:
        width, height = (int(v) for v in size)
        lo, hi = (float(v) for v in scale)
        if width <= 0 or height <= 0:
            raise ValueError(f"zoom output size must be positive (W, H), got {size}")
        if not 0 < lo <= hi:
            raise ValueError(f"zoom scale range must be 0 < lo <= hi, got {scale}")
        self.size, self.scale = (width, height), (lo, hi)
        self.focus, self.min_visible = float(focus), float(min_visible)
        self._rng = np.random.default_rng()

    @staticmethod
    def _start(rng: np.random.Generator, length: int, window: int, box: tuple[float, float] | None
               ) -> int:
        lo, hi = sorted((0, length - window))
        if box is not None:  # keep the box inside the window where the window is large enough
            first, last = math.ceil(box[1] - window), math.floor(box[0])
            if first <= last:
                lo, hi = max(lo, first), min(hi, last)
                lo, hi = (lo, hi) if lo <= hi else sorted((0, length - window))
        return int(rng.integers(lo, hi, endpoint=True))

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, Target]:
        rng = rng if rng is not None else self._rng
        h, w = image.shape[:2]
        s = math.exp(rng.uniform(math.log(self.scale[0]), math.log(self.scale[1])))
        ww = max(1, round(self.size[0] / s))
        wh = max(1, round(self.size[1] / s))
        boxes = _boxes(target)
        box = boxes[int(rng.integers(len(boxes)))] if len(boxes) and rng.random() < self.focus \
            else None
        x0 = self._start(rng, w, ww, None if box is None else (box[0], box[2]))
        y0 = self._start(rng, h, wh, None if box is None else (box[1], box[3]))
        return self.apply(image, target, x0, y0, ww, wh)

    def apply(self, image: np.ndarray, target: Target, x0: int, y0: int, ww: int, wh: int
              ) -> tuple[np.ndarray, Target]:
        """Cut the window ``(x0, y0, ww, wh)`` (source pixels) and resize it to :attr:`size`."""
        width, height = self.size
        out = resize_image(crop_window(image, x0, y0, ww, wh), (width, height))
        sx, sy = width / ww, height / wh
        moved = (_boxes(target) - np.array([x0, y0, x0, y0])) * np.array([sx, sy, sx, sy])
        boxes, keep = clip_boxes(moved, width, height, self.min_visible)
        return out, _with_boxes(target, boxes, keep)


class VerticalFlip:
    """Mirror top-bottom with probability ``p``: ``(x1, y1, x2, y2) -> (x1, H - y2, x2, H - y1)``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"vertical flip probability must be in [0, 1], got {p}")
        self.p = float(p)
        self._rng = np.random.default_rng()

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, Target]:
        rng = rng if rng is not None else self._rng
        return self.apply(image, target) if rng.random() < self.p else (image, target)

    @staticmethod
    def apply(image: np.ndarray, target: Target) -> tuple[np.ndarray, Target]:
        """Flip unconditionally."""
        h = image.shape[0]
        b = _boxes(target)
        flipped = np.stack([b[:, 0], h - b[:, 3], b[:, 2], h - b[:, 1]], axis=1)
        return np.ascontiguousarray(image[::-1]), _with_boxes(target, flipped)


class Rotate90:
    """Turn the image ``k`` quarter turns counter-clockwise, ``k`` uniform in {0, 1, 2, 3}.

    One quarter turn of a ``W x H`` image gives an ``H x W`` one in which source pixel ``(x, y)``
    lands at ``(y, W - x)``: a box ``(x1, y1, x2, y2)`` becomes ``(y1, W - x2, y2, W - x1)``.
    A non-square image changes shape, so put this before a resize to the network size.
    """

    def __init__(self) -> None:
        self._rng = np.random.default_rng()

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, Target]:
        rng = rng if rng is not None else self._rng
        return self.apply(image, target, int(rng.integers(4)))

    @staticmethod
    def apply(image: np.ndarray, target: Target, k: int) -> tuple[np.ndarray, Target]:
        """Turn ``k`` quarter turns counter-clockwise."""
        boxes = _boxes(target)
        for _ in range(k % 4):
            w = image.shape[1]
            boxes = np.stack([boxes[:, 1], w - boxes[:, 2], boxes[:, 3], w - boxes[:, 0]], axis=1)
            image = np.rot90(image)
        return np.ascontiguousarray(image), _with_boxes(target, boxes)


class ColorJitter:
    """Brightness, contrast and saturation each scaled by a factor uniform in ``[1 - a, 1 + a]``
    (applied in that order, in float, rounded back to ``uint8``): brightness multiplies every
    channel, contrast moves every pixel away from the image's mean grey, saturation away from the
    pixel's own grey (``0.299 R + 0.587 G + 0.114 B``)."""

    def __init__(self, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3
                 ) -> None:
        for name, a in (("brightness", brightness), ("contrast", contrast),
                        ("saturation", saturation)):
            if not 0.0 <= a < 1.0:
                raise ValueError(f"colour jitter {name} must be in [0, 1), got {a}")
        self.amounts = (float(brightness), float(contrast), float(saturation))
        self._rng = np.random.default_rng()

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, Target]:
        rng = rng if rng is not None else self._rng
        factors = [float(rng.uniform(1 - a, 1 + a)) for a in self.amounts]
        return self.apply(image, *factors), target

    @staticmethod
    def apply(image: np.ndarray, brightness: float, contrast: float, saturation: float
              ) -> np.ndarray:
        """Scale by the given factors (1 leaves the image as it is)."""
        x = image.astype(np.float32) * brightness
        grey_weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        mean_grey = float((x @ grey_weights).mean())
        x = (x - mean_grey) * contrast + mean_grey
        grey = (x @ grey_weights)[..., None]
        x = (x - grey) * saturation + grey
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def mosaic(samples: Sequence[tuple[np.ndarray, Target]], size: tuple[int, int],
           rng: np.random.Generator, min_visible: float = 0.5) -> tuple[np.ndarray, Target]:
    """Four ``(image, target)`` samples in one ``size = (W, H)`` image around a centre
    ``(cx, cy)`` drawn uniformly from the middle half of each axis.

    Sample ``q`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) is resized whole to the
    ``W x H`` output size and its part that falls into quadrant ``q`` is kept: the quadrant's
    window of the resized sample is the one touching that sample's own corner ``q``, so the
    top-left quadrant ``[0, cx) x [0, cy)`` shows the resized sample's ``[0, cx) x [0, cy)``, the
    top-right ``[cx, W) x [0, cy)`` its ``[cx, W) x [0, cy)``, and so on — objects keep the scale
    they have at the network size. Boxes are clipped to their quadrant (:func:`clip_boxes`);
    per-box arrays are concatenated in quadrant order.
    """
    if len(samples) != 4:
        raise ValueError(f"a mosaic takes 4 samples, got {len(samples)}")
    width, height = size
    cx = int(rng.integers(width // 4, width - width // 4, endpoint=True))
    cy = int(rng.integers(height // 4, height - height // 4, endpoint=True))
    out = np.empty((height, width, 3), dtype=np.uint8)
    parts: list[Target] = []
    quadrants = [(0, 0, cx, cy), (cx, 0, width, cy), (0, cy, cx, height), (cx, cy, width, height)]
    for (image, target), (x0, y0, x1, y1) in zip(samples, quadrants, strict=True):
        h0, w0 = image.shape[:2]
        out[y0:y1, x0:x1] = resize_image(image, (width, height))[y0:y1, x0:x1]
        scaled = _boxes(target) * np.array([width / w0, height / h0, width / w0, height / h0])
        shifted = scaled - np.array([x0, y0, x0, y0])
        boxes, keep = clip_boxes(shifted, x1 - x0, y1 - y0, min_visible)
        parts.append(_with_boxes(target, boxes + np.array([x0, y0, x0, y0]), keep))
    merged: Target = {**samples[0][1], "boxes": np.concatenate([p["boxes"] for p in parts])}
    for key, value in samples[0][1].items():
        if key != "boxes" and isinstance(value, np.ndarray) and all(
                isinstance(p.get(key), np.ndarray) for p in parts):
            n0 = len(_boxes(samples[0][1]))
            if value.shape[:1] == (n0,):
                merged[key] = np.concatenate([p[key] for p in parts])
    return out, merged


def build_pipeline(input_size: tuple[int, int], train: bool, drift: tuple[int, int] = (150, 100),
                   flip_prob: float = 0.5, crop: tuple[int, int] | None = None,
                   augment: Sequence[str] = ()) -> Compose:
    """The per-sample training pipeline with the ``augment`` names (``zoom``, ``vflip``,
    ``rot90``, ``jitter``; ``mosaic`` is the data set's, around this pipeline), or
    :func:`~squeezedet.data.transforms.build_transforms`' without any.

    Order: drift, quarter turns, vertical and horizontal flips on the source image, the resize to
    ``input_size``, the zoom (:class:`ScaleCrop` of the resized image: zooming is relative to what
    the network sees), the training crop, the colour jitter.
    """
    names = set(augment)
    if not train or not names - {"mosaic"}:
        return build_transforms(input_size, train, drift, flip_prob, crop)
    steps: list[Transform] = []
    if tuple(drift) != (0, 0):
        steps.append(Drift(drift))
    if "rot90" in names:
        steps.append(Rotate90())
    if "vflip" in names:
        steps.append(VerticalFlip(0.5))
    if flip_prob > 0:
        steps.append(HorizontalFlip(flip_prob))
    window = None if crop is None or tuple(crop) == tuple(input_size) else (crop[0], crop[1])
    if window is not None and "zoom" not in names:  # resample only the window: same pixels, boxes
        steps.append(ResizeCrop(input_size, window))
    else:
        steps.append(Resize(input_size))
    if "zoom" in names:
        steps.append(ScaleCrop(input_size, ZOOM_SCALE))
        if window is not None:
            steps.append(RandomCrop(window))
    if "jitter" in names:
        steps.append(ColorJitter(*JITTER))
    return Compose(steps)
