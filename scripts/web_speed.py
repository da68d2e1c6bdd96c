"""The web page's time per image in headless Chromium, and its detections against Python's.

Exports the model (``--weights``, else a random SqueezeDet at --input-size) with ``export_web``
(fp32 and int8 ONNX; int8 calibrated on synthetic scenes or --calib-data), serves the folder on
127.0.0.1, opens ``index.html?image=scene.png&runs=N`` in headless Chromium (the system's
``chromium`` and ``chromedriver`` through Selenium) and prints the page's ``#timing`` (median ms
per image after the first run: resize, ONNX Runtime Web's WebAssembly forward on one thread,
post-processing) and how far its detections are from the Python Detector's on the same image::

    make browser    # Chromium, chromedriver, Selenium, ONNX Runtime Web
    python scripts/web_speed.py --input-size 1248x384 --runs 20
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from squeezedet.checkpoint import save_checkpoint
from squeezedet.config import parse_size
from squeezedet.deployment.preprocess import render_images
from squeezedet.deployment.runners import load_runner
from squeezedet.deployment.web import export_web
from squeezedet.inference import Detector
from squeezedet.models import create_model


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)


def _page(driver: Any, url: str) -> tuple[Any, dict[str, Any]]:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 600).until(lambda d: d.find_element("id", "detections").text.strip())
    return (json.loads(driver.find_element("id", "detections").text),
            json.loads(driver.find_element("id", "timing").text or "{}"))


def _largest_gap(page: list[dict[str, Any]], python: Any) -> dict[str, Any]:
    """Order-free comparison: each page detection against the nearest Python detection of the
    same class (largest coordinate difference); the largest such box and score gaps over the
    detections matched within 1 px, and how many on each side found no match within 1 px."""
    boxes = python.boxes.numpy()
    unmatched, box_gap, score_gap, used = 0, 0.0, 0.0, set()
    for d in page:
        same = [i for i, n in enumerate(python.names) if n == d["label"] and i not in used]
        gaps = [float(np.abs(np.array(d["box"]) - boxes[i]).max()) for i in same]
        if not gaps or min(gaps) > 1.0:
            unmatched += 1
            continue
        j = same[int(np.argmin(gaps))]
        used.add(j)
        box_gap = max(box_gap, min(gaps))
        score_gap = max(score_gap, abs(d["score"] - float(python.scores[j])))
    return {"matched": len(used), "page_unmatched": unmatched,
            "python_unmatched": len(python) - len(used), "box_gap_px": box_gap,
            "score_gap": score_gap}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="a checkpoint (default: random weights)")
    ap.add_argument("--input-size", default="1248x384", help="WxH of a random model")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--calib-data")
    ap.add_argument("--conf", type=float, default=0.0, help="minimum score compared")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    weights = args.weights
    if weights is None:
        torch.manual_seed(0)
        model = create_model("squeezedet", input_size=parse_size(args.input_size)).eval()
        torch.nn.init.normal_(model.convdet.weight, std=0.002)
        weights = str(work / "model.pt")
        save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}},
                        weights)
    driver = _browser()
    try:
        for precision in ("fp32", "int8"):
            folder = work / precision
            export_web(weights, folder, precision=precision, calib_data=args.calib_data,
                       check=precision == "fp32" or args.weights is not None)
            Image.fromarray(render_images((1242, 375), 1)[0]).save(folder / "scene.png")
            server = ThreadingHTTPServer(("127.0.0.1", 0),
                                         functools.partial(_Quiet, directory=str(folder)))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = (f"http://127.0.0.1:{server.server_address[1]}/index.html?image=scene.png"
                   f"&runs={args.runs}&conf={args.conf}")
            page, timing = _page(driver, url)
            server.shutdown()
            python = Detector(load_runner(folder / "model.onnx", "onnxruntime"),
                              conf=args.conf)(folder / "scene.png")
            print(json.dumps({"precision": precision, **timing, "detections": len(page),
                              "model_mb": round((folder / "model.onnx").stat().st_size / 2**20, 2),
                              **_largest_gap(page, python)}))
    finally:
        driver.quit()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
