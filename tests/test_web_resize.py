"""The web page's resize (``web_assets/resize.js``, run under Node) gives the very pixels of the
Python Detector's :func:`~squeezedet.data.transforms.resize_image`: OpenCV's ``INTER_LINEAR`` for an
enlargement, Pillow's ``BILINEAR`` otherwise — compared bit for bit on random images and sizes.
Skipped, with the reason, where ``node`` is missing (and the OpenCV half where OpenCV is)."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
from importlib import resources

import numpy as np
import PIL
import pytest

from squeezedet.data.transforms import resize_image

needs_node = pytest.mark.skipif(shutil.which("node") is None,
                                reason="needs Node.js ('node') to run the page's JavaScript")
needs_opencv = pytest.mark.skipif(importlib.util.find_spec("cv2") is None,
                                  reason="needs OpenCV (the 'video' extra): Python's enlargement")

#: reads one JSON case per line on stdin, writes the resized RGB pixels (base64) per line
_NODE = """
import { createInterface } from "node:readline";
const { resizeBilinear } = await import(process.argv[1]);
for await (const line of createInterface({ input: process.stdin })) {
  const c = JSON.parse(line);
  const rgba = Buffer.from(c.rgba, "base64");
  const rgb = resizeBilinear(rgba, c.w0, c.h0, c.width, c.height, c.opencv);
  console.log(Buffer.from(rgb).toString("base64"));
}
"""

Case = tuple[int, int, int, int]  # (w0, h0, width, height)

#: the page follows Pillow 13's order of the two passes (see resize.js)
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13

#: sizes worth naming: KITTI to the network, tiny images, exact 2x and 3x, one side unchanged
_NAMED: list[Case] = [(1242, 375, 1248, 384), (1, 1, 5, 3), (1, 1, 1, 2), (1, 6, 4, 6),
                      (3, 2, 6, 4), (8, 8, 16, 16), (7, 5, 21, 15), (31, 9, 31, 20),
                      (40, 12, 97, 12), (416, 128, 1248, 384)]


def _enlargements(rng: np.random.Generator, n: int) -> list[Case]:
    """``n`` random enlargements: factors 1-3 per side, a quarter of them integer and equal."""
    cases: list[Case] = []
    while len(cases) < n:
        w0, h0 = int(rng.integers(1, 160)), int(rng.integers(1, 90))
        if rng.random() < 0.25:
            fx = fy = float(rng.integers(1, 4))
        else:
            fx, fy = rng.uniform(1.0, 3.0, size=2)
        width, height = max(w0, round(w0 * fx)), max(h0, round(h0 * fy))
        if (width, height) != (w0, h0):
            cases.append((w0, h0, width, height))
    return cases


def _vertical_first(case: Case) -> bool:
    """Whether Pillow 13 resizes vertically first (the height loses more than twice as many
    pixels as the width); earlier Pillow always runs the horizontal pass first."""
    w0, h0, width, height = case
    return height < h0 and width != w0 and h0 - height > 2 * (w0 - width)


def _others(rng: np.random.Generator, n: int) -> list[Case]:
    """``n`` random sizes that are not enlargements: shrinks, one side up and one down, same."""
    cases: list[Case] = [(20, 10, 20, 10), (1242, 375, 384, 128), (67, 73, 61, 14)]
    while len(cases) < n:
        w0, h0 = int(rng.integers(2, 160)), int(rng.integers(2, 90))
        width, height = int(rng.integers(1, 2 * w0)), int(rng.integers(1, 2 * h0))
        if width < w0 or height < h0:
            cases.append((w0, h0, width, height))
    return cases if PILLOW_13 else [c for c in cases if not _vertical_first(c)]


def _image(rng: np.random.Generator, w0: int, h0: int) -> np.ndarray:
    """Random RGB: noise, or flat patches with one-level steps (where rounding shows)."""
    if rng.random() < 0.5:
        return rng.integers(0, 256, (h0, w0, 3), dtype=np.uint8)
    coarse = rng.integers(0, 4, (h0, w0, 3)) * 64 + rng.integers(0, 2, (h0, w0, 3))
    return coarse.astype(np.uint8)


def _javascript(images: list[np.ndarray], cases: list[Case], opencv: bool) -> list[np.ndarray]:
    """resize.js's ``resizeBilinear`` under Node for each image and size."""
    script = resources.files("squeezedet.deployment") / "web_assets" / "resize.js"
    lines = []
    for image, (w0, h0, width, height) in zip(images, cases, strict=True):
        rgba = np.concatenate([image, np.full((h0, w0, 1), 255, np.uint8)], axis=2)
        lines.append(json.dumps({"w0": w0, "h0": h0, "width": width, "height": height,
                                 "opencv": opencv, "rgba": base64.b64encode(rgba.tobytes()).decode()}))
    done = subprocess.run(["node", "--input-type=module", "-e", _NODE, f"file://{script}"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = done.stdout.split()
    assert len(outputs) == len(cases)
    return [np.frombuffer(base64.b64decode(text), np.uint8).reshape(h, w, 3)
            for text, (_, _, w, h) in zip(outputs, cases, strict=True)]


def _check(cases: list[Case], opencv: bool, seed: int) -> int:
    """Assert the JavaScript equals ``resize_image`` on every case; how many cases OpenCV and
    Pillow disagree on (so that the comparison is known to tell the two apart)."""
    rng = np.random.default_rng(seed)
    images = [_image(rng, w0, h0) for w0, h0, _, _ in cases]
    for image, case, got in zip(images, cases, _javascript(images, cases, opencv), strict=True):
        want = resize_image(image, case[2:], opencv=opencv)
        assert got.shape == want.shape, case
        diff = np.abs(got.astype(int) - want).max()
        assert diff == 0, f"{case}: up to {diff} grey levels from Python's resize"
    return sum(not np.array_equal(resize_image(i, c[2:], opencv=True),
                                  resize_image(i, c[2:], opencv=False))
               for i, c in zip(images, cases, strict=True))


@needs_node
@needs_opencv
def test_enlargement_equals_opencv_bit_for_bit() -> None:
    cases = _NAMED + _enlargements(np.random.default_rng(0), 80)
    differing = _check(cases, opencv=True, seed=1)
    assert differing >= len(cases) // 2  # Pillow's pixels would have failed these


@needs_node
def test_everything_else_equals_pillow_bit_for_bit() -> None:
    cases = _others(np.random.default_rng(2), 40)
    assert sum(map(_vertical_first, cases)) >= (3 if PILLOW_13 else 0)  # both pass orders
    _check(cases, opencv=True, seed=3)
    # a Detector without OpenCV (or on eager PyTorch) enlarges with Pillow too
    _check(_NAMED + _enlargements(np.random.default_rng(4), 30), opencv=False, seed=5)
