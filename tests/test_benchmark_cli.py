"""The benchmark command runs end to end and writes the documented JSON (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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
