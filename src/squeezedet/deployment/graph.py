"""The graphs that exports write: the raw model, or the model with score, top-k and box decoding.

Exported graphs take ``float32 [B, 3, H, W]`` RGB 0–255 at the network size, input ``images``.
By default they return the raw ConvDet head ``head [B, K·(C+5), gh, gw]`` (what the runners of
:mod:`squeezedet.deployment.runners` consume). ``with_postprocess=True`` instead returns the
top-``k`` decoded detections before NMS — ``boxes [B, k, 4]`` xyxy network pixels, ``scores [B, k]``,
``labels [B, k]`` int64 — so a consumer without PyTorch only runs per-class NMS on 64 boxes.
"""

from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import Tensor, nn

from squeezedet.errors import require
from squeezedet.models.detector import SqueezeDet, split_head
from squeezedet.models.layers import with_memory_format
from squeezedet.ops.coder import decode
from squeezedet.postprocess import PostProcess

#: ONNX opset of the exported graphs
OPSET = 17


class DetectionsHead(nn.Module):
    """Model + score, top-k and box decoding: images → ``boxes [B, k, 4]`` (xyxy network pixels,
    clipped), ``scores [B, k]`` and ``labels [B, k]`` by decreasing score; NMS is left out."""

    model: SqueezeDet
    anchors: Tensor

    def __init__(self, model: SqueezeDet, top_k: int = 64) -> None:
        super().__init__()
        self.model = model
        self.top_k = top_k
        self.register_buffer("anchors", model.anchors.clone(), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        model = self.model
        head = split_head(model(images), model.num_anchors, model.num_classes)
        scores, labels = PostProcess().scores(head)
        k = min(self.top_k, scores.shape[1])
        top_scores, top_idx = scores.topk(k, dim=1)
        deltas = torch.gather(head.deltas, 1, top_idx[..., None].expand(-1, -1, 4))
        boxes = decode(deltas, self.anchors[top_idx], model.input_size)
        return boxes, top_scores, torch.gather(labels, 1, top_idx)


def relu_before_first_pool(model: SqueezeDet) -> SqueezeDet:
    """``model``, or a copy whose conv1 ReLU comes before the first max-pool (SqueezeNet's own
    order) where the model has it after the pool (its training order; see
    :class:`~squeezedet.models.backbones.SqueezeNetBackbone`). The outputs are the same (ReLU and
    max commute); for the exported graphs the order matters to int8: with the ReLU first, the
    quantiser's output scale follows conv1 directly, the runtime fuses ReLU and quantisation into
    conv1 and the pool reads int8 instead of fp32 (OpenVINO int8 on an AVX2 CPU: ~6 % faster;
    ONNX Runtime's int8 graph, on the other hand, became slower: only OpenVINO exports use it)."""
    features = getattr(model.backbone, "features", None)
    if not (isinstance(features, nn.Sequential) and len(features) > 2
            and isinstance(features[1], nn.MaxPool2d) and isinstance(features[2], nn.ReLU)):
        return model
    model = copy.deepcopy(model)
    features = model.backbone.features
    assert isinstance(features, nn.Sequential)
    features[1], features[2] = features[2], features[1]
    return model


def export_module(model: SqueezeDet, example: Tensor, dynamic_batch: bool,
                   with_postprocess: bool, relu_first: bool = False) -> nn.Module:
    """The module an export traces (``relu_first``: :func:`relu_before_first_pool`)."""
    if relu_first:
        model = relu_before_first_pool(model)
    model = with_memory_format(model.eval(), torch.contiguous_format)
    return DetectionsHead(model).eval() if with_postprocess else model


def output_names(with_postprocess: bool) -> list[str]:
    return ["boxes", "scores", "labels"] if with_postprocess else ["head"]


def onnx_bytes(model: SqueezeDet, *, dynamic_batch: bool = False, with_postprocess: bool = False,
               opset: int = OPSET, relu_first: bool = False) -> bytes:
    """The serialised fp32 ONNX graph of ``model`` (input ``images``; outputs see the module
    docstring), via the TorchScript-based exporter (fast, no onnxscript needed), falling back to
    the dynamo exporter. ``relu_first``: conv1's ReLU before the first pool
    (:func:`relu_before_first_pool`)."""
    h, w = model.input_size[1], model.input_size[0]
    example = torch.zeros(1, 3, h, w)
    module = export_module(model, example, dynamic_batch, with_postprocess, relu_first)
    outputs = output_names(with_postprocess)
    axes = {name: {0: "batch"} for name in ["images", *outputs]} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (example,), buf,  # type: ignore[arg-type]  # file-like works
                              input_names=["images"], output_names=outputs, opset_version=opset,
                              dynamic_axes=axes, dynamo=False, do_constant_folding=True)
            return buf.getvalue()
        except Exception:  # noqa: BLE001 - the legacy exporter may be gone in a later torch
            require("onnxscript", "export")
            shapes = ({"images": {0: torch.export.Dim("batch", min=1, max=64)}}
                      if dynamic_batch else None)
            program = torch.onnx.export(module, (example,), None, input_names=["images"],
                                        output_names=outputs, opset_version=max(opset, 18),
                                        dynamic_shapes=shapes, dynamo=True, verbose=False)
            return program.model_proto.SerializeToString()  # type: ignore[union-attr]
