"""Reading images of any common PNG/JPEG flavour as 8-bit RGB arrays.

Every image the data sets hand to the network goes through :func:`load_image`, so the rest of the
code sees one format: ``uint8`` array ``[H, W, 3]`` in RGB order.

Conversions:

- grayscale (8-bit, 1-bit) and palette images are expanded to three equal (or looked-up) channels;
- an alpha channel is dropped (the colour values are kept as stored, not composited);
- 16-bit images (grayscale ``I;16``/``I`` or RGB) are scaled down by keeping the high byte,
  ``v8 = v16 >> 8`` (0 -> 0, 65535 -> 255), never clipped to 255; Pillow already decodes 16-bit
  RGB PNGs this way, and grayscale uses the same rule so both agree;
- CMYK, YCbCr and the other Pillow modes go through Pillow's own RGB conversion.

The EXIF orientation tag is not applied: labels refer to the pixels as stored in the file.

Decoding: 8-bit RGB PNGs (KITTI's kind) are decoded by OpenCV when it is installed (the ``video``
extra) — ~30 % faster than Pillow (11.3 against 16 ms for a KITTI frame), the same pixels, PNG being
lossless; every other file, and any PNG OpenCV cannot read, goes through Pillow.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from squeezedet.errors import DataError, SqueezeDetError

#: File extensions the data set readers look for, in order of preference.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

#: One image as the detector accepts it: a path, a Pillow image, a NumPy array or a tensor (see
#: :func:`as_rgb_arrays`).
ImageInput = Union[str, Path, Image.Image, np.ndarray, Tensor]  # noqa: UP007 - a runtime alias
ChannelOrder = Literal["rgb", "bgr"]


_CV2: Any = False  # not looked up yet


def opencv() -> Any:
    """The ``cv2`` module when OpenCV is installed, else ``None``; imported on first use only
    (~17 MiB of resident memory).

    OpenCV is set to run on the calling thread only (``cv2.setNumThreads(0)``, process-wide):
    its thread pool does not survive a fork, and a DataLoader worker forked after the pool was
    used hung for good inside OpenCV the first time it resized an image. The images here are
    small, and the cores belong to torch or the inference runtime anyway.
    """
    global _CV2
    if _CV2 is False:
        try:
            import cv2 as module
        except ImportError:
            module = None  # type: ignore[assignment]
        if module is not None:
            module.setNumThreads(0)
        _CV2 = module
    return _CV2


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _complete_rgb8_png(path: Path, size: int) -> bool:
    """Whether ``path`` is a PNG of 8-bit RGB pixels (IHDR bit depth 8, colour type 2) that ends
    with its IEND chunk (a truncated file is left to Pillow and its error message)."""
    if size < 57:  # signature + IHDR chunk + IEND chunk
        return False
    with open(path, "rb") as f:
        head = f.read(26)
        f.seek(-12, 2)
        tail = f.read(12)
    return (head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 8
            and head[25] == 2 and tail[4:8] == b"IEND")


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 pointed at the null device for the duration (libpng inside OpenCV prints
    "libpng error: ..." there for a corrupt file before OpenCV returns nothing; the error the user
    sees is Pillow's, one line, naming the file). Not silenced when descriptor 2 is unusable."""
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            yield
            return
        try:
            os.dup2(null, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)


def _opencv_rgb8_png(path: Path) -> np.ndarray | None:
    """An 8-bit RGB PNG decoded by OpenCV, or ``None`` when OpenCV cannot read it."""
    cv2 = opencv()
    with _native_stderr_silenced():
        if os.name == "nt":  # imread takes no Unicode paths there
            array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        else:
            array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # UNCHANGED: no EXIF rotation
    if array is None or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        return None
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` array of shape ``[H, W, 3]``.

    Raises :class:`DataError` naming the file when it is missing, empty, not an image, truncated
    or otherwise undecodable.
    """
    path = Path(path)
    size = image_file_size(path)
    if opencv() is not None and _complete_rgb8_png(path, size):
        array = _opencv_rgb8_png(path)
        if array is not None and array.shape[0] and array.shape[1]:
            return array
    try:
        with Image.open(path) as img:
            img.load()
            array = _to_rgb8(img, path)
    except UnidentifiedImageError:
        raise DataError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"corrupt or truncated image ({exc})") from None
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(path, f"image has no pixels (size {array.shape[1]}x{array.shape[0]})")
    return array


def image_file_size(path: Path) -> int:
    """The size in bytes of the image file ``path``; raises :class:`DataError` naming the file
    when it is missing, unreadable, not a regular file or empty."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except OSError as exc:
        raise DataError(path, f"cannot read the image file ({exc})") from None
    if not path.is_file():
        raise DataError(path, "is not a file")
    if size == 0:
        raise DataError(path, "image file is empty (0 bytes)")
    return size


def _to_rgb8(img: Image.Image, path: Path) -> np.ndarray:
    """Convert a loaded Pillow image to ``uint8 [H, W, 3]`` RGB (see the module docstring)."""
    if img.mode in _16BIT_MODES:
        values = np.asarray(img).astype(np.int64)
        # Mode "I" is 32-bit signed in general; a PNG decodes to it only with 16-bit content.
        values = np.clip(values, 0, 65535) >> 8
        gray = values.astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode == "F":
        raise DataError(path, "floating-point images are not supported; save as 8- or 16-bit PNG")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8, copy=True)


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
