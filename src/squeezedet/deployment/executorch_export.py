"""ExecuTorch programs (``.pte``): the model lowered to the XNNPACK delegate, fp32 or int8.

ExecuTorch is PyTorch's on-device runtime (phones, embedded boards); XNNPACK is its CPU delegate
for ARM and x86. :func:`program_bytes` turns a :class:`~squeezedet.models.detector.SqueezeDet`
into a serialised program: ``torch.export`` of the raw model (input ``float32 [1, 3, H, W]`` RGB
0–255, output the raw ConvDet head), then ``to_edge_transform_and_lower`` with the
``XnnpackPartitioner``; every convolution, pool and ReLU runs inside XNNPACK.

int8 is PT2E post-training quantisation with ExecuTorch's ``XNNPACKQuantizer``: int8 weights per
output channel (symmetric), int8 activations per tensor calibrated with min/max observers on the
calibration images (the default histogram observers clip the long tails of the activations,
which cost 22 % of the output range on a parity image against 6 % with min/max). ConvDet, the last
convolution, stays float: its int8 output would share one scale between class logits,
confidences and box deltas (ONNX Runtime's path measured that cost at ~27 AP; see
:mod:`~squeezedet.deployment.quantize`).

Two things the stock flow gets wrong here, both handled in :func:`_exported`:

- in-place ReLUs (``relu_``, as Fire modules and ``nn.ReLU(inplace=True)`` write them) survive
  ``torch.export`` as ``aten.relu_``; after PT2E conversion XNNPACK then computed the squeeze
  convolution's int8 output ~3.5× too large (ExecuTorch 1.5.1, torch 2.13). They are exported as
  out-of-place ``aten.relu`` (the same values).
- the raw model is exported in contiguous (NCHW) memory format, as ExecuTorch expects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from squeezedet.deployment.graph import export_module
from squeezedet.errors import SqueezeDetError, require
from squeezedet.models.detector import SqueezeDet

#: the version this code was written and tested against (the extra pins a range around it)
TESTED_EXECUTORCH = "1.5.1"

#: the module left in float by int8 quantisation (see the module docstring)
FLOAT_MODULES = ("convdet",)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence ExecuTorch's and torchao's chatter around imports, lowering and loading: Python
    warnings (``ExperimentalWarning``, deprecations), torchao's log lines about its CUDA kernels
    (absent from CPU builds of PyTorch), and the runtime's C++ log lines on the standard error
    (cpuinfo probing), which is redirected to ``/dev/null`` meanwhile."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def require_executorch() -> Any:
    """Import ``executorch`` (quietly) or raise the error naming the extra."""
    with quiet():
        return require("executorch", "executorch")


def _exported(model: SqueezeDet, example: Tensor) -> Any:
    """``torch.export`` of the raw model (NCHW), its in-place ReLUs made out-of-place."""
    module = export_module(model, example, dynamic_batch=False, with_postprocess=False)
    try:
        program = torch.export.export(module, (example,))
    except Exception as exc:  # noqa: BLE001 - any export failure is the model not fitting
        raise SqueezeDetError(f"ExecuTorch cannot hold this model: torch.export failed "
                              f"({' '.join(str(exc).split())[:300]})") from None
    for node in program.graph.nodes:
        if node.target is torch.ops.aten.relu_.default:
            node.target = torch.ops.aten.relu.default
    program.graph_module.recompile()
    return program


def _quantizer() -> Any:
    """The XNNPACK quantiser: int8 per-channel weights, min/max-calibrated int8 activations, the
    modules of :data:`FLOAT_MODULES` left out."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)
    activation = dataclasses.replace(
        config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
    config = dataclasses.replace(config, input_activation=activation,
                                 output_activation=activation)

    def quantized(node: Any) -> bool:
        stack = node.meta.get("nn_module_stack", {}).values()
        return not any(str(path) in FLOAT_MODULES for path, _ in stack)

    return XNNPACKQuantizer().set_global(config).set_filter_function(quantized)


def _quantized(program: Any, example: Tensor, calibration: Tensor) -> Any:
    """PT2E int8 of an exported program, calibrated image by image on ``calibration``."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(program.module(), _quantizer())
    with torch.no_grad():
        for i in range(calibration.shape[0]):
            prepared(calibration[i:i + 1])
    return torch.export.export(convert_pt2e(prepared), (example,))


def program_bytes(model: SqueezeDet, precision: str = "fp32",
                  calibration: Tensor | None = None) -> bytes:
    """The serialised ExecuTorch program (``.pte`` bytes) of ``model`` lowered to XNNPACK.

    Args:
        precision: ``"fp32"`` or ``"int8"`` (PT2E, see the module docstring).
        calibration: int8 only — ``float32 [N, 3, H, W]`` RGB 0–255 network inputs.
    """
    if precision not in ("fp32", "int8"):
        raise SqueezeDetError(f"ExecuTorch export runs fp32 or int8, not {precision!r}")
    if precision == "int8" and calibration is None:
        raise SqueezeDetError("int8 ExecuTorch export needs calibration images")
    require_executorch()
    width, height = model.input_size
    example = torch.zeros(1, 3, height, width)
    with quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        program = _exported(model.eval(), example)
        if precision == "int8":
            assert calibration is not None
            program = _quantized(program, example, calibration)
        try:
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            return bytes(lowered.to_executorch().buffer)
        except Exception as exc:  # noqa: BLE001 - lowering failures become one clear line
            raise SqueezeDetError(f"ExecuTorch cannot hold this model: lowering to XNNPACK "
                                  f"failed ({' '.join(str(exc).split())[:300]})") from None


def val_map_r40(model: SqueezeDet, run: Any, data: str | Path) -> float:
    """KITTI mAP_R40 of ``run`` (network input ``float32 [1, 3, H, W]`` → raw head) on the
    validation split (``ImageSets/val.txt``) of the KITTI root ``data``, decoded with ``model``'s
    anchors and the Detector's post-processing (no score threshold)."""
    from squeezedet.data.kitti import KittiDataset
    from squeezedet.eval import evaluate_kitti
    from squeezedet.models.detector import split_head
    from squeezedet.postprocess import PostProcess, detections_to_kitti, to_original_pixels

    names = tuple(model.class_names)
    size = model.input_size
    dataset = KittiDataset(data, "val", names, size, train=False)
    post, found, truth = PostProcess(), {}, {}
    for i in range(len(dataset)):
        image, target = dataset[i]
        head = run(image[None].float())
        det = post(split_head(head, model.num_anchors, model.num_classes), model.anchors, size)[0]
        det = {**det, "boxes": to_original_pixels(det["boxes"], size, target["orig_size"])}
        found[target["image_id"]] = detections_to_kitti(det, names)
        truth[target["image_id"]] = dataset.ground_truth(i)
    return float(evaluate_kitti(truth, found, classes=names).map_r40)


def accuracy(model: SqueezeDet, program: Any, data: str | Path) -> dict[str, Any]:
    """The AP an exported program keeps: mAP_R40 on ``data``'s validation split of the PyTorch
    model and of ``program`` (a runner), and the drop in points, for the metadata file."""
    with torch.inference_mode():
        reference = val_map_r40(model.eval(), model, data)
    exported = val_map_r40(model, program, data)
    return {"data": str(data), "metric": "KITTI mAP_R40 (val split)",
            "pytorch_fp32": round(reference, 3), "exported": round(exported, 3),
            "drop": round(reference - exported, 3)}
