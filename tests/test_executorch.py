"""ExecuTorch export (``.pte``, XNNPACK delegate) and the ``executorch`` runner.

Parity follows :data:`squeezedet.deployment.parity.PARITY_RTOL`: fp32 within 1e-4 of the largest
output magnitude (XNNPACK only reorders sums), int8 within 15 % (256 levels per tensor through the
backbone; ConvDet stays float). Skipped when the ``executorch`` extra is missing.
"""

from __future__ import annotations

import importlib.util
import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from random_model import random_checkpoint

from squeezedet.deployment.export import export_model
from squeezedet.deployment.preprocess import parity_images
from squeezedet.deployment.runners import TorchRunner, auto_candidates, load_runner
from squeezedet.errors import SqueezeDetError
from squeezedet.inference import Detector

pytestmark = pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                                reason="needs the 'executorch' extra (make executorch)")

SIZE = (192, 64)  # a 12x4 grid: fast to lower and run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("ckpt"), SIZE, seed=0)


@pytest.fixture(scope="module")
def programs(checkpoint: Path) -> dict[str, Path]:
    out = {}
    for precision in ("fp32", "int8"):
        path = checkpoint.with_name(f"m-{precision}.pte")
        with pytest.warns(UserWarning, match="synthetic") if precision == "int8" else nullcontext():
            export_model(checkpoint, "executorch", path, precision=precision, calib_images=4)
        out[precision] = path
    return out


@pytest.mark.parametrize(("precision", "rtol"), [("fp32", 1e-4), ("int8", 0.15)])
def test_pte_parity_with_pytorch(checkpoint: Path, programs: dict[str, Path], precision: str,
                                 rtol: float) -> None:
    path = programs[precision]
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    assert meta["format"] == "executorch" and meta["precision"] == precision
    assert meta["parity"]["max_abs_diff"] <= meta["parity"]["tolerance"]
    # measured again here, on other images than the export's, against eager PyTorch
    x = parity_images(SIZE, 3)[1:]
    ref = TorchRunner(checkpoint, channels_last=False, banded=False)(x)
    got = load_runner(path, "executorch")(x)
    assert got.shape == ref.shape == (2, 72, 4, 12)
    err = float((got - ref).abs().max())
    assert err <= rtol * float(ref.abs().max())
    if precision == "int8":  # really quantised: not the float model
        assert err > 1e-4 * float(ref.abs().max())
        assert path.stat().st_size < 0.7 * programs["fp32"].stat().st_size


def test_runner_through_detector(checkpoint: Path, programs: dict[str, Path]) -> None:
    image = np.asarray(parity_images(SIZE, 1)[0].permute(1, 2, 0), dtype=np.uint8)
    ref = Detector(load_runner(checkpoint, "torch"), conf=0.0)(image)
    got = Detector(load_runner(programs["fp32"]), conf=0.0)(image)  # auto: by the suffix
    assert type(got).__name__ == "Detections" and len(got) == len(ref) > 0
    assert torch.equal(got.labels, ref.labels)
    assert torch.allclose(got.scores, ref.scores, atol=1e-4)
    assert torch.allclose(got.boxes, ref.boxes, atol=1e-2)


def test_checkpoint_lowered_in_memory_and_an_auto_candidate(checkpoint: Path) -> None:
    runner = load_runner(checkpoint, "executorch", threads=1)
    assert type(runner).__name__ == "ExecuTorchRunner" and runner.threads == 1
    x = parity_images(SIZE, 1)
    ref = TorchRunner(checkpoint)(x)
    assert float((runner(x) - ref).abs().max()) <= 1e-4 * float(ref.abs().max())
    assert ("executorch", "fp32") in auto_candidates("fp32")


def test_bad_input(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(SqueezeDetError, match="batch 1 .* without dynamic_batch"):
        export_model(checkpoint, "executorch", tmp_path / "m.pte", dynamic_batch=True)
    with pytest.raises(SqueezeDetError, match="supports precision fp32, int8, not 'bf16'"):
        export_model(checkpoint, "executorch", tmp_path / "m.pte", precision="bf16")
    with pytest.raises(SqueezeDetError, match=f"calib_data {tmp_path / 'none'}: no such"):
        export_model(checkpoint, "executorch", tmp_path / "m.pte", precision="int8",
                     calib_data=tmp_path / "none")
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"not a program")
    bad.with_name("bad.pte.json").write_text(json.dumps(
        {"class_names": ["Car"], "input_size": list(SIZE), "anchor_shapes": [[1, 1]]}))
    with pytest.raises(SqueezeDetError, match="bad.pte: ExecuTorch cannot load it"):
        load_runner(bad)


def test_int8_accuracy_on_data_is_recorded(checkpoint: Path, tmp_path: Path) -> None:
    from tiny_data import make_tiny_kitti

    root = make_tiny_kitti(tmp_path / "kitti", n=3, size=(192, 64))
    out = tmp_path / "m-int8.pte"
    export_model(checkpoint, "executorch", out, precision="int8", calib_data=root,
                 calib_images=3, parity_data=root, accuracy_data=root)
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    acc = meta["accuracy"]
    assert acc["data"] == str(root) and acc["metric"].startswith("KITTI mAP_R40")
    assert 0 <= acc["pytorch_fp32"] <= 100 and 0 <= acc["exported"] <= 100
    assert acc["drop"] == pytest.approx(acc["pytorch_fp32"] - acc["exported"], abs=1e-3)
    assert meta["calibration"]["source"] == str(root) and meta["calibration"]["images"] == 3
