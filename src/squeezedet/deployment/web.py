"""``squeezedet export --format web OUT_DIR``: a self-contained folder that detects in a browser.

The folder, served by any static server (``python -m http.server -d OUT_DIR``)::

    index.html           the page: an image file, the webcam, or ?image=URL
    squeezedet.js        the pre- and post-processing of the Python Detector, in JavaScript
    resize.js            its resize: the pixels the Python Detector feeds the model, exactly
    model.onnx           the model (fp32, or int8 with --precision int8), checked against PyTorch
    model.onnx.json      its metadata (classes, input size, anchors)
    ort/                 ONNX Runtime Web (WebAssembly build) and its licence

ONNX Runtime Web comes from the ``onnxruntime-web`` npm package, copied in at export time from a
local install: ``make web`` (``npm install --prefix build/web onnxruntime-web@VERSION``), or the
package folder given with ``--ort-web``. Nothing is fetched at export time.

Opened with ``?image=URL`` the page writes the detections as JSON —
``[{"label": class name, "score": …, "box": [x1, y1, x2, y2]}]``, boxes in the original image's
pixels, best score first — into ``<pre id="detections">`` and the time per image into
``<pre id="timing">`` (``{"ms_per_image", "first_ms", "runs", "backend", "threads"}``; ``?runs=N``
times N runs and reports the median after the first; ``?conf=S`` sets the minimum score, 0.4 by
default as the Detector's; ``?resize=pillow`` enlarges with Pillow's filter, as a Detector
without OpenCV does). An image it cannot load shows the error and writes ``{"error": …}``
into ``#detections``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from squeezedet.deployment.export import ExportResult, export_model
from squeezedet.errors import SqueezeDetError, check_output_dir

#: the onnxruntime-web version the page was tested with (``make web`` installs it)
ORT_WEB_VERSION = "1.31.1"

#: where ``make web`` installs the package, relative to the repository root (or the current folder)
DEFAULT_ORT_WEB = Path("build/web/node_modules/onnxruntime-web")

#: the files of the package's ``dist/`` the page loads: the WebAssembly build's ES module, its
#: loader and the WebAssembly binary (SIMD; threaded where the page is cross-origin isolated)
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")

#: the page's own files, from :mod:`squeezedet.deployment.web_assets`
PAGE_FILES = ("index.html", "squeezedet.js", "resize.js")

_MIT = """Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


@dataclass
class WebExport:
    """What :func:`export_web` wrote."""

    folder: Path
    model: ExportResult
    ort_web_version: str


def _install_hint() -> str:
    return (f"run 'make web' (npm install --prefix build/web onnxruntime-web@{ORT_WEB_VERSION}) "
            "or pass --ort-web PATH/TO/node_modules/onnxruntime-web")


def find_ort_web(path: str | Path | None = None) -> Path:
    """The ``dist/`` folder of an ``onnxruntime-web`` package holding :data:`ORT_FILES`: ``path``
    (the package folder or its ``dist/``), else :data:`DEFAULT_ORT_WEB` under the current folder
    or the source tree's root. Raises a one-line error naming the command that installs it."""
    if path is not None:
        candidates = [Path(path), Path(path) / "dist"]
    else:
        root = Path(__file__).resolve().parents[3]  # src/squeezedet/deployment/web.py → root
        candidates = [base / DEFAULT_ORT_WEB / "dist" for base in (Path.cwd(), root)]
    for dist in candidates:
        if all((dist / name).is_file() for name in ORT_FILES):
            return dist
    where = f"--ort-web {path}" if path is not None else f"{DEFAULT_ORT_WEB}"
    missing = next(n for n in ORT_FILES if not (candidates[-1] / n).is_file())
    raise SqueezeDetError(f"{where}: ONNX Runtime Web not found (no dist/{missing}); "
                          + _install_hint())


def _package_version(dist: Path) -> str:
    try:
        return str(json.loads((dist.parent / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def _vendor_ort(dist: Path, folder: Path) -> str:
    """Copy ONNX Runtime Web's files and its licence into ``folder/ort``; its version."""
    ort = folder / "ort"
    ort.mkdir(exist_ok=True)
    for name in ORT_FILES:
        shutil.copyfile(dist / name, ort / name)
    version = _package_version(dist)
    (ort / "LICENSE.txt").write_text(
        f"ONNX Runtime Web {version} (npm package onnxruntime-web), copied unmodified from its\n"
        "dist/ folder. Licensed under the MIT License:\n\n"
        "Copyright (c) Microsoft Corporation. All rights reserved.\n\n" + _MIT)
    return version


def export_web(weights: str | Path, folder: str | Path, *, precision: str = "fp32",
               ort_web: str | Path | None = None, calib_data: str | Path | None = None,
               calib_images: int = 64, parity_data: str | Path | None = None,
               check: bool = True) -> WebExport:
    """Write the browser folder for a checkpoint (see the module docstring).

    Args:
        weights: a ``.pt`` checkpoint.
        folder: the folder to write (created; the files named above are replaced).
        precision: ``fp32`` or ``int8`` (ONNX Runtime's static quantisation, calibrated on
            ``calib_data`` like ``--format onnx``).
        ort_web: the ``onnxruntime-web`` package folder (default: :data:`DEFAULT_ORT_WEB`).
        check: the ONNX parity check against PyTorch, as ``--format onnx`` does.
    """
    if precision not in ("fp32", "int8"):
        raise SqueezeDetError(f"web export runs fp32 or int8 ONNX models, not {precision!r}")
    out = check_output_dir(folder, "OUT_DIR")
    if out.exists() and (out / "model.onnx").is_dir():
        raise SqueezeDetError(f"{out / 'model.onnx'}: a folder is in the way of the model file")
    dist = find_ort_web(ort_web)  # before the export: a missing runtime fails in a second
    out.mkdir(parents=True, exist_ok=True)
    result = export_model(weights, "onnx", out / "model.onnx", precision=precision,
                          calib_data=calib_data, calib_images=calib_images,
                          parity_data=parity_data, check=check)
    assets = resources.files("squeezedet.deployment") / "web_assets"
    for name in PAGE_FILES:
        (out / name).write_bytes((assets / name).read_bytes())
    version = _vendor_ort(dist, out)
    return WebExport(out, result, version)
