"""Runners: backend choice, in-memory conversion with fallback, precisions, clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from random_model import random_checkpoint

from squeezedet.deployment.preprocess import parity_images
from squeezedet.deployment.runners import (
    ExecuTorchRunner,
    OnnxRuntimeRunner,
    OpenVinoRunner,
    TorchRunner,
    fastest_cpu_runner,
    load_runner,
)
from squeezedet.errors import SqueezeDetError

SIZE = (192, 64)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("ckpt"), SIZE, seed=1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return parity_images(SIZE, 2)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_torch_runner_layouts_agree(checkpoint: Path, images: torch.Tensor) -> None:
    nchw = TorchRunner(checkpoint, channels_last=False)(images)
    nhwc = TorchRunner(checkpoint)(images)
    assert nchw.shape == (2, 72, 4, 12)
    # the same fp32 arithmetic in another memory order: rounding-level differences only
    assert _rel_err(nhwc, nchw) < 1e-4


def test_banded_and_plain_torch_runners_agree(checkpoint: Path, images: torch.Tensor,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import squeezedet.models.backbones as backbones

    calls = []
    real = backbones.banded_forward
    monkeypatch.setattr(backbones, "banded_forward", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(backbones, "BAND_MIN_PIXELS", 1)
    monkeypatch.setattr(backbones, "BAND_PIXELS", 1500)  # several bands
    plain = TorchRunner(checkpoint, banded=False)(images)
    assert calls == []
    banded = TorchRunner(checkpoint)(images)
    assert calls == [1]
    torch.testing.assert_close(banded, plain, rtol=1e-5, atol=1e-5)


def test_torch_bf16_close_to_fp32(checkpoint: Path, images: torch.Tensor) -> None:
    runner = TorchRunner(checkpoint, precision="bf16")
    out = runner(images)
    assert out.dtype == torch.float32
    # bf16 keeps 8 mantissa bits (~0.4 % per rounding); through 27 layers a few % at most
    assert _rel_err(out, TorchRunner(checkpoint)(images)) < 0.05
    with pytest.raises(SqueezeDetError, match="int8"):
        TorchRunner(checkpoint, precision="int8")


def test_auto_picks_a_measured_runtime_that_matches(checkpoint: Path,
                                                     images: torch.Tensor) -> None:
    runner = load_runner(checkpoint)  # auto on the CPU: measured here (which one is not asserted)
    expected = {TorchRunner} | ({OpenVinoRunner} if _has("openvino") else set()) | (
        {OnnxRuntimeRunner} if _has("onnxruntime") else set()) | (
        {ExecuTorchRunner} if _has("executorch") else set())
    assert type(runner) in expected
    assert runner.meta["input_size"] == list(SIZE)
    assert _rel_err(runner(images), TorchRunner(checkpoint)(images)) < 1e-4
    if len(expected) > 1:
        choice = runner.auto_choice
        assert not choice["cached"] and set(choice["median_ms"]) == {
            f"{n}:fp32" for n, t in [("torch", TorchRunner), ("onnxruntime", OnnxRuntimeRunner),
                                     ("openvino", OpenVinoRunner),
                                     ("executorch", ExecuTorchRunner)] if t in expected}
        again = load_runner(checkpoint)  # the choice is cached: same runtime, nothing timed
        assert type(again) is type(runner) and again.auto_choice["cached"]


def test_auto_falls_back_to_torch(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import squeezedet.deployment.graph
    from squeezedet.deployment.runners import executorch_runner

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(squeezedet.deployment.graph, "onnx_bytes", broken)
    monkeypatch.setattr(executorch_runner, "program_bytes", broken)
    if _has("openvino") or _has("onnxruntime") or _has("executorch"):
        with pytest.warns(UserWarning, match="exporter exploded"):
            runner = fastest_cpu_runner(checkpoint)
    else:
        runner = fastest_cpu_runner(checkpoint)
    assert isinstance(runner, TorchRunner)
    monkeypatch.setenv("SQUEEZEDET_NO_CONVERT", "1")
    assert isinstance(load_runner(checkpoint), TorchRunner)


def test_auto_rejects_a_disagreeing_runtime(checkpoint: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import squeezedet.deployment.runners.conversion as rt

    if not (_has("openvino") or _has("onnxruntime")):
        pytest.skip("needs an optional runtime")
    monkeypatch.setattr(rt, "AUTO_PARITY_RTOL", -1.0)  # nothing can agree this well
    with pytest.warns(UserWarning, match="disagrees"):
        assert isinstance(fastest_cpu_runner(checkpoint), TorchRunner)


@pytest.mark.skipif(not _has("onnxruntime"), reason="needs the 'export' extra")
def test_explicit_backend_converts_a_checkpoint(checkpoint: Path, images: torch.Tensor) -> None:
    runner = load_runner(checkpoint, "onnxruntime", threads=1)
    assert isinstance(runner, OnnxRuntimeRunner)
    assert _rel_err(runner(images), TorchRunner(checkpoint)(images)) < 1e-4


def test_errors(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(SqueezeDetError, match="not found"):
        load_runner(tmp_path / "missing.pt")
    weird = tmp_path / "model.tflite"
    weird.write_bytes(b"x")
    with pytest.raises(SqueezeDetError, match="unknown weights type"):
        load_runner(weird)
    with pytest.raises(SqueezeDetError, match="unknown backend"):
        load_runner(checkpoint, "tensorrt")
    with pytest.raises(SqueezeDetError, match="needs an exported model"):
        load_runner(checkpoint, "torchscript")
    with pytest.raises(SqueezeDetError, match="unknown precision"):
        load_runner(checkpoint, precision="fp8")
    orphan = tmp_path / "orphan.onnx"
    orphan.write_bytes(b"not onnx")
    if _has("onnxruntime"):
        with pytest.raises(SqueezeDetError, match="metadata file not found"):
            load_runner(orphan, "onnxruntime")
