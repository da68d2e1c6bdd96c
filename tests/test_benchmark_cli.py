"""The benchmark command runs end to end and writes the documented JSON (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from squeezedet.cli import main


def test_benchmark_in_process_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    rows = "torch:fp32,torch:bf16"
    if importlib.util.find_spec("onnxruntime"):
        rows += ",onnxruntime:fp32"
    code = main(["benchmark", "--input-size", "192x64", "--runs", "2", "--warmup", "0",
                 "--threads", "1", "--backends", rows, "--in-process", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "torch-nchw" in printed and "ratio" in printed
    report = json.loads(out.read_text())
    assert report["input_size"] == [192, 64] and report["gflops"] > 0
    assert report["baseline_ms"] > 0
    names = [(r["backend"], r["precision"]) for r in report["rows"]]
    assert names[0] == ("torch-nchw", "fp32")  # the baseline always runs, first
    assert ("torch", "bf16") in names
    for row in report["rows"]:
        for key in ("total_ms_median", "total_ms_p90", "total_ms_min", "pre_ms_median",
                    "forward_ms_median", "post_ms_median", "fps", "peak_rss_mib", "params",
                    "model_mb", "gflops_per_s", "ratio_to_baseline"):
            assert row[key] is not None and row[key] >= 0, key
        assert row["total_ms_min"] <= row["total_ms_median"] <= row["total_ms_p90"]
    assert report["rows"][0]["ratio_to_baseline"] == pytest.approx(1.0)
    # bf16 marked where the CPU only emulates it; the peak is the best of several kernels
    from squeezedet.cpu import native_bf16

    bf16 = next(r for r in report["rows"] if r["precision"] == "bf16")
    assert bf16["emulated"] is (not native_bf16())
    assert ("emulated" in printed) is (not native_bf16())
    detail = report["matmul_peak_detail"]["fp32"]
    assert report["matmul_peak_gflops"]["fp32"] == max(detail.values())
    assert {"matmul 1024", "matmul 2048"} <= set(detail)
    assert report["cpu"]["native_bf16"] is native_bf16()
    # what the measurement depends on besides the code: the CPU's flags and the libraries
    from squeezedet.cpu import cpu_flags

    assert report["cpu"]["flags"] == sorted(cpu_flags())
    assert report["cpu"]["usable_cores"] >= 1
    assert report["versions"]["torch"] == torch.__version__
    assert report["versions"]["python"] == "{}.{}.{}".format(*sys.version_info[:3])


def test_benchmark_marks_emulated_bf16_and_leaves_it_out_of_the_defaults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import squeezedet.cpu
    from squeezedet.deployment.benchmark import DEFAULT_BACKENDS, default_backends

    monkeypatch.setattr(squeezedet.cpu, "native_bf16", lambda: False)  # as on an AVX2 CPU
    assert default_backends() == tuple(r for r in DEFAULT_BACKENDS if "bf16" not in r)
    out = tmp_path / "bench.json"
    with pytest.warns(UserWarning, match="bf16 is emulated"):
        assert main(["benchmark", "--input-size", "96x32", "--runs", "1", "--warmup", "0",
                     "--threads", "1", "--backends", "torch:bf16", "--in-process", "--no-peak",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    row = report["rows"][1]
    assert (row["backend"], row["precision"], row["emulated"]) == ("torch", "bf16", True)
    assert report["matmul_peak_gflops"]["bf16"] is None  # an emulated peak is not measured
    assert "emulated" in printed and "bf16 n/a (emulated)" in printed
    assert any("torch:bf16 is emulated" in n for n in report["notes"])


@pytest.mark.slow  # two fresh Python processes: ~15 s
def test_benchmark_subprocess_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--input-size", "192x64", "--runs", "1", "--warmup", "0",
                 "--backends", "torch:fp32", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["backend"] for r in rows] == ["torch-nchw", "torch"]
    assert all(r["peak_rss_mib"] > 0 for r in rows)


def test_benchmark_bad_row() -> None:
    assert main(["benchmark", "--backends", "tensorrt:fp8", "--input-size", "192x64"]) == 2


def test_benchmark_runs_a_checkpoint_at_another_size(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import squeezedet
    from squeezedet.checkpoint import save_checkpoint

    model = squeezedet.create_model("squeezedet", input_size=(96, 32), anchor_shapes=[(10, 20)])
    weights = tmp_path / "m.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, weights)
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--weights", str(weights), "--input-size", "192x64", "--runs", "1",
                 "--warmup", "0", "--threads", "1", "--backends", "torch:fp32", "--in-process", "--no-peak",
                 "--json", str(out)]) == 0
    assert "measured at 192x64 (anchors scaled)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["input_size"] == [192, 64]
    # ConvDet 768 -> 8 channels (one anchor, 3 classes + 5) instead of 72: 64 * (768 * 9 + 1) fewer
    assert report["params"] == 2_082_120 - 64 * (768 * 9 + 1)


def test_benchmark_energy_estimate_is_labelled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Without an energy counter every row carries the estimate, marked as one in the table and
    the JSON, and it is the model's estimated forward energy at the row's precision."""
    import squeezedet.deployment.energy as energy
    from squeezedet.models import create_model

    monkeypatch.setattr(energy, "find_meter", lambda device="cpu", *a, **k: (None, "no counter (test)"))
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--input-size", "96x32", "--runs", "2", "--warmup", "0",
                 "--threads", "1", "--backends", "torch:fp32", "--in-process", "--no-peak", "--energy",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "J/img" in printed and "energy est." in printed
    assert "a lower bound, not a measurement" in printed
    report = json.loads(out.read_text())
    cost = energy.model_cost(create_model("squeezedet", input_size=(96, 32)))
    for row in report["rows"]:
        e = row["energy"]
        assert e["estimated"] is True and e["method"] == "estimate"
        assert "no counter (test)" in e["source"]
        assert e["joules_per_image"] == pytest.approx(cost.joules_per_image("fp32", 1))
        # watts: that energy over the row's measured median time
        assert e["mean_watts"] == pytest.approx(e["joules_per_image"] / (row["total_ms_median"] / 1e3))


def test_benchmark_energy_measured_with_a_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """With a readable counter the rows are measured: a fake meter drawing a constant 5 W (idle
    and busy alike) gives 5 W mean power and no energy added by the inference."""
    import time

    import squeezedet.deployment.energy as energy

    class ConstantPower:
        method = "fake"
        description = "a 5 W fake counter"

        def read(self) -> float:
            return time.perf_counter()

        def joules(self, before: float, after: float) -> float:
            return 5.0 * (after - before)

    monkeypatch.setattr(energy, "find_meter", lambda device="cpu", *a, **k: (ConstantPower(), ""))
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--input-size", "96x32", "--runs", "2", "--warmup", "0",
                 "--threads", "1", "--backends", "", "--in-process", "--no-peak", "--energy",
                 "--energy-seconds", "0.3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "energy est." not in printed and "measured (fake)" in printed
    (row,) = json.loads(out.read_text())["rows"]
    e = row["energy"]
    assert e["estimated"] is False and e["method"] == "fake"
    assert e["mean_watts"] == pytest.approx(5.0, rel=1e-3)
    assert e["idle_watts"] == pytest.approx(5.0, rel=1e-3)
    assert abs(e["joules_per_image"]) < 0.01 * e["gross_joules_per_image"]
    assert e["seconds"] >= 0.3


def test_benchmark_device_errors(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if not torch.cuda.is_available():
        assert main(["benchmark", "--device", "cuda", "--input-size", "96x32"]) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err
    assert main(["benchmark", "--device", "tpu", "--input-size", "96x32"]) == 2
    assert "device must be cpu, cuda or cuda:N" in capsys.readouterr().err
    assert main(["benchmark", "--energy-seconds", "0", "--input-size", "96x32"]) == 2


@pytest.mark.parametrize(("calibration", "expected"), [
    ({"quantizer": "nncf", "preset": "performance"}, None),
    ({"quantizer": "nncf", "preset": "performance", "float_layers": ["convdet"]},
     "NNCF with convdet in float"),
    ({"quantizer": "onnxruntime", "method": "minmax", "float_layers": ["first", "convdet"]},
     "ONNX Runtime's quantiser (conv1 and ConvDet in float)"),
])
def test_an_openvino_int8_fallback_is_named_in_the_table(tmp_path: Path, calibration: dict,
                                                         expected: str | None) -> None:
    from squeezedet.deployment.benchmark import _int8_fallback
    from squeezedet.deployment.benchmark_table import row_note

    meta = tmp_path / "model-int8.xml.json"
    meta.write_text(json.dumps({"calibration": calibration}))
    assert _int8_fallback(meta) == expected
    row = {"precision": "int8", "int8_fallback": _int8_fallback(meta)}
    assert ("int8 fallback" in row_note(row)) == (expected is not None)
    assert _int8_fallback(tmp_path / "missing.json") is None
