"""Pre-processing for every runner: images → the network's input batch, and the real-looking
images that calibrate int8 models and check exported models' parity.

:func:`network_batch` resizes like training and prediction
(:class:`~squeezedet.data.transforms.Resize`) and lays the batch out as a runner wants it;
:func:`runner_input` makes those choices for a given runner. Calibration and parity images are a
KITTI root's or a folder's photos (:func:`image_files`) or, without any, rendered synthetic driving
scenes (:func:`render_images`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from squeezedet.errors import SqueezeDetError


def render_images(input_size: tuple[int, int], n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic driving scenes, ``uint8 [H0, W0, 3]`` RGB at KITTI's 1242×375 (cached;
    treat them as read-only)."""
    return [_scene(seed + i) for i in range(n)]


@functools.lru_cache(maxsize=128)
def _scene(seed: int) -> np.ndarray:
    from squeezedet.data.synth import render_scene

    image = np.asarray(render_scene(seed, (1242, 375))[0].convert("RGB"))
    image.flags.writeable = False
    return image


def image_files(source: str | Path, n: int) -> list[Path]:
    """Up to ``n`` image files from ``source``: a KITTI root (its ``ImageSets/train.txt`` ids when
    present, else all of ``training/image_2``) or a folder of images; evenly spaced when there
    are more."""
    from squeezedet.data.images import IMAGE_EXTENSIONS

    root = Path(source)
    if not root.exists():
        raise SqueezeDetError(f"{root}: calibration/parity image folder not found")
    folder = root / "training" / "image_2"
    files: list[Path]
    if folder.is_dir():
        split = root / "ImageSets" / "train.txt"
        ids = [line.split()[0] for line in split.read_text().splitlines() if line.strip()] \
            if split.is_file() else None
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if ids is not None:
            wanted = set(ids)
            files = [p for p in files if p.stem in wanted]
    elif root.is_dir():
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    else:
        files = [root]
    if not files:
        raise SqueezeDetError(f"{root}: no images (.png/.jpg) found")
    if len(files) > n:
        step = len(files) / n
        files = [files[int(i * step)] for i in range(n)]
    return files


def network_batch(arrays: Sequence[np.ndarray], input_size: tuple[int, int], *,
                  opencv: bool = True, channels_last: bool = False,
                  uint8: bool = False) -> Tensor:
    """RGB ``uint8`` arrays of any size → ``float32 [B, 3, H, W]`` 0–255 at the network size,
    resized like training and prediction (:class:`~squeezedet.data.transforms.Resize`;
    ``opencv`` as there). Contiguous NCHW, or with ``channels_last`` a channels-last tensor made
    without a layout copy (the stacked NHWC arrays already are that memory order). ``uint8``: the
    resized pixels as they are, for a PyTorch model, which converts them itself (a quarter of the
    memory, and of the transfer to a GPU)."""
    from squeezedet.data.transforms import Resize

    resize = Resize(input_size, opencv=opencv)
    resized = np.stack([resize(a, {})[0] for a in arrays])
    if channels_last:
        nhwc = torch.from_numpy(resized).permute(0, 3, 1, 2)
        return nhwc if uint8 else nhwc.float()
    # NumPy, not torch: torch's copy sometimes took 4.7 ms instead of 0.7 next to a runtime's threads
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(0, 3, 1, 2),
                                                 dtype=np.uint8 if uint8 else np.float32))


def parity_images(input_size: tuple[int, int], n: int = 2,
                  source: str | Path | None = None) -> Tensor:
    """``float32 [n, 3, H, W]`` real-looking network inputs: images of ``source`` (see
    :func:`image_files`) or, without it, rendered synthetic driving scenes."""
    from squeezedet.data.images import load_image

    if source is not None:
        arrays = [load_image(p) for p in image_files(source, n)]
    else:
        arrays = render_images(input_size, n)
    return network_batch(arrays, input_size)


def runner_input(runner: Any, arrays: Sequence[np.ndarray], input_size: tuple[int, int]) -> Tensor:
    """``uint8 [H0, W0, 3]`` RGB arrays (any sizes) → ``[B, 3, H, W]`` RGB 0–255 at the network
    size ``(W, H)`` for ``runner``, resized like training
    (:class:`~squeezedet.data.transforms.Resize`): ``uint8`` for eager PyTorch (the model converts
    it), ``float32`` for the other runners."""
    from squeezedet.deployment.runners import TorchRunner, is_torch_runner

    eager = isinstance(runner, TorchRunner)
    # PyTorch on the CPU is the lean path (one image, little memory): Pillow, not OpenCV
    lean = is_torch_runner(runner) and runner.device.type == "cpu"
    return network_batch(arrays, input_size, opencv=not lean,
                         channels_last=getattr(runner, "channels_last", False), uint8=eager)
