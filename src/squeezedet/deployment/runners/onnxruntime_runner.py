"""The ``onnxruntime`` backend: a ``.onnx`` file (fp32 or int8 QDQ) on ONNX Runtime's CPU
provider; a checkpoint is converted to ONNX in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

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
from squeezedet.errors import SqueezeDetError, require


class OnnxRuntimeRunner:
    """An ONNX model (fp32, or int8 QDQ from ``--precision int8``) on ONNX Runtime's CPU provider.

    Args:
        model: a ``.onnx`` path (with its metadata file), or serialised ONNX bytes with ``meta``.
        threads: intra-op threads (default: torch's thread count).
    """

    def __init__(self, model: str | Path | bytes, device: str = "cpu", *,
                 meta: dict[str, Any] | None = None, threads: int | None = None) -> None:
        check_cpu(device, "onnxruntime")
        ort = require("onnxruntime", "export")
        self.device = torch.device("cpu")
        self.meta = meta if meta is not None else read_metadata(model)  # type: ignore[arg-type]
        self.precision = str(self.meta.get("precision", "fp32"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads_or_default(threads)
        opts.inter_op_num_threads = 1
        # idle ORT threads must not spin: they would steal the CPU from pre-/post-processing
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(
                source, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise SqueezeDetError(f"{model if not isinstance(model, bytes) else 'model'}: "
                                  f"ONNX Runtime cannot load it ({one_line(exc)})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dynamic_batch = not isinstance(inp.shape[0], int)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def __call__(self, images: Tensor) -> Tensor:
        return per_image(self._run, images, self.dynamic_batch)


def _open(path: Path, device: str, *, precision: str | None = None,
          threads: int | None = None) -> Runner:
    return OnnxRuntimeRunner(path, device, threads=threads)


def _convert(conv: Conversion, precision: str, threads: int | None) -> Runner:
    return OnnxRuntimeRunner(conv.proto, meta=conv.meta(precision), threads=threads)


BACKEND = Backend("onnxruntime", (".onnx",), _open, module="onnxruntime", extra="export",
                  convert=_convert, convert_precisions=("fp32",), title="ONNX Runtime")
