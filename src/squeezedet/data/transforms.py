"""Paired image/box transforms: the original SqueezeDet augmentation and the resize to the network.

Every transform is a callable ``t(image, target, rng=None) -> (image, target)``:

- ``image``: ``uint8`` array ``[H, W, 3]`` (RGB);
- ``target``: a dict with at least ``"boxes"`` (``float32 [N, 4]``, ``(x1, y1, x2, y2)`` in
  absolute pixels of the *current* image) and ``"labels"`` (``int64 [N]``); other keys are passed
  through untouched. ``N`` may be 0.
- ``rng``: the :class:`numpy.random.Generator` to draw from; the data set passes one seeded from
  ``(seed, epoch, index)`` so that augmentation is reproducible with any number of loader workers.
  Without it a transform uses its own unseeded generator.

Transforms never modify their inputs; they return a new image array and a new target dict.

Pixel convention: pixel ``i`` covers ``[i, i + 1)``, so an image of width ``W`` spans ``[0, W]``
and the horizontal mirror of ``x`` is ``W - x`` (no "+1").

The training pipeline (:func:`build_transforms`) follows the original recipe:

1. :class:`Drift` — shift the content by a random integer ``(dx, dy)`` by cropping (``d > 0``) or
   padding (``d < 0``) the left/top edge only; the right/bottom edges stay where they are, so the
   image size becomes ``(W - dx, H - dy)``. A crop never cuts a box: ``dx <= min x1`` and
   ``dy <= min y1`` over the boxes. Padding uses the ImageNet mean colour, which is what the
   original's zero padding of the mean-subtracted image amounts to.
2. :class:`HorizontalFlip` with probability 0.5.
3. :class:`Resize` to the network input size, aspect ratio not kept, boxes scaled alike. Because the
   drifted image has a different size, this also jitters the scale by up to ``150 / W`` and
   ``100 / H`` (about 12 % and 27 % on KITTI), exactly as in the original.
4. Only with a training crop (not in the original): :class:`RandomCrop` cuts a smaller window out
   of the resized image, so that a step costs fewer pixels while objects keep the size they have
   at the network input; :class:`ResizeCrop` does steps 3 and 4 in one, resampling only the
   window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image

from squeezedet.data.images import opencv as find_opencv

Target = dict[str, Any]

#: ImageNet mean colour in RGB, rounded to 8 bits: the original subtracts the BGR means
#: (103.939, 116.779, 123.68) before padding with zeros, i.e. it pads with this colour.
MEAN_RGB_UINT8 = (124, 117, 104)

#: Least width and height, in pixels, of a box cut by the image border or a crop for it to stay a
#: target.
MIN_CLIPPED_SIZE = 1.0


class Transform(Protocol):
    """A paired transform: ``(image [H, W, 3] uint8, target) -> (image, target)``."""

    def __call__(
        self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Target]: ...


def _boxes(target: Target) -> np.ndarray:
    """The target's boxes as ``float32 [N, 4]`` (an empty ``[0, 4]`` array when absent)."""
    boxes = target.get("boxes")
    if boxes is None:
        return np.zeros((0, 4), dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


class Drift:
    """Random shift of the content by cropping or padding the left/top edge (never cutting a box).

    ``max_shift = (max_dx, max_dy)`` in pixels of the image this transform receives (apply it
    before :class:`Resize`, i.e. on the original image). ``dx`` is drawn uniformly from the integers
    in ``[-max_dx, min(max_dx, floor(min x1), W - 1)]`` (``dy`` likewise), so a crop stops at the
    left-most box and the image keeps at least one pixel. The output is ``[H - dy, W - dx, 3]``:
    original pixel ``(x, y)`` lands at ``(x - dx, y - dy)`` and boxes move by ``(-dx, -dy)``.
    Padded pixels get ``fill`` (RGB).
    """

    def __init__(
        self, max_shift: tuple[int, int] = (150, 100), fill: Sequence[int] = MEAN_RGB_UINT8
    ) -> None:
        max_dx, max_dy = (int(v) for v in max_shift)
        if max_dx < 0 or max_dy < 0:
            raise ValueError(f"drift maxima must be >= 0, got {max_shift}")
        self.max_shift = (max_dx, max_dy)
        self.fill = np.asarray(fill, dtype=np.uint8).reshape(3)
        self._rng = np.random.default_rng()

    @staticmethod
    def shift_range(
        size: int, box_starts: np.ndarray, max_shift: int
    ) -> tuple[int, int]:
        """Inclusive integer range of shifts along one axis for an image ``size`` pixels long.

        ``box_starts``: the boxes' ``x1`` (or ``y1``) in pixels; a crop may not pass the smallest.
        """
        high = min(max_shift, size - 1)
        if box_starts.size:
            high = min(high, max(0, math.floor(float(box_starts.min()))))
        return -max_shift, high

    def __call__(
        self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Target]:
        rng = rng if rng is not None else self._rng
        boxes = _boxes(target)
        h, w = image.shape[:2]
        lo_x, hi_x = self.shift_range(w, boxes[:, 0], self.max_shift[0])
        lo_y, hi_y = self.shift_range(h, boxes[:, 1], self.max_shift[1])
        dx = int(rng.integers(lo_x, hi_x, endpoint=True))
        dy = int(rng.integers(lo_y, hi_y, endpoint=True))
        return self.apply(image, target, dx, dy)

    def apply(
        self, image: np.ndarray, target: Target, dx: int, dy: int
    ) -> tuple[np.ndarray, Target]:
        """Shift by a given ``(dx, dy)`` (``> 0`` crops the left/top, ``< 0`` pads it)."""
        h, w = image.shape[:2]
        if dx >= w or dy >= h:
            raise ValueError(f"shift ({dx}, {dy}) leaves nothing of a {w}x{h} image")
        out = np.empty((h - dy, w - dx, 3), dtype=np.uint8)
        out[...] = self.fill
        out[max(-dy, 0):, max(-dx, 0):] = image[max(dy, 0):, max(dx, 0):]
        shift = np.array([dx, dy, dx, dy], dtype=np.float32)
        return out, {**target, "boxes": _boxes(target) - shift}


class HorizontalFlip:
    """Mirror the image left-right with probability ``p``; a box ``(x1, y1, x2, y2)`` in an image of
    width ``W`` becomes ``(W - x2, y1, W - x1, y2)``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = float(p)
        self._rng = np.random.default_rng()

    def __call__(
        self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Target]:
        rng = rng if rng is not None else self._rng
        if rng.random() >= self.p:
            return image, target
        return self.apply(image, target)

    @staticmethod
    def apply(image: np.ndarray, target: Target) -> tuple[np.ndarray, Target]:
        """Flip unconditionally."""
        w = image.shape[1]
        boxes = _boxes(target)
        flipped = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        image = np.ascontiguousarray(image[:, ::-1])
        return image, {**target, "boxes": flipped.astype(np.float32)}


def resize_image(image: np.ndarray, size: tuple[int, int], opencv: bool = True) -> np.ndarray:
    """``uint8 [H0, W0, 3]`` → ``uint8 [H, W, 3]`` for ``size = (W, H)``, bilinear.

    Pillow's bilinear filter, which widens its kernel when shrinking (antialiasing). An enlargement
    in both directions (KITTI's 1242×375 → 1248×384) is the same plain bilinear interpolation with
    half-pixel centres in Pillow and OpenCV; OpenCV, when installed (the ``video`` extra), does it
    ~10× faster (0.5 ms instead of 4 ms here), and the two differ by at most one grey level.
    ``opencv=False`` always uses Pillow (OpenCV adds ~17 MiB of resident memory).
    """
    h0, w0 = image.shape[:2]
    width, height = size
    if (w0, h0) == (width, height):
        return image
    cv2 = find_opencv() if opencv and width >= w0 and height >= h0 else None
    if cv2 is not None:  # on the calling thread (see images.opencv): an OpenCV worker waiting
        # for a core that an inference runtime's idle thread spins on cost a 4 ms scheduler slice
        return cv2.resize(np.ascontiguousarray(image), (width, height),
                          interpolation=cv2.INTER_LINEAR)
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


class Resize:
    """Resize to ``size = (W, H)`` pixels (:func:`resize_image`; aspect ratio not kept); boxes are
    multiplied by ``(W / W0, H / H0, W / W0, H / H0)`` where ``(W0, H0)`` is the incoming image
    size."""

    def __init__(self, size: tuple[int, int], opencv: bool = True) -> None:
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"resize target must be positive (W, H), got {size}")
        self.size = (width, height)
        self.opencv = opencv

    def __call__(
        self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Target]:
        h0, w0 = image.shape[:2]
        width, height = self.size
        image = resize_image(image, (width, height), self.opencv)
        scale = np.array([width / w0, height / h0, width / w0, height / h0], dtype=np.float64)
        boxes = (_boxes(target).astype(np.float64) * scale).astype(np.float32)
        return image, {**target, "boxes": boxes}


class RandomCrop:
    """Cut a random ``size = (W, H)`` window out of the image (which must be at least that large);
    boxes are moved into the window's pixels and clipped to it.

    With probability ``focus`` (and when the image has boxes) the window is placed around a box
    drawn at random: uniformly among the positions that contain the box whole, or its centre
    when it is larger than the window; otherwise uniformly over the image. A clipped box that keeps
    less than ``min_visible`` of its area, or less than :data:`MIN_CLIPPED_SIZE` pixels of width or
    height, stops being a target (its visible part then counts as background, as for the objects
    the data marks as ignored). Extra target keys with one entry per box (``labels``) are cut alike.
    """

    def __init__(self, size: tuple[int, int], focus: float = 0.75, min_visible: float = 0.5) -> None:
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"crop size must be positive (W, H), got {size}")
        if not 0.0 <= focus <= 1.0:
            raise ValueError(f"crop focus must be in [0, 1], got {focus}")
        self.size = (width, height)
        self.focus = float(focus)
        self.min_visible = float(min_visible)
        self._rng = np.random.default_rng()

    @staticmethod
    def _start(rng: np.random.Generator, length: int, window: int, lo: float, hi: float) -> int:
        """A window start along one axis of ``length`` pixels whose window holds ``[lo, hi]``
        (its centre when it does not fit), uniform among such starts."""
        last = length - window
        if hi - lo <= window:
            first, final = math.ceil(hi - window), math.floor(lo)
        else:
            centre = (lo + hi) / 2
            first, final = math.ceil(centre - window), math.floor(centre)
        first, final = max(first, 0), min(final, last)
        if first > final:  # cannot happen for a box inside the image; stay in range anyway
            first, final = 0, last
        return int(rng.integers(first, final, endpoint=True))

    def __call__(
        self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Target]:
        rng = rng if rng is not None else self._rng
        h, w = image.shape[:2]
        cw, ch = self.size
        if cw > w or ch > h:
            raise ValueError(f"crop {cw}x{ch} is larger than the {w}x{h} image")
        x0, y0 = self.window(w, h, _boxes(target), rng)
        return self.apply(image, target, x0, y0)

    def window(self, width: int, height: int, boxes: np.ndarray, rng: np.random.Generator
               ) -> tuple[int, int]:
        """The top-left corner of a window drawn for a ``width`` × ``height`` image with
        ``boxes`` (see the class docstring)."""
        cw, ch = self.size
        if len(boxes) and rng.random() < self.focus:
            x1, y1, x2, y2 = boxes[int(rng.integers(len(boxes)))]
            return (self._start(rng, width, cw, float(x1), float(x2)),
                    self._start(rng, height, ch, float(y1), float(y2)))
        return (int(rng.integers(0, width - cw, endpoint=True)),
                int(rng.integers(0, height - ch, endpoint=True)))

    def apply(self, image: np.ndarray, target: Target, x0: int, y0: int
              ) -> tuple[np.ndarray, Target]:
        """Cut the window whose top-left corner is ``(x0, y0)``."""
        cw, ch = self.size
        return np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]), self.cut_target(target, x0, y0)

    def cut_target(self, target: Target, x0: int, y0: int) -> Target:
        """The target of the window whose top-left corner is ``(x0, y0)``."""
        cw, ch = self.size
        boxes = _boxes(target).astype(np.float64)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        moved = boxes - np.array([x0, y0, x0, y0], dtype=np.float64)
        clipped = np.stack([np.clip(moved[:, 0], 0, cw), np.clip(moved[:, 1], 0, ch),
                            np.clip(moved[:, 2], 0, cw), np.clip(moved[:, 3], 0, ch)], axis=1)
        cw_, ch_ = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
        visible = np.where(area > 0, cw_ * ch_ / np.maximum(area, 1e-12), 0.0)
        keep = ((cw_ >= MIN_CLIPPED_SIZE) & (ch_ >= MIN_CLIPPED_SIZE)
                & (visible >= self.min_visible))
        result = {**target, "boxes": clipped[keep].astype(np.float32)}
        n = len(boxes)
        for key, value in target.items():
            if key != "boxes" and isinstance(value, np.ndarray) and value.shape[:1] == (n,):
                result[key] = value[keep]
        return result


class ResizeCrop:
    """:class:`Resize` to ``size`` followed by :class:`RandomCrop` of ``crop``, resampling only the
    window: the same window drawn from ``rng`` and the same boxes, and the window's pixels
    resampled (Pillow, bilinear) from the part of the incoming image it covers, as Pillow
    resamples the whole image (an enlargement may differ from :class:`Resize`'s OpenCV one by a
    grey level). A window of half the width and height costs about a quarter of the resize: a
    400×400 tile resized to 384×384 and cut to 192×192 took 1.7 ms, the window alone 0.7 ms.
    """

    def __init__(self, size: tuple[int, int], crop: tuple[int, int], focus: float = 0.75,
                 min_visible: float = 0.5) -> None:
        self.resize = Resize(size)
        self.crop = RandomCrop(crop, focus, min_visible)
        if crop[0] > self.resize.size[0] or crop[1] > self.resize.size[1]:
            raise ValueError(f"crop {crop[0]}x{crop[1]} is larger than the "
                             f"{self.resize.size[0]}x{self.resize.size[1]} input")

    def __call__(
        self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Target]:
        rng = rng if rng is not None else self.crop._rng
        h0, w0 = image.shape[:2]
        (width, height), (cw, ch) = self.resize.size, self.crop.size
        sx, sy = width / w0, height / h0
        scaled = (_boxes(target).astype(np.float64) * [sx, sy, sx, sy]).astype(np.float32)
        target = {**target, "boxes": scaled}
        x0, y0 = self.crop.window(width, height, scaled, rng)
        region = (x0 / sx, y0 / sy, (x0 + cw) / sx, (y0 + ch) / sy)
        window = Image.fromarray(image).resize((cw, ch), Image.Resampling.BILINEAR, box=region)
        return np.asarray(window, dtype=np.uint8), self.crop.cut_target(target, x0, y0)


class Compose:
    """Apply transforms in order, passing the same generator to each."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(
        self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Target]:
        for transform in self.transforms:
            image, target = transform(image, target, rng)
        return image, target

    def __repr__(self) -> str:
        inner = ", ".join(type(t).__name__ for t in self.transforms)
        return f"Compose([{inner}])"


def build_transforms(
    input_size: tuple[int, int],
    train: bool,
    drift: tuple[int, int] = (150, 100),
    flip_prob: float = 0.5,
    crop: tuple[int, int] | None = None,
) -> Compose:
    """The pipeline for training (drift, flip, resize, and a random crop when ``crop`` is given)
    or evaluation (resize only).

    ``input_size = (W, H)`` of the network; ``drift = (max_dx, max_dy)`` in original-image pixels
    (``(0, 0)`` turns it off); ``flip_prob`` 0 turns flipping off; ``crop = (W, H)``, at most
    ``input_size``: training windows cut from the resized image (:class:`RandomCrop`).
    """
    steps: list[Transform] = []
    if train:
        if tuple(drift) != (0, 0):
            steps.append(Drift(drift))
        if flip_prob > 0:
            steps.append(HorizontalFlip(flip_prob))
    if train and crop is not None and tuple(crop) != tuple(input_size):
        steps.append(ResizeCrop(input_size, crop))
    else:
        steps.append(Resize(input_size))
    return Compose(steps)
