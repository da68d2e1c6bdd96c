"""The benchmark behind ``squeezedet benchmark`` (its ``--help`` describes the rows, the stages
and the figures): :func:`run_benchmark` with :class:`BenchmarkOptions`. Each row is measured by
:mod:`squeezedet.deployment.benchmark_row` (in its own process unless ``in_process``), against the
matrix-product peaks of :mod:`squeezedet.deployment.peaks`; :func:`format_table` prints them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squeezedet.deployment.benchmark_row import run_row
from squeezedet.deployment.peaks import matmul_peak_detail
from squeezedet.errors import SqueezeDetError, installed

DEFAULT_BACKENDS = ("torch-nchw:fp32", "torch:fp32", "torch:bf16", "onnxruntime:fp32",
                    "onnxruntime:int8", "openvino:fp32", "openvino:bf16", "openvino:int8",
                    "auto:fp32")
#: the default rows without bf16: the default on CPUs that only emulate bf16 (slower than fp32)
DEFAULT_BACKENDS_NO_BF16 = tuple(r for r in DEFAULT_BACKENDS if not r.endswith(":bf16"))
BASELINE = "torch-nchw:fp32"
#: the rows that run on a GPU (``--device cuda``): eager PyTorch
GPU_BACKENDS = ("torch-nchw", "torch", "torch-compile")
DEFAULT_BACKENDS_GPU = ("torch-nchw:fp32", "torch:fp32", "torch:bf16")
KNOWN = {"torch-nchw": ("fp32",), "torch": ("fp32", "bf16"), "torch-compile": ("fp32", "bf16"),
         "onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8"),
         "auto": ("fp32", "bf16"), "executorch": ("fp32", "int8")}
EXTRA = {"onnxruntime": ("onnxruntime", "export"), "openvino": ("openvino", "openvino"),
         "executorch": ("executorch", "executorch")}
#: the rows that measure an exported file: backend → export format
EXPORTED = {"onnxruntime": "onnx", "openvino": "openvino", "executorch": "executorch"}


@dataclass
class BenchmarkOptions:
    """The ``squeezedet benchmark`` settings (see its ``--help``); checked when made, each problem
    a one-line :class:`SqueezeDetError` naming the setting."""

    model: str = "squeezedet"
    weights: str | None = None
    #: ``"WxH"``; ``None``: the model's (or the checkpoint's)
    input_size: str | None = None
    batch: int = 1
    threads: int | None = None
    #: comma-separated rows; ``None``: :func:`default_backends`
    backends: str | None = None
    runs: int = 30
    warmup: int = 5
    image: str | None = None
    calib_data: str | None = None
    accuracy_data: str | None = None
    calib_images: int = 32
    in_process: bool = False
    #: ``"cpu"`` or ``"cuda"``/``"cuda:N"`` (eager PyTorch rows only)
    device: str = "cpu"
    #: add joules per image and mean watts to every row
    #: (:func:`~squeezedet.deployment.benchmark_row.row_energy`)
    energy: bool = False
    #: how long each row runs for the energy reading (with a counter; plus an idle reading)
    energy_seconds: float = 3.0
    #: measure the matrix-product peaks (the ``%peak`` column); off for a quicker run
    peak: bool = True

    def __post_init__(self) -> None:
        from squeezedet.config import parse_size
        from squeezedet.data.synth import check_size

        for name, low in (("batch", 1), ("runs", 1), ("warmup", 0), ("calib_images", 1)):
            if getattr(self, name) < low:
                raise SqueezeDetError(f"{name} must be at least {low} (got {getattr(self, name)})")
        if self.threads is not None and self.threads < 1:
            raise SqueezeDetError(f"threads must be at least 1 (got {self.threads}); leave it "
                                  "out for torch's own setting")
        if not self.energy_seconds > 0:
            raise SqueezeDetError(f"energy_seconds must be positive (got {self.energy_seconds})")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise SqueezeDetError(f"device must be cpu, cuda or cuda:N, not {self.device!r}")
        if self.input_size:
            check_size(parse_size(self.input_size, "input_size"))
        self.rows()  # the rows are known and fit the device

    def rows(self) -> list[tuple[str, str]]:
        """The ``(backend, precision)`` rows to measure, the baseline first."""
        rows = parse_rows(self.backends if self.backends is not None
                          else ",".join(default_backends(self.device)))
        off = [f"{b}:{p}" for b, p in rows if b not in GPU_BACKENDS]
        if self.device != "cpu" and off:
            raise SqueezeDetError(f"device {self.device} runs only the eager PyTorch rows "
                                  f"({', '.join(GPU_BACKENDS)}), not {', '.join(off)}")
        return rows


def default_backends(device: str = "cpu") -> tuple[str, ...]:
    """The default rows: every backend and precision, bf16 only where the CPU has it natively
    (:func:`squeezedet.cpu.native_bf16`); elsewhere it is emulated, slower than fp32, and only run
    when asked for (and then marked ``emulated``). On a GPU: the eager PyTorch rows."""
    from squeezedet import cpu

    if device != "cpu":
        return DEFAULT_BACKENDS_GPU
    return DEFAULT_BACKENDS if cpu.native_bf16() else DEFAULT_BACKENDS_NO_BF16


def parse_rows(text: str) -> list[tuple[str, str]]:
    """``"torch:bf16,openvino:int8"`` → the rows, the baseline (``torch-nchw:fp32``) first."""
    rows: list[tuple[str, str]] = [("torch-nchw", "fp32")]
    for item in (t.strip() for t in text.split(",") if t.strip()):
        backend, _, precision = item.partition(":")
        precision = precision or "fp32"
        if backend not in KNOWN or precision not in KNOWN[backend]:
            choices = ", ".join(f"{b}:{p}" for b, ps in KNOWN.items() for p in ps)
            raise SqueezeDetError(f"unknown benchmark row {item!r}; choose from {choices}")
        if (backend, precision) not in rows:
            rows.append((backend, precision))
    return rows


#: the distributions whose versions a report records (:func:`library_versions`)
VERSIONED = ("squeezedet", "torch", "numpy", "onnxruntime", "openvino", "nncf", "opencv-python-headless")


def library_versions() -> dict[str, str | None]:
    """Python's and each :data:`VERSIONED` distribution's version (``None``: not installed) —
    what a measured speed depends on besides the CPU."""
    import platform
    from importlib import metadata

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


# ---------------------------------------------------------------------------------------------
# the benchmark


def run_benchmark(options: BenchmarkOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every row of ``options.backends`` (see ``squeezedet benchmark --help``); progress
    lines go to ``log``. Returns the report: ``rows`` (one dict per measured row,
    ``ratio_to_baseline`` included), ``notes`` (rows skipped or failed, and why), the model's
    figures and the matmul peaks."""
    import numpy as np
    import torch

    from squeezedet.data.images import load_image
    from squeezedet.deployment.preprocess import render_images
    from squeezedet.models.profile import profile_model

    if options.device != "cpu" and not torch.cuda.is_available():
        raise SqueezeDetError(f"device {options.device}: this PyTorch sees no CUDA GPU; run on "
                              "the CPU (leave --device out) or install a CUDA build of torch")
    if options.threads:
        torch.set_num_threads(options.threads)
    rows = options.rows()
    photo = load_image(options.image) if options.image else None  # a bad file stops us here
    with tempfile.TemporaryDirectory(prefix="squeezedet-bench-") as tmp:
        work = Path(tmp)
        model, weights = _model_and_weights(options, work, log)
        prof = profile_model(model)
        image = photo if photo is not None else render_images(model.input_size, 1)[0]
        np.save(work / "image.npy", image)
        peak_detail = _peaks(options)
        peaks = {p: (max(d.values()) if d else None) for p, d in peak_detail.items()}
        _log_header(log, options, prof, image, peaks)
        base = {"weights": str(weights), "image": str(work / "image.npy"),
                "batch": options.batch, "threads": options.threads, "runs": options.runs,
                "warmup": options.warmup, "device": options.device, "energy": options.energy,
                "energy_seconds": options.energy_seconds, "cost": _energy_cost(options, model)}
        results: list[dict[str, Any]] = []
        notes: list[str] = []
        for backend, precision in rows:
            row = _measure(backend, precision, base, options, work, prof, notes, log)
            if row is not None:
                _annotate(row, prof, peaks, options, notes, log)
                results.append(row)
    _energy_notes(options, results, notes)
    return _report(options, prof, peaks, peak_detail, results, notes)


def _model_and_weights(options: BenchmarkOptions, work: Path,
                       log: Callable[[str], None]) -> tuple[Any, Path]:
    """The model measured and a checkpoint of it: ``--weights`` (at ``--input-size``, anchors
    scaled, when that differs: the network is fully convolutional), else randomly initialised
    ``--model`` weights (speed does not depend on them)."""
    import torch

    from squeezedet.checkpoint import model_from_checkpoint, save_checkpoint
    from squeezedet.config import parse_size
    from squeezedet.models import create_model
    from squeezedet.ops.anchors import scale_anchor_shapes

    size = parse_size(options.input_size) if options.input_size else None
    if options.weights:
        weights = Path(options.weights)
        model = model_from_checkpoint(weights)
        if size is None or size == model.input_size:
            return model, weights
        resized = create_model(model.name, class_names=model.class_names, input_size=size,
                               anchor_shapes=scale_anchor_shapes(model.anchor_shapes,
                                                                 model.input_size, size),
                               normalization=model.normalization,
                               anchor_centers=model.anchor_centers,
                               padding=model.metadata()["padding"])
        resized.load_state_dict(model.state_dict())
        log(f"{weights}: trained at {model.input_size[0]}x{model.input_size[1]}, measured "
            f"at {size[0]}x{size[1]} (anchors scaled)")
        model, weights = resized.eval(), work / "resized.pt"
    else:
        model = create_model(options.model, input_size=size).eval()
        torch.nn.init.normal_(model.convdet.weight, std=0.01)  # varied scores, as when trained
        weights = work / f"{options.model}.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, weights)
    return model, weights


def _energy_cost(options: BenchmarkOptions, model: Any) -> dict[str, Any] | None:
    """The model's cost for the energy estimate (only with ``--energy``)."""
    if not options.energy:
        return None
    from squeezedet.deployment.energy import model_cost

    return dataclasses.asdict(model_cost(model))


def _peaks(options: BenchmarkOptions) -> dict[str, dict[str, float]]:
    """The CPU's matrix-product peaks per precision (a GPU's are not measured: its rows get no
    %peak; nor are they with ``peak=False``)."""
    if options.device == "cpu" and options.peak:
        return {p: matmul_peak_detail(p) for p in ("fp32", "bf16", "int8")}
    return {p: {} for p in ("fp32", "bf16", "int8")}


def _log_header(log: Callable[[str], None], options: BenchmarkOptions, prof: Any, image: Any,
                peaks: dict[str, float | None]) -> None:
    import torch

    from squeezedet import cpu

    log(f"model {prof.name}  input {prof.input_size[0]}x{prof.input_size[1]}  batch "
        f"{options.batch}  threads {torch.get_num_threads()}  params {prof.params:,}  GFLOPs "
        f"{prof.gflops:.2f}  image {options.image or 'synthetic scene'} {image.shape[1]}x"
        f"{image.shape[0]}")
    log(f"cpu: {cpu.isa_summary()}")
    log(f"matmul peak GFLOP/s at {torch.get_num_threads()} threads (best of MKL matmul and "
        "oneDNN 1x1 convolution): " + ", ".join(
            f"{p} {v:.0f}" if v else f"{p} n/a" + (" (emulated)" if p == "bf16" and
                                                    not cpu.native_bf16() else "")
            for p, v in peaks.items()))


def _measure(backend: str, precision: str, base: dict[str, Any], options: BenchmarkOptions,
             work: Path, prof: Any, notes: list[str],
             log: Callable[[str], None]) -> dict[str, Any] | None:
    """One row: its file exported first where it runs one; ``None`` (and a note) when it is
    skipped or fails."""
    need = EXTRA.get(backend)
    if need and not installed(need[0]):
        notes.append(f"{backend}:{precision} skipped: pip install 'squeezedet[{need[1]}]'")
        return None
    spec = {**base, "backend": backend, "precision": precision}
    file_bytes, fallback = prof.params * 4, None
    if backend in EXPORTED:
        try:
            res = _export_row(EXPORTED[backend], precision, Path(base["weights"]), options, work)
        except SqueezeDetError as exc:
            notes.append(f"{backend}:{precision} export failed: {exc}")
            return None
        log(f"  exported {res.summary()}")
        spec["file"] = str(res.path)
        fallback = _int8_fallback(res.metadata_path) if backend == "openvino" else None
        file_bytes = sum(p.stat().st_size for p in res.files if p.suffix != ".json")
    log(f"  running {backend}:{precision} ...")
    row = run_row(spec, options.in_process)
    if "error" in row:
        notes.append(f"{backend}:{precision} failed: {row['error']}")
        return None
    if fallback:
        row["int8_fallback"] = fallback
        notes.append(f"{backend}:{precision} is not NNCF's all-int8 model: that missed parity "
                     f"on these weights (random weights often do), so this row measures "
                     f"{fallback}; --weights with --calib-data measures the model a trained "
                     "checkpoint exports")
    row["params"] = prof.params
    row["model_mb"] = file_bytes / 2**20
    return row


def _export_row(fmt: str, precision: str, weights: Path, options: BenchmarkOptions,
                work: Path) -> Any:
    """The exported model an ``onnxruntime``/``openvino`` row runs. With random weights int8 is
    exported without the parity check, so that the row measures the model a trained checkpoint
    exports (NNCF's all-int8), not a fallback that random weights' odd activations trigger now
    and then."""
    from squeezedet.deployment.export import SUFFIXES, export_model

    return export_model(weights, fmt, work / f"model-{precision}{SUFFIXES[fmt]}",
                        precision=precision, calib_data=options.calib_data,
                        calib_images=options.calib_images, dynamic_batch=options.batch > 1,
                        threads=options.threads, accuracy_data=options.accuracy_data,
                        check=bool(options.weights) or precision != "int8")


def _annotate(row: dict[str, Any], prof: Any, peaks: dict[str, float | None],
              options: BenchmarkOptions, notes: list[str], log: Callable[[str], None]) -> None:
    """Add the model's figures and the fraction of the peak to a measured row; its notes."""
    backend, precision = row["backend"], row["precision"]
    row["gflops"] = prof.gflops
    row["gflops_per_s"] = prof.gflops / (row["forward_ms_median"] / 1000 / options.batch)
    # the peak of the precision the row computes in (an emulated bf16 row or an OpenVINO bf16
    # model computing in f32 against the fp32 peak)
    computes = row.get("inference_precision")
    peak_prec = ("fp32" if row.get("emulated") or (computes == "f32" and precision == "bf16")
                 else precision)
    peak = (peaks.get(peak_prec) or peaks["fp32"]) if options.device == "cpu" else None
    row["peak_fraction"] = row["gflops_per_s"] / peak if peak else None
    if row.get("emulated"):
        notes.append(f"{backend}:{precision} is emulated on this CPU (no AVX512-BF16 or AMX): "
                     "slower than fp32, never chosen by auto")
    elif precision == "bf16" and computes == "f32":
        notes.append(f"{backend}:{precision} computes in f32 here: OpenVINO has no bf16 on "
                     "this CPU")
    if row.get("auto_choice"):
        ac = row["auto_choice"]
        timed = ", ".join(f"{n} {v:.1f} ms" for n, v in ac["median_ms"].items())
        notes.append(f"auto chose {ac['choice']} (" + ("cached choice" if ac["cached"] else
                                                      f"measured: {timed}") + ")")
    if row.get("energy"):
        e = row["energy"]
        log(f"    energy: {e['joules_per_image']:.4g} J/image, {e['mean_watts']:.3g} W "
            f"({'estimate' if e['estimated'] else 'measured, ' + e['method']})")


def _energy_notes(options: BenchmarkOptions, results: list[dict[str, Any]],
                  notes: list[str]) -> None:
    """What the energy columns are: the estimate's source, or the counters read."""
    if not options.energy:
        return
    energies = [r["energy"] for r in results if r.get("energy")]
    methods = sorted({e["method"] for e in energies})
    if any(e["estimated"] for e in energies):
        notes.append(f"energy: {energies[0]['source']}. J/img (*) is the network forward's "
                     "arithmetic and DRAM energy on an idealised 45 nm chip, W that energy "
                     "over the row's measured time")
    elif energies:
        notes.append(f"energy: measured ({', '.join(methods)}) over each row's whole call "
                     f"(pre, forward, post): {energies[0]['source']}")


def _report(options: BenchmarkOptions, prof: Any, peaks: dict[str, float | None],
            peak_detail: dict[str, dict[str, float]], results: list[dict[str, Any]],
            notes: list[str]) -> dict[str, Any]:
    """The report: the rows with their ratio to the baseline, the model, the machine."""
    import torch

    from squeezedet import cpu

    baseline = next((r for r in results if f"{r['backend']}:{r['precision']}" == BASELINE), None)
    base_ms = baseline["total_ms_median"] if baseline else None
    for r in results:
        r["ratio_to_baseline"] = r["total_ms_median"] / base_ms if base_ms else None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "model": prof.name, "input_size": list(prof.input_size), "batch": options.batch,
        "device": options.device,
        "threads": torch.get_num_threads(), "params": prof.params, "gflops": prof.gflops,
        "baseline": BASELINE, "baseline_ms": base_ms, "matmul_peak_gflops": peaks,
        "matmul_peak_detail": peak_detail,
        "cpu": {**cpu.cpu_identity(), "flags": sorted(cpu.cpu_flags()),
                "usable_cores": cpu.usable_cores()},
        "versions": library_versions(),
        "image": options.image or "synthetic scene", "load_average": list(load) if load else None,
        "rows": results, "notes": notes,
    }


def _int8_fallback(metadata: Path) -> str | None:
    """What an OpenVINO int8 export fell back to when NNCF's all-int8 model missed parity
    (``"ConvDet in float"``, ``"ONNX Runtime's quantiser ..."``), from its metadata; None when it
    did not."""
    try:
        calib = json.loads(metadata.read_text()).get("calibration") or {}
    except (OSError, ValueError):
        return None
    if calib.get("quantizer") == "onnxruntime":
        return "ONNX Runtime's quantiser (conv1 and ConvDet in float)"
    if calib.get("float_layers"):
        return f"NNCF with {', '.join(calib['float_layers'])} in float"
    return None
