"""``squeezedet export --format web``: the page's detections in a real browser equal Python's.

The folder is served by a local ``http.server`` on 127.0.0.1 and opened in headless Chromium (the
system's ``chromium`` and ``chromedriver``, driven by Selenium; no browser is downloaded). Needs
Chromium, its driver, Selenium and ONNX Runtime Web's files (``make browser`` installs them where
it can); skipped with the reason otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from random_model import random_checkpoint

from squeezedet.data.images import opencv as find_opencv
from squeezedet.deployment.preprocess import render_images
from squeezedet.deployment.runners import load_runner
from squeezedet.deployment.web import ORT_FILES, export_web, find_ort_web
from squeezedet.errors import SqueezeDetError
from squeezedet.inference import Detector

SIZE = (192, 64)


def _why_not() -> str | None:
    """Why the browser test cannot run here, or ``None``."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "needs the 'export' extra (ONNX Runtime)"
    if importlib.util.find_spec("selenium") is None:
        return "needs Selenium (the dev extra: pip install -e '.[dev]')"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
    try:
        find_ort_web()
    except SqueezeDetError as exc:
        return str(exc)
    return None


needs_browser = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random SqueezeDet whose boxes stay near their anchors (small ConvDet weights)."""
    return random_checkpoint(tmp_path_factory.mktemp("ckpt"), SIZE, seed=1, convdet_std=0.002)


#: the test images, by what the resize does: KITTI-like proportions (1242x375 -> 1248x384) at the
#: test's size, every side smaller than the model's input, so Python enlarges with OpenCV (with
#: Pillow without it); a shrink (Pillow); the network size (no resize)
IMAGES = {"enlarge.png": (190, 58), "shrink.png": (400, 150), "same.png": SIZE}


@pytest.fixture(scope="module", params=["fp32", "int8"])
def site(checkpoint: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """The exported folder (fp32 or int8), with test images, served on 127.0.0.1: (base URL,
    folder)."""
    folder = checkpoint.with_name(f"web-{request.param}")
    with warnings.catch_warnings():  # int8 calibrated on synthetic scenes: a warning says so
        warnings.simplefilter("ignore")
        # random weights: int8 is checked against Python below, not against fp32 PyTorch
        export_web(checkpoint, folder, precision=request.param, calib_images=4,
                   check=request.param == "fp32")
    scene = Image.fromarray(render_images(SIZE, 1)[0])
    for name, size in IMAGES.items():
        scene.resize(size).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


#: drives Chromium in a child process (the pytest worker that ran Selenium itself was killed at
#: its teardown in the full parallel run): URLs on stdin, one JSON line per page on stdout
_DRIVER = """
import json, shutil, sys
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait
options = webdriver.ChromeOptions()
options.binary_location = shutil.which("chromium")
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
try:
    for url in sys.stdin.read().split():
        driver.get(url)
        WebDriverWait(driver, 120).until(lambda d: d.find_element("id", "detections").text.strip())
        text = {i: driver.find_element("id", i).text for i in ("detections", "timing", "status")}
        print(json.dumps(text), flush=True)
finally:
    driver.quit()
"""


def _pages(urls: list[str]) -> list[dict[str, str]]:
    """The ``#detections``, ``#timing`` and ``#status`` texts of each page, once written."""
    # in a session of its own: on quitting, the driver stops Chromium's whole process group,
    # which would otherwise be the test run's (and kill its pytest workers)
    done = subprocess.run([sys.executable, "-c", _DRIVER], input="\n".join(urls), text=True,
                          capture_output=True, timeout=600, check=False, start_new_session=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def _assert_same_detections(page: Any, python: Any, image: str) -> None:
    """The issue's rule: as many detections, in the same order, with equal labels, boxes within
    1 px and scores within 0.01."""
    assert isinstance(page, list) and len(page) == len(python) > 10, (image, len(page))
    for got, box, score, name in zip(page, python.boxes.tolist(), python.scores.tolist(),
                                     python.names, strict=True):
        assert set(got) == {"label", "score", "box"}
        assert got["label"] == name, image
        assert abs(got["score"] - score) <= 0.01, (image, got["score"], score)
        assert np.abs(np.array(got["box"]) - np.array(box)).max() <= 1.0, (image, got, box)


@needs_browser
def test_page_detections_equal_python(site: tuple[str, Path]) -> None:
    """Every image the way Python resizes it (OpenCV's bilinear for the enlargement, when
    installed), for fp32 and int8 models: int8 turns a one-grey-level input difference into
    different detections, so this holds only with the very same pixels."""
    base, folder = site
    pillow = "" if find_opencv() is not None else "&resize=pillow"  # as Python enlarges then
    shown = _pages([f"{base}/index.html?image={image}&conf=0{pillow}" for image in IMAGES])
    runner = load_runner(folder / "model.onnx", "onnxruntime")
    for image, text in zip(IMAGES, shown, strict=True):
        python = Detector(runner, conf=0.0)(folder / image)
        _assert_same_detections(json.loads(text["detections"]), python, image)
        assert json.loads(text["timing"])["ms_per_image"] > 0


@needs_browser
@pytest.mark.parametrize("site", ["fp32"], indirect=True)
def test_page_reports_an_image_it_cannot_load(site: tuple[str, Path]) -> None:
    errors = {"missing.png": "HTTP 404", "broken.png": "cannot decode image"}
    shown = _pages([f"{site[0]}/index.html?image={image}" for image in errors])
    for (image, message), text in zip(errors.items(), shown, strict=True):
        page = json.loads(text["detections"])
        assert set(page) == {"error"} and message in page["error"] and image in page["error"]
        assert message in text["status"]


def test_missing_ort_web_names_the_command(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "pkg" / "dist").mkdir(parents=True)
    with pytest.raises(SqueezeDetError, match=f"--ort-web {tmp_path / 'pkg'}: ONNX Runtime Web "
                                              f"not found .*{ORT_FILES[0]}.*make web"):
        export_web(checkpoint, tmp_path / "out", ort_web=tmp_path / "pkg")
    assert not (tmp_path / "out").exists()  # nothing exported before the check
    with pytest.raises(SqueezeDetError, match="web export runs fp32 or int8"):
        export_web(checkpoint, tmp_path / "out", precision="bf16")
