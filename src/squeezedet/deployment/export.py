"""Export a trained model to ONNX, OpenVINO IR, TorchScript or ExecuTorch, with a parity check.

Every export writes the model file and a metadata file next to it, ``<model file>.json``
(:func:`squeezedet.deployment.runners.metadata_path`): the model's :meth:`~SqueezeDet.metadata` (class names,
input size ``(W, H)``, anchor shapes, their centres and grid — the anchors are
``make_anchors(grid, input_size, anchor_shapes, centers=anchor_centers)`` in (row, column, anchor)
order — and the RGB 0–255 normalisation, which the graph already applies), the format,
precision, batch mode, outputs, the parity figures, and ``postprocess``: the ``top_k``, ``nms_iou``
and ``tta`` the checkpoint's training run validated with, which ``predict`` and ``track`` then
use (:func:`squeezedet.deployment.runners.recorded_postprocess`).

The graphs are :mod:`~squeezedet.deployment.graph`'s; int8 models are quantised by
:mod:`~squeezedet.deployment.quantize` (ExecuTorch's by
:mod:`~squeezedet.deployment.executorch_export`); every export is checked by
:mod:`~squeezedet.deployment.parity` against PyTorch.

Precisions: ``fp32`` (every format); ``bf16`` (OpenVINO: weights stored in fp16, inference in bf16
on AVX512-BF16/AMX CPUs); ``int8`` (static post-training quantisation calibrated on training
images).

:func:`export_model` checks its settings (:class:`ExportOptions`), then hands the model to the
format's exporter (:data:`EXPORTERS`: one function per format) and checks and records the file it
wrote. A new format is an exporter function, a line in :data:`EXPORTERS`, its suffix
(:data:`SUFFIXES`) and precisions (:data:`FORMAT_PRECISIONS`).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from squeezedet.checkpoint import model_from_checkpoint, validation_postprocess
from squeezedet.deployment.executorch_export import FLOAT_MODULES, program_bytes
from squeezedet.deployment.executorch_export import accuracy as executorch_accuracy
from squeezedet.deployment.graph import OPSET, export_module, onnx_bytes, output_names
from squeezedet.deployment.parity import PARITY_RTOL, measure_parity
from squeezedet.deployment.preprocess import parity_images
from squeezedet.deployment.quantize import (
    quantize_int8,
    quantize_openvino_int8,
    quantize_openvino_int8_for_ap,
)
from squeezedet.deployment.runners import ExecuTorchRunner, metadata_path
from squeezedet.errors import SqueezeDetError, check_output_file, installed, require

#: suffix of the model file per format
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript",
            "executorch": ".pte"}

#: precisions each format supports
FORMAT_PRECISIONS = {"onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8"),
                     "torchscript": ("fp32",), "executorch": ("fp32", "int8")}

#: the ``(module, extra)`` pairs a format needs (int8 needs ONNX Runtime's quantiser too)
FORMAT_REQUIRES = {"onnx": (("onnx", "export"),),
                   "openvino": (("onnx", "export"), ("openvino", "openvino")),
                   "torchscript": (), "executorch": (("executorch", "executorch"),)}

FORMATS = tuple(SUFFIXES)

#: The metadata's description of the anchors, per anchor-centre convention.
_ANCHOR_RULES = {
    "original": "make_anchors(grid_size, input_size, anchor_shapes): centres (j+1)*W/(gw+1), "
                "(i+1)*H/(gh+1), order (row, column, anchor)",
    "cell": "make_anchors(grid_size, input_size, anchor_shapes, centers='cell'): centres "
            "(j+0.5)*W/gw, (i+0.5)*H/gh, order (row, column, anchor)",
}


@dataclass(frozen=True)
class ExportOptions:
    """How to export (the keyword arguments of :func:`export_model`); checked when made, each
    problem a one-line :class:`SqueezeDetError` naming the setting.

    Attributes:
        format: ``onnx``, ``openvino`` or ``torchscript`` (:data:`FORMATS`).
        precision: ``fp32``, ``bf16`` or ``int8`` (see :data:`FORMAT_PRECISIONS`).
        dynamic_batch: a free batch dimension instead of 1.
        with_postprocess: output top-k decoded detections instead of the raw head.
        calib_data: int8 calibration images — a KITTI root (its training images) or a folder;
            ``None`` uses rendered synthetic scenes (with a warning).
        calib_images: how many calibration images (at least 1).
        parity_data: images for the parity check (default: rendered synthetic scenes).
        threads: CPU threads of the runtime that checks parity (default: torch's).
        check: run the parity check (raises :class:`SqueezeDetError` beyond the tolerance).
            ``False`` also keeps NNCF's all-int8 OpenVINO model as it is, without the fallbacks
            a missed parity triggers (for speed measurements on random weights).
        accuracy_data: OpenVINO int8 — a KITTI root whose validation split bounds the AP
            loss: layers return to float until mAP_R40 is at most ``max_ap_drop`` points below
            fp32 (:func:`quantize_openvino_int8_for_ap`). ExecuTorch: the program's mAP_R40 on
            that split and PyTorch's are recorded in the metadata (``accuracy``).
        max_ap_drop: the largest mAP_R40 loss allowed with ``accuracy_data`` (points, >= 0).
    """

    format: str
    precision: str = "fp32"
    dynamic_batch: bool = False
    with_postprocess: bool = False
    calib_data: str | Path | None = None
    calib_images: int = 32
    parity_data: str | Path | None = None
    threads: int | None = None
    check: bool = True
    accuracy_data: str | Path | None = None
    max_ap_drop: float = 0.4

    def __post_init__(self) -> None:
        fmt, precision = self.format, self.precision
        if fmt not in FORMATS:
            raise SqueezeDetError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
        if precision not in FORMAT_PRECISIONS[fmt]:
            raise SqueezeDetError(
                f"{fmt} export supports precision {', '.join(FORMAT_PRECISIONS[fmt])}, not "
                f"{precision!r}" + ("; bf16 runs with --format openvino or the torch backend"
                                    if precision == "bf16" else ""))
        if fmt == "executorch" and (self.dynamic_batch or self.with_postprocess):
            raise SqueezeDetError("an ExecuTorch program here takes batch 1 and outputs the raw "
                                  "head: export it without dynamic_batch and with_postprocess")
        if self.calib_images < 1:
            raise SqueezeDetError(f"calib_images must be at least 1 (got {self.calib_images})")
        if self.threads is not None and self.threads < 1:
            raise SqueezeDetError(f"threads must be at least 1 (got {self.threads})")
        if not 0 <= self.max_ap_drop < float("inf"):
            raise SqueezeDetError(f"max_ap_drop must be a number >= 0 (got {self.max_ap_drop})")
        for name, source in (("calib_data", self.calib_data), ("parity_data", self.parity_data)):
            if source is not None and not Path(source).exists():
                raise SqueezeDetError(f"{name} {source}: no such file or folder")
        root = self.accuracy_data
        if root is not None and not (Path(root) / "ImageSets" / "val.txt").is_file():
            raise SqueezeDetError(f"accuracy_data {root}: not a KITTI root with ImageSets/val.txt")


@dataclass
class ExportResult:
    """What an export wrote and how closely it matches PyTorch."""

    path: Path
    metadata_path: Path
    format: str
    precision: str
    max_abs_diff: float
    tolerance: float
    output_scale: float
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        if not self.tolerance:  # exported with check=False
            return f"{self.path} ({self.format}, {self.precision}): parity not checked"
        rel = self.max_abs_diff / self.output_scale if self.output_scale else 0.0
        return (f"{self.path} ({self.format}, {self.precision}): parity max abs diff "
                f"{self.max_abs_diff:.3g} (relative {rel:.2g} of max |output| "
                f"{self.output_scale:.3g}; tolerance {self.tolerance:.3g})")


def default_output(weights: str | Path, fmt: str, precision: str) -> Path:
    """``runs/x/best.pt`` → ``runs/x/best.onnx`` (``best-int8.onnx``, ``best-bf16.xml``, …)."""
    weights = Path(weights)
    tag = "" if precision == "fp32" else f"-{precision}"
    return weights.with_name(f"{weights.stem}{tag}{SUFFIXES[fmt]}")


def export_model(weights: str | Path | dict[str, Any], fmt: str,
                 output: str | Path | None = None, **settings: Any) -> ExportResult:
    """Export a checkpoint to ``fmt`` (``onnx``, ``openvino``, ``torchscript``) and check parity.

    Args:
        weights: a ``.pt`` checkpoint (path or loaded dict).
        output: the model file to write (default :func:`default_output`; needed for a dict).
        settings: the other fields of :class:`ExportOptions` (``precision``, ``dynamic_batch``,
            ``with_postprocess``, ``calib_data``, ``calib_images``, ``parity_data``, ``threads``,
            ``check``, ``accuracy_data``, ``max_ap_drop``), checked before anything is done.
    """
    opts = ExportOptions(fmt, **settings)
    for module, extra in FORMAT_REQUIRES[fmt] + ((("onnxruntime", "export"),)
                                                 if opts.precision == "int8"
                                                 and fmt != "executorch" else ()):
        require(module, extra)
    out = _output_file(weights, output, opts)
    model = model_from_checkpoint(weights)
    meta = _metadata(model, opts)
    post = validation_postprocess(weights)  # predicted as the run validated (recorded_postprocess)
    if post:
        meta["postprocess"] = post
    files, measured = EXPORTERS[fmt](model, out, opts, meta)
    return _check_and_record(model, out, opts, meta, files, measured)


def _output_file(weights: str | Path | dict[str, Any], output: str | Path | None,
                 opts: ExportOptions) -> Path:
    """The model file to write, checked (its folder is made)."""
    if output is None:
        if isinstance(weights, dict):
            raise SqueezeDetError("an output path is needed when exporting a loaded checkpoint")
        output = default_output(weights, opts.format, opts.precision)
    out = check_output_file(output, "output")
    suffix = SUFFIXES[opts.format]
    if out.suffix.lower() != suffix:
        raise SqueezeDetError(f"{out}: a {opts.format} model file must end in {suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _metadata(model: Any, opts: ExportOptions) -> dict[str, Any]:
    """The metadata file's contents before the export adds its calibration and parity."""
    return {
        **model.metadata(),
        "format": opts.format,
        "precision": opts.precision,
        "dynamic_batch": opts.dynamic_batch,
        "outputs": "detections" if opts.with_postprocess else "head",
        "output_names": output_names(opts.with_postprocess),
        "input_name": "images",
        "input_layout": "float32 [B, 3, H, W] RGB 0-255 at input_size (W, H); the graph normalises",
        "anchors": _ANCHOR_RULES[model.anchor_centers],
        "opset": OPSET if opts.format in ("onnx", "openvino") else None,
        "squeezedet_version": _version(),
    }


#: parity of a file as an exporter measured it: (max abs difference, max |reference|), or None
Measured = tuple[float, float] | None


def _export_torchscript(model: Any, out: Path, opts: ExportOptions,
                        meta: dict[str, Any]) -> tuple[list[Path], Measured]:
    """A traced and frozen TorchScript module."""
    w, h = model.input_size
    module = export_module(model, torch.zeros(1, 3, h, w), opts.dynamic_batch,
                           opts.with_postprocess)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.freeze(torch.jit.trace(module, torch.zeros(1, 3, h, w)))
    traced.save(str(out))
    return [out], None


def _calibration_images(model: Any, opts: ExportOptions, meta: dict[str, Any],
                        **quantizer: str) -> torch.Tensor:
    """The int8 calibration images (recorded in ``meta["calibration"]`` with ``quantizer``)."""
    if opts.calib_data is None:
        warnings.warn("int8 calibration without --calib-data: using rendered synthetic "
                      "scenes; calibrate on the training images for best accuracy", stacklevel=4)
    calib = parity_images(model.input_size, opts.calib_images, opts.calib_data)
    meta["calibration"] = {"source": str(opts.calib_data) if opts.calib_data else "synthetic scenes",
                           "images": int(calib.shape[0]), **quantizer}
    return calib


def _export_onnx(model: Any, out: Path, opts: ExportOptions,
                 meta: dict[str, Any]) -> tuple[list[Path], Measured]:
    """An ONNX graph; int8: quantised (QDQ) by ONNX Runtime's min/max quantiser."""
    proto = onnx_bytes(model, dynamic_batch=opts.dynamic_batch,
                       with_postprocess=opts.with_postprocess)
    if opts.precision == "int8":
        calib = _calibration_images(model, opts, meta, quantizer="onnxruntime", method="minmax")
        quantize_int8(proto, calib, out)
    else:
        out.write_bytes(proto)
    return [out], None


def _export_openvino(model: Any, out: Path, opts: ExportOptions,
                     meta: dict[str, Any]) -> tuple[list[Path], Measured]:
    """An OpenVINO IR (``.xml`` + ``.bin``) converted from ONNX; bf16: weights stored in fp16;
    int8: NNCF's quantiser (checked, with fallbacks: :func:`_nncf_int8`), or without NNCF
    ONNX Runtime's."""
    ov = require("openvino", "openvino")
    # OpenVINO's int8 is faster with conv1's ReLU before the first pool (same outputs)
    proto = onnx_bytes(model, dynamic_batch=opts.dynamic_batch,
                       with_postprocess=opts.with_postprocess, relu_first=True)
    onnx_path = Path(tempfile.mkdtemp()) / "model.onnx"
    measured: Measured = None
    try:
        if opts.precision == "int8" and installed("nncf"):
            calib = _calibration_images(model, opts, meta, quantizer="nncf", preset="performance")
            onnx_path.write_bytes(proto)
            measured = _nncf_int8(model, out, opts, meta, proto, onnx_path, calib)
        else:
            if opts.precision == "int8":
                calib = _calibration_images(model, opts, meta, quantizer="onnxruntime",
                                            method="minmax")
                warnings.warn("NNCF is not installed: int8 OpenVINO export falls back to "
                              "ONNX Runtime's quantiser (first and last convolutions stay "
                              "float, slower); pip install 'squeezedet[openvino]' for NNCF",
                              stacklevel=3)
                quantize_int8(proto, calib, onnx_path)
            else:
                onnx_path.write_bytes(proto)
            ov.save_model(ov.convert_model(str(onnx_path)), str(out),
                          compress_to_fp16=opts.precision == "bf16")
    finally:
        onnx_path.unlink(missing_ok=True)
        onnx_path.parent.rmdir()
    return [out, out.with_suffix(".bin")], measured


def _nncf_int8(model: Any, out: Path, opts: ExportOptions, meta: dict[str, Any], proto: bytes,
               onnx_path: Path, calib: torch.Tensor) -> Measured:
    """NNCF's int8 OpenVINO model written to ``out`` (with ``accuracy_data``: layers back in float
    until the AP loss is within bounds). With ``check``, its parity is measured; where it misses
    (NNCF clips activation ranges to quantiles, which weights with unusual activations — seen with
    random weights — do not survive), ConvDet stays float, and last ONNX Runtime's min/max
    quantiser with the first and last layers float. Returns the parity of the file it settled on
    (``None`` without ``check``)."""
    ov = require("openvino", "openvino")
    ov_model = ov.convert_model(str(onnx_path))
    if opts.accuracy_data is not None:
        ov_model, floats = quantize_openvino_int8_for_ap(ov_model, calib, model,
                                                        opts.accuracy_data, opts.max_ap_drop)
        meta["calibration"]["accuracy_control"] = {
            "data": str(opts.accuracy_data), "metric": "KITTI mAP_R40 (val split)",
            "max_drop": opts.max_ap_drop, "float_convolutions": floats}
    else:
        ov_model = quantize_openvino_int8(ov_model, calib)
    ov.save_model(ov_model, str(out), compress_to_fp16=False)
    if not opts.check:
        return None
    x = parity_images(model.input_size, 2, opts.parity_data)
    fallbacks = [("convdet float", ["convdet"]), ("onnxruntime", None)]
    while True:
        measured = measure_parity(model, out, "openvino", "int8", x, opts.dynamic_batch,
                                  opts.with_postprocess, opts.threads)
        if not fallbacks or measured[0] <= PARITY_RTOL["int8"] * max(measured[1], 1e-6):
            return measured
        name, float_layers = fallbacks.pop(0)
        calibration = meta["calibration"]
        calibration.pop("accuracy_control", None)  # the retry is plain NNCF
        if float_layers is not None:
            ov_model = quantize_openvino_int8(ov.convert_model(str(onnx_path)), calib,
                                              keep_head_float=True)
            calibration["float_layers"] = float_layers
        else:
            quantize_int8(proto, calib, onnx_path)
            ov_model = ov.convert_model(str(onnx_path))
            calibration.update(quantizer="onnxruntime", method="minmax",
                               float_layers=["first", "convdet"])
            calibration.pop("preset", None)
        warnings.warn(f"int8 parity missed with all layers quantised by NNCF; retrying with {name}",
                      stacklevel=4)
        ov.save_model(ov_model, str(out))


def _export_executorch(model: Any, out: Path, opts: ExportOptions,
                       meta: dict[str, Any]) -> tuple[list[Path], Measured]:
    """An ExecuTorch program lowered to XNNPACK; int8: PT2E with the XNNPACK quantiser
    (:mod:`~squeezedet.deployment.executorch_export`)."""
    calib = None
    if opts.precision == "int8":
        calib = _calibration_images(model, opts, meta, quantizer="xnnpack (pt2e)",
                                    method="minmax")
        meta["calibration"]["float_layers"] = list(FLOAT_MODULES)
    out.write_bytes(program_bytes(model, opts.precision, calib))
    if opts.accuracy_data is not None:  # the AP the program keeps, recorded (no fallback)
        runner = ExecuTorchRunner(out, meta=meta, threads=opts.threads)
        meta["accuracy"] = executorch_accuracy(model, runner, opts.accuracy_data)
    return [out], None


#: format → exporter(model, output file, options, metadata) → (files written, parity measured
#: on the way or None); the exporter adds what it knows to the metadata (calibration)
EXPORTERS: dict[str, Callable[[Any, Path, ExportOptions, dict[str, Any]],
                              tuple[list[Path], Measured]]] = {
    "onnx": _export_onnx,
    "openvino": _export_openvino,
    "torchscript": _export_torchscript,
    "executorch": _export_executorch,
}


def _check_and_record(model: Any, out: Path, opts: ExportOptions, meta: dict[str, Any],
                      files: list[Path], measured: Measured) -> ExportResult:
    """Check the written file's parity (unless the exporter measured it), write the metadata file
    and raise when the parity misses the tolerance (:data:`PARITY_RTOL`)."""
    err, scale, tol = 0.0, 0.0, 0.0
    if opts.check:
        x = parity_images(model.input_size, 2, opts.parity_data)
        # the NNCF fallbacks already measured the file they settled on, on the same images
        err, scale = measured or measure_parity(model, out, opts.format, opts.precision, x,
                                                opts.dynamic_batch, opts.with_postprocess,
                                                opts.threads)
        tol = PARITY_RTOL[opts.precision] * max(scale, 1e-6)
        meta["parity"] = {"max_abs_diff": err, "max_abs_reference": scale, "tolerance": tol,
                          "images": int(x.shape[0]),
                          "source": str(opts.parity_data) if opts.parity_data else "synthetic scenes"}
    meta_file = metadata_path(out)
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    result = ExportResult(out, meta_file, opts.format, opts.precision, err, tol, scale,
                          [*files, meta_file])
    if opts.check and not err <= tol:
        raise SqueezeDetError(
            f"{out}: parity check failed: max abs difference {err:.4g} against PyTorch exceeds "
            f"the tolerance {tol:.4g} ({PARITY_RTOL[opts.precision]:g} of max |output| "
            f"{scale:.4g}); the exported model does not reproduce the checkpoint"
        )
    return result


def _version() -> str:
    from squeezedet.version import __version__

    return __version__
