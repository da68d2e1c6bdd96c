"""Parity of an exported model with PyTorch.

The exported model and PyTorch fp32 run on real-looking images (KITTI photos when given, else
rendered synthetic driving scenes, :func:`squeezedet.deployment.preprocess.parity_images`); the
maximum absolute difference of the outputs is compared with ``rtol · max|reference|``, ``rtol``
from :data:`PARITY_RTOL` (fp32: 1e-4 — fp32 runtimes reorder sums and differ by ~1e-6 of the
output's range; bf16: 5 % — 8-bit mantissas; int8: 15 % — 256 levels per tensor through 27 layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from squeezedet.deployment.graph import export_module
from squeezedet.deployment.runners import ExecuTorchRunner, ov_precision_hint, threads_or_default
from squeezedet.deployment.signal_stack import signal_stack_kept
from squeezedet.errors import SqueezeDetError, require
from squeezedet.models.detector import SqueezeDet

#: parity tolerance per precision, relative to the largest reference output magnitude
PARITY_RTOL = {"fp32": 1e-4, "bf16": 0.05, "int8": 0.15}


def run_exported(path: Path, fmt: str, precision: str, x: Tensor,
                  with_postprocess: bool, threads: int | None = None) -> list[np.ndarray]:
    """Run an exported file on ``x`` image by image; its outputs as arrays (batch concatenated)."""
    outs: list[list[np.ndarray]] = []
    if fmt == "torchscript":
        module = torch.jit.load(str(path)).eval()
        with torch.inference_mode():
            for i in range(x.shape[0]):
                y = module(x[i:i + 1])
                outs.append([t.numpy() for t in (y if isinstance(y, tuple) else (y,))])
    elif fmt == "onnx":
        ort = require("onnxruntime", "export")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads_or_default(threads)
        sess = ort.InferenceSession(str(path), opts,
                                    providers=["CPUExecutionProvider"])
        for i in range(x.shape[0]):
            outs.append(list(sess.run(None, {"images": x[i:i + 1].numpy()})))
    elif fmt == "executorch":
        runner = ExecuTorchRunner(path, meta={"precision": precision}, threads=threads)
        outs = [[runner(x[i:i + 1]).numpy()] for i in range(x.shape[0])]
    else:
        ov = require("openvino", "openvino")
        with signal_stack_kept():  # see deployment.signal_stack
            core = ov.Core()
            compiled = core.compile_model(str(path), "CPU", {
                "INFERENCE_NUM_THREADS": threads_or_default(threads),
                "INFERENCE_PRECISION_HINT": ov_precision_hint(precision, core)})
        req = compiled.create_infer_request()
        for i in range(x.shape[0]):
            res = req.infer({0: x[i:i + 1].numpy()})
            outs.append([np.asarray(res[o]) for o in compiled.outputs])
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def measure_parity(model: SqueezeDet, path: Path, fmt: str, precision: str, x: Tensor,
            dynamic_batch: bool, with_postprocess: bool,
            threads: int | None) -> tuple[float, float]:
    """:func:`parity_error` of the exported file at ``path`` against ``model`` on ``x``."""
    module = export_module(model, x, dynamic_batch, with_postprocess)
    with torch.inference_mode():
        ref = module(x)
    ref_arrays = [t.numpy() for t in (ref if isinstance(ref, tuple) else (ref,))]
    got = run_exported(path, fmt, precision, x, with_postprocess, threads)
    return parity_error(ref_arrays, got, with_postprocess)


def parity_error(reference: Sequence[np.ndarray], exported: Sequence[np.ndarray],
                 with_postprocess: bool) -> tuple[float, float]:
    """``(max abs difference, max |reference|)``.

    Raw heads compare element-wise. Detections compare order-free, since near-equal scores may
    swap places in the top-k: scores as sorted lists, each exported box against its nearest
    reference box of the same image.
    """
    if not with_postprocess:
        ref, out = reference[0], exported[0]
        if ref.shape != out.shape:
            raise SqueezeDetError(f"exported output shape {list(out.shape)} != PyTorch's "
                                  f"{list(ref.shape)}")
        return float(np.abs(ref - out).max()), float(np.abs(ref).max())
    rb, rs = reference[0], reference[1]
    eb, es = exported[0], exported[1]
    score_err = float(np.abs(np.sort(rs, axis=1) - np.sort(es, axis=1)).max())
    box_err = 0.0
    for b in range(rb.shape[0]):
        d = np.abs(eb[b][:, None, :] - rb[b][None, :, :]).max(-1)  # [k, k]
        box_err = max(box_err, float(d.min(1).max()))
    # boxes are in pixels, scores in [0, 1]: report each against its own scale
    scale_b = float(np.abs(rb).max()) or 1.0
    return max(score_err, box_err / scale_b), 1.0
