"""The ``openvino`` backend: an OpenVINO IR ``.xml`` (or an ``.onnx``) on OpenVINO's CPU plugin;
the precision recorded at export (fp32 → f32, bf16 → bf16 inference precision hint) is applied.
A checkpoint is converted through ONNX in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from squeezedet import cpu
from squeezedet.deployment.runners.conversion import Conversion
from squeezedet.deployment.runners.protocol import (
    Backend,
    Runner,
    check_cpu,
    one_line,
    per_image,
    read_metadata,
    threads_or_default,
)
from squeezedet.deployment.signal_stack import signal_stack_kept
from squeezedet.errors import SqueezeDetError, require


class OpenVinoRunner:
    """An OpenVINO IR (``.xml`` + ``.bin``) or ONNX model on OpenVINO's CPU plugin.

    The inference precision hint follows the export (:func:`ov_precision_hint`): ``bf16`` → bf16,
    ``int8`` → int8 layers plus bf16 for the layers left in float when the CPU has bf16 (else
    f32), ``fp32`` → f32.

    Args:
        model: a model path (with its metadata file) or an ``openvino.Model`` with ``meta``.
        threads: inference threads (default: torch's thread count).
        precision: override the exported precision (``"fp32"`` or ``"bf16"``).
    """

    def __init__(self, model: str | Path | Any, device: str = "cpu", *,
                 meta: dict[str, Any] | None = None, threads: int | None = None,
                 precision: str | None = None) -> None:
        check_cpu(device, "openvino")
        ov = require("openvino", "openvino")
        self.device = torch.device("cpu")
        self.meta = meta if meta is not None else read_metadata(model)
        self.precision = precision or str(self.meta.get("precision", "fp32"))
        if isinstance(model, (str, Path)) and Path(model).suffix.lower() == ".xml":
            check_ir(Path(model))
        with signal_stack_kept():  # see deployment.signal_stack
            self._compile(ov.Core(), model, threads)

    def _compile(self, core: Any, model: str | Path | Any, threads: int | None) -> None:
        config = {
            "INFERENCE_NUM_THREADS": threads_or_default(threads),
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,  # pinned workers spin on the core the caller needs next
            "INFERENCE_PRECISION_HINT": ov_precision_hint(self.precision, core),
        }
        try:
            source = str(model) if isinstance(model, (str, Path)) else model
            ov_model = core.read_model(source) if isinstance(source, str) else source
            self.dynamic_batch = ov_model.input(0).get_partial_shape()[0].is_dynamic
            self.compiled = core.compile_model(ov_model, "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            raise SqueezeDetError(f"{model}: OpenVINO cannot load it ({one_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        #: the precision OpenVINO computes the float layers in here: ``f32`` or ``bf16``
        self.inference_precision = _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x})[0]

    def __call__(self, images: Tensor) -> Tensor:
        return per_image(self._run, images, self.dynamic_batch)


def _type_name(value: Any) -> str:
    name = getattr(value, "get_type_name", None)
    return str(name() if callable(name) else value)


def check_ir(path: Path) -> None:
    """An OpenVINO IR is well-formed XML with a ``<net>`` root and a ``.bin`` beside it;
    checked before OpenVINO tries its other front ends on the file (which print to stderr)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SqueezeDetError(f"{path}: not an OpenVINO IR file ({exc})") from None
    if root.tag != "net":
        raise SqueezeDetError(f"{path}: not an OpenVINO IR file (root element <{root.tag}>, "
                              "expected <net>)")
    if not path.with_suffix(".bin").is_file():
        raise SqueezeDetError(f"{path}: the weights file {path.with_suffix('.bin').name} of this "
                              "OpenVINO IR is missing; keep the .xml and .bin together")


def ov_precision_hint(precision: str, core: Any) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for a model precision: fp32 → f32; bf16 → bf16;
    int8 → bf16 for the float layers (the first convolution and ConvDet) — bf16 only where the CPU
    computes it natively (AVX512-BF16/AMX: OpenVINO lists ``BF16`` and
    :func:`squeezedet.cpu.native_bf16` agrees), else f32.

    Both are asked because each honours another instruction-set limit: OpenVINO ``OV_CPU_MAX_ISA``,
    PyTorch's oneDNN ``ONEDNN_MAX_CPU_ISA``; with only the latter set to AVX2, OpenVINO 2026.4
    still lists ``BF16`` and then cannot compile a model with a bf16 hint.
    """
    if precision == "fp32":
        return "f32"
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in caps and cpu.native_bf16() else "f32"


def _open(path: Path, device: str, *, precision: str | None = None,
          threads: int | None = None) -> Runner:
    return OpenVinoRunner(path, device, threads=threads, precision=precision)


def _convert(conv: Conversion, precision: str, threads: int | None) -> Runner:
    ov = require("openvino", "openvino")
    with signal_stack_kept():
        ov_model = ov.Core().read_model(conv.proto, b"")  # fp32/bf16: the ReLU order does not matter
    return OpenVinoRunner(ov_model, meta=conv.meta(precision), threads=threads, precision=precision)


BACKEND = Backend("openvino", (".xml", ".onnx"), _open, module="openvino", extra="openvino",
                  convert=_convert, convert_precisions=("fp32", "bf16"), title="OpenVINO")
