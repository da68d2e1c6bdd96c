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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from squeezedet.errors import DataError

#: File extensions the data set readers look for, in order of preference.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` array of shape ``[H, W, 3]``.

    Raises :class:`DataError` naming the file when it is missing, empty, not an image, truncated
    or otherwise undecodable.
    """
    path = Path(path)
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
