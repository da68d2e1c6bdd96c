"""Export a trained model to ONNX, OpenVINO IR or TorchScript, with a parity check.

Every export writes the model file and a metadata file next to it, ``<model file>.json``
(:func:`squeezedet.deployment.runners.metadata_path`): the model's :meth:`~SqueezeDet.metadata` (class names,
input size ``(W, H)``, anchor shapes, their centres and grid — the anchors are
``make_anchors(grid, input_size, anchor_shapes, centers=anchor_centers)`` in (row, column, anchor)
order — and the RGB 0–255 normalisation, which the graph already applies), the format,
precision, batch mode, outputs, and the parity figures.

The graphs are :mod:`~squeezedet.deployment.graph`'s; int8 models are quantised by
:mod:`~squeezedet.deployment.quantize`; every export is checked by
:mod:`~squeezedet.deployment.parity` against PyTorch.

Precisions: ``fp32`` (every format); ``bf16`` (OpenVINO: weights stored in fp16, inference in bf16
on AVX512-BF16/AMX CPUs); ``int8`` (static post-training quantisation calibrated on training
images).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from squeezedet.checkpoint import model_from_checkpoint
from squeezedet.deployment.graph import OPSET, export_module, onnx_bytes, output_names
from squeezedet.deployment.parity import PARITY_RTOL, measure_parity
from squeezedet.deployment.preprocess import parity_images
from squeezedet.deployment.quantize import (
    quantize_int8,
    quantize_openvino_int8,
    quantize_openvino_int8_for_ap,
)
from squeezedet.deployment.runners import metadata_path
from squeezedet.errors import SqueezeDetError, check_output_file, installed, require

FORMATS = ("onnx", "openvino", "torchscript")

#: suffix of the model file per format
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript"}

#: The metadata's description of the anchors, per anchor-centre convention.
_ANCHOR_RULES = {
    "original": "make_anchors(grid_size, input_size, anchor_shapes): centres (j+1)*W/(gw+1), "
                "(i+1)*H/(gh+1), order (row, column, anchor)",
    "cell": "make_anchors(grid_size, input_size, anchor_shapes, centers='cell'): centres "
            "(j+0.5)*W/gw, (i+0.5)*H/gh, order (row, column, anchor)",
}

#: precisions each format supports
FORMAT_PRECISIONS = {"onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8"),
                     "torchscript": ("fp32",)}


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


def export_model(
    weights: str | Path | dict[str, Any],
    fmt: str,
    output: str | Path | None = None,
    *,
    precision: str = "fp32",
    dynamic_batch: bool = False,
    with_postprocess: bool = False,
    calib_data: str | Path | None = None,
    calib_images: int = 32,
    parity_data: str | Path | None = None,
    threads: int | None = None,
    check: bool = True,
    accuracy_data: str | Path | None = None,
    max_ap_drop: float = 0.4,
) -> ExportResult:
    """Export a checkpoint to ``fmt`` (``onnx``, ``openvino``, ``torchscript``) and check parity.

    Args:
        weights: a ``.pt`` checkpoint (path or loaded dict).
        output: the model file to write (default :func:`default_output`; needed for a dict).
        precision: ``fp32``, ``bf16`` or ``int8`` (see :data:`FORMAT_PRECISIONS`).
        dynamic_batch: a free batch dimension instead of 1.
        with_postprocess: output top-k decoded detections instead of the raw head.
        calib_data: int8 calibration images — a KITTI root (its training images) or a folder;
            ``None`` uses rendered synthetic scenes (with a warning).
        calib_images: how many calibration images.
        parity_data: images for the parity check (default: rendered synthetic scenes).
        check: run the parity check (raises :class:`SqueezeDetError` beyond the tolerance).
            ``False`` also keeps NNCF's all-int8 OpenVINO model as it is, without the fallbacks
            a missed parity triggers (for speed measurements on random weights).
        accuracy_data: OpenVINO int8 only — a KITTI root whose validation split bounds the AP
            loss: layers return to float until mAP_R40 is at most ``max_ap_drop`` points below
            fp32 (:func:`quantize_openvino_int8_for_ap`).
    """
    if fmt not in FORMATS:
        raise SqueezeDetError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if precision not in FORMAT_PRECISIONS[fmt]:
        raise SqueezeDetError(
            f"{fmt} export supports precision {', '.join(FORMAT_PRECISIONS[fmt])}, not "
            f"{precision!r}" + ("; bf16 runs with --format openvino or the torch backend"
                                if precision == "bf16" else "")
        )
    if fmt in ("onnx", "openvino"):
        require("onnx", "export")
    if fmt == "openvino":
        require("openvino", "openvino")
    if precision == "int8":
        require("onnxruntime", "export")
    if output is None:
        if isinstance(weights, dict):
            raise SqueezeDetError("an output path is needed when exporting a loaded checkpoint")
        output = default_output(weights, fmt, precision)
    out = check_output_file(output, "--output")
    if calib_images < 1:
        raise SqueezeDetError(f"--calib-images must be at least 1 (got {calib_images})")
    if not 0 <= max_ap_drop < float("inf"):
        raise SqueezeDetError(f"--max-ap-drop must be a number >= 0 (got {max_ap_drop})")
    for option, source in (("--calib-data", calib_data), ("--parity-data", parity_data)):
        if source is not None and not Path(source).exists():
            raise SqueezeDetError(f"{option} {source}: no such file or folder")
    if accuracy_data is not None and not (Path(accuracy_data) / "ImageSets" / "val.txt").is_file():
        raise SqueezeDetError(f"--accuracy-data {accuracy_data}: not a KITTI root with "
                              "ImageSets/val.txt")
    if out.suffix.lower() != SUFFIXES[fmt]:
        raise SqueezeDetError(f"{out}: a {fmt} model file must end in {SUFFIXES[fmt]}")
    out.parent.mkdir(parents=True, exist_ok=True)

    model = model_from_checkpoint(weights)
    size = model.input_size
    meta: dict[str, Any] = {
        **model.metadata(),
        "format": fmt,
        "precision": precision,
        "dynamic_batch": dynamic_batch,
        "outputs": "detections" if with_postprocess else "head",
        "output_names": output_names(with_postprocess),
        "input_name": "images",
        "input_layout": "float32 [B, 3, H, W] RGB 0-255 at input_size (W, H); the graph normalises",
        "anchors": _ANCHOR_RULES[model.anchor_centers],
        "opset": OPSET if fmt != "torchscript" else None,
        "squeezedet_version": _version(),
    }
    files = [out]
    measured: tuple[float, float] | None = None  # parity of the file as written
    if fmt == "torchscript":
        module = export_module(model, torch.zeros(1, 3, size[1], size[0]), dynamic_batch,
                                with_postprocess)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, torch.zeros(1, 3, size[1], size[0]))
            traced = torch.jit.freeze(traced)
        traced.save(str(out))
    else:
        # OpenVINO's int8 is faster with conv1's ReLU before the first pool (same outputs)
        proto = onnx_bytes(model, dynamic_batch=dynamic_batch, with_postprocess=with_postprocess,
                           relu_first=fmt == "openvino")
        onnx_path = out if fmt == "onnx" else Path(tempfile.mkdtemp()) / "model.onnx"
        nncf_int8 = precision == "int8" and fmt == "openvino" and installed("nncf")
        if precision == "int8":
            if calib_data is None:
                warnings.warn("int8 calibration without --calib-data: using rendered synthetic "
                              "scenes; calibrate on the training images for best accuracy",
                              stacklevel=2)
            calib = parity_images(size, calib_images, calib_data)
            meta["calibration"] = {"source": str(calib_data) if calib_data else "synthetic scenes",
                                   "images": int(calib.shape[0])}
            if nncf_int8:
                meta["calibration"].update(quantizer="nncf", preset="performance")
                onnx_path.write_bytes(proto)  # NNCF quantises the OpenVINO model below
            else:
                meta["calibration"].update(quantizer="onnxruntime", method="minmax")
                if fmt == "openvino":
                    warnings.warn("NNCF is not installed: int8 OpenVINO export falls back to "
                                  "ONNX Runtime's quantiser (first and last convolutions stay "
                                  "float, slower); pip install 'squeezedet[openvino]' for NNCF",
                                  stacklevel=2)
                quantize_int8(proto, calib, onnx_path)
        else:
            onnx_path.write_bytes(proto)
        if fmt == "openvino":
            ov = require("openvino", "openvino")
            ov_model = ov.convert_model(str(onnx_path))
            if nncf_int8 and accuracy_data is not None:
                ov_model, floats = quantize_openvino_int8_for_ap(ov_model, calib, model,
                                                                accuracy_data, max_ap_drop)
                meta["calibration"]["accuracy_control"] = {
                    "data": str(accuracy_data), "metric": "KITTI mAP_R40 (val split)",
                    "max_drop": max_ap_drop, "float_convolutions": floats}
            elif nncf_int8:
                ov_model = quantize_openvino_int8(ov_model, calib)
            ov.save_model(ov_model, str(out),
                          compress_to_fp16=precision == "bf16")
            if nncf_int8 and check:
                # NNCF clips activation ranges to quantiles; on weights with unusual activations
                # (seen with random weights) that can miss parity: then ConvDet stays float, and
                # last ONNX Runtime's min/max quantiser with the first and last layers float
                x = parity_images(size, 2, parity_data)
                fallbacks = [("convdet float", ["convdet"]), ("onnxruntime", None)]
                while fallbacks:
                    measured = measure_parity(model, out, fmt, precision, x, dynamic_batch,
                                       with_postprocess, threads)
                    if measured[0] <= PARITY_RTOL[precision] * max(measured[1], 1e-6):
                        break
                    measured = None  # the file is rewritten below: measure it again
                    name, float_layers = fallbacks.pop(0)
                    meta["calibration"].pop("accuracy_control", None)  # the retry is plain NNCF
                    if float_layers is not None:
                        ov_model = quantize_openvino_int8(ov.convert_model(str(onnx_path)), calib,
                                                          keep_head_float=True)
                        meta["calibration"]["float_layers"] = float_layers
                    else:
                        quantize_int8(proto, calib, onnx_path)
                        ov_model = ov.convert_model(str(onnx_path))
                        meta["calibration"] = {**meta["calibration"], "quantizer": "onnxruntime",
                                               "method": "minmax",
                                               "float_layers": ["first", "convdet"]}
                        meta["calibration"].pop("preset", None)
                    warnings.warn(f"int8 parity missed with all layers quantised by NNCF; "
                                  f"retrying with {name}", stacklevel=2)
                    ov.save_model(ov_model, str(out))
            files.append(out.with_suffix(".bin"))
            onnx_path.unlink()
            onnx_path.parent.rmdir()

    err, scale, tol = 0.0, 0.0, 0.0
    if check:
        x = parity_images(size, 2, parity_data)
        # the NNCF fallbacks above already measured the file they settled on, on the same images
        err, scale = measured or measure_parity(model, out, fmt, precision, x, dynamic_batch,
                                         with_postprocess, threads)
        tol = PARITY_RTOL[precision] * max(scale, 1e-6)
        meta["parity"] = {"max_abs_diff": err, "max_abs_reference": scale, "tolerance": tol,
                          "images": int(x.shape[0]),
                          "source": str(parity_data) if parity_data else "synthetic scenes"}
    meta_file = metadata_path(out)
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    files.append(meta_file)
    result = ExportResult(out, meta_file, fmt, precision, err, tol, scale, files)
    if check and not err <= tol:
        raise SqueezeDetError(
            f"{out}: parity check failed: max abs difference {err:.4g} against PyTorch exceeds "
            f"the tolerance {tol:.4g} ({PARITY_RTOL[precision]:g} of max |output| {scale:.4g}); "
            "the exported model does not reproduce the checkpoint"
        )
    return result


def _version() -> str:
    from squeezedet.version import __version__

    return __version__
