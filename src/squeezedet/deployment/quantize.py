"""int8 post-training quantisation of exported graphs.

OpenVINO: NNCF's ``performance`` preset on every convolution, ConvDet included — NNCF quantises
layer inputs, so the head's output stays float; 1.6x faster than the ONNX Runtime path below, AP
within 0.2 of fp32 on the demo model — optionally with NNCF's accuracy control bounding the KITTI
AP loss on a validation split. ONNX, and OpenVINO without NNCF: ONNX Runtime's quantiser —
per-channel int8 weights, uint8 activations, QDQ format — with the first convolution and ConvDet
left in fp32, because QDQ also quantises ConvDet's output, which costs ~27 AP.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from squeezedet.deployment.signal_stack import signal_stack_kept
from squeezedet.errors import require
from squeezedet.models.detector import SqueezeDet, split_head
from squeezedet.postprocess import PostProcess, detections_to_kitti, to_original_pixels


def quantize_openvino_int8(ov_model: Any, calibration: Tensor, keep_head_float: bool = False) -> Any:
    """int8 post-training quantisation of an OpenVINO model with NNCF (``performance`` preset:
    symmetric int8 weights per channel and activations per tensor, calibrated over
    ``calibration`` ``[N, 3, H, W]``). Every convolution runs in int8, ConvDet included; NNCF
    quantises layer inputs only, so the head's output stays float — what keeps the AP within
    0.2 points here where quantising ConvDet's output too costs ~27. ``keep_head_float`` leaves
    ConvDet (the last convolution) in float."""
    nncf = require("nncf", "openvino")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    dataset = nncf.Dataset([calibration[i:i + 1].numpy() for i in range(calibration.shape[0])])
    options: dict[str, Any] = {}
    if keep_head_float:
        convs = [op for op in ov_model.get_ordered_ops() if op.get_type_name() == "Convolution"]
        options["ignored_scope"] = nncf.IgnoredScope(names=[convs[-1].get_friendly_name()])
    with warnings.catch_warnings(), signal_stack_kept():  # NNCF compiles on its own ov.Core
        warnings.simplefilter("ignore")
        return nncf.quantize(ov_model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                             subset_size=int(calibration.shape[0]), **options)


def quantize_openvino_int8_for_ap(ov_model: Any, calibration: Tensor, model: SqueezeDet,
                                  data: str | Path, max_drop: float) -> tuple[Any, int]:
    """int8 quantisation as :func:`quantize_openvino_int8`, then NNCF's accuracy control: layers are
    put back in float, most sensitive first, until the KITTI mAP_R40 of the validation split of
    the KITTI root ``data`` is at most ``max_drop`` points below the float model's. Returns the
    model and the number of convolutions left in float."""
    nncf = require("nncf", "openvino")
    from squeezedet.data.kitti import KittiDataset
    from squeezedet.eval import evaluate_kitti

    logging.getLogger("nncf").setLevel(logging.WARNING)
    names = tuple(model.class_names)
    size = model.input_size
    k, c = int(model.num_anchors), len(names)
    dataset = KittiDataset(data, "val", names, size, train=False)
    items = [dataset[i] for i in range(len(dataset))]
    truth = {t["image_id"]: dataset.ground_truth(i) for i, (_, t) in enumerate(items)}
    post = PostProcess()

    def kitti_map(compiled: Any, samples: Any) -> float:
        found, ids = {}, []
        for image, target in samples:
            head = torch.from_numpy(np.asarray(compiled(image[None].float().numpy())[0]))
            det = post(split_head(head, k, c), model.anchors, size)[0]
            det = {**det, "boxes": to_original_pixels(det["boxes"], size, target["orig_size"])}
            found[target["image_id"]] = detections_to_kitti(det, names)
            ids.append(target["image_id"])
        return evaluate_kitti({i: truth[i] for i in ids}, found, classes=names).map_r40

    calib = nncf.Dataset([calibration[i:i + 1].numpy() for i in range(calibration.shape[0])])
    with warnings.catch_warnings(), signal_stack_kept():
        warnings.simplefilter("ignore")
        quantised = nncf.quantize_with_accuracy_control(
            ov_model, calib, nncf.Dataset(items), validation_fn=kitti_map, max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=int(calibration.shape[0]))
    convs = [op for op in quantised.get_ordered_ops() if op.get_type_name() == "Convolution"]
    floats = sum(not fed_by_fake_quantize(conv.input_value(0).get_node()) for conv in convs)
    return quantised, floats


def fed_by_fake_quantize(node: Any) -> bool:
    """Whether every path into an OpenVINO ``node`` starts at a FakeQuantize (through the
    quantisation-preserving Concat, MaxPool and ReLU): a convolution whose data input is so fed
    runs in int8."""
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind in ("Concat", "MaxPool", "Relu"):
        count = len(node.inputs()) if kind == "Concat" else 1
        return all(fed_by_fake_quantize(node.input_value(i).get_node()) for i in range(count))
    return False


def unshare_initializers(proto: Any) -> int:
    """Give every ``Identity`` of an initializer its own copy of the initializer, in place;
    returns how many were replaced.

    PyTorch's exporter stores equal constant tensors once and reaches the others through
    ``Identity`` nodes — all-zero biases, for instance, as an untrained or zero-initialised model
    has. ONNX Runtime's quantiser leaves a bias it reaches through an ``Identity`` in float, and
    its graph optimiser then cannot fuse that convolution into a ``QLinearConv``: an untrained
    SqueezeDet (22 of its zero biases reached that way) ran most of its convolutions in float in
    int8 and took 65 instead of 31 ms at 1248x384 (``squeezedet benchmark`` without weights).
    """
    onnx = require("onnx", "export")
    tensors = {t.name: t for t in proto.graph.initializer}
    replaced = []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in tensors:
            copy = onnx.TensorProto()
            copy.CopyFrom(tensors[node.input[0]])
            copy.name = node.output[0]
            proto.graph.initializer.append(copy)
            replaced.append(node)
    for node in replaced:
        proto.graph.node.remove(node)
    return len(replaced)


def quantize_int8(fp32_onnx: bytes, calibration: Tensor, out_path: Path,
                  exclude_first_last: bool = True) -> None:
    """Static int8 post-training quantisation of an ONNX graph (QDQ; per-channel int8 weights,
    uint8 activations; min/max calibration over ``calibration`` ``[N, 3, H, W]``) into
    ``out_path``. The first convolution and ConvDet (the last) stay fp32 when asked."""
    require("onnxruntime", "export")
    onnx = require("onnx", "export")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    proto = onnx.load_from_string(fp32_onnx)
    if unshare_initializers(proto):
        fp32_onnx = proto.SerializeToString()
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    exclude = [convs[0], convs[-1]] if exclude_first_last and len(convs) > 2 else []

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": calibration[i:i + 1].numpy()}
                               for i in range(calibration.shape[0])])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "fp32.onnx"
        src.write_bytes(fp32_onnx)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser logs a line per unquantised bias
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_static(
                    str(src), str(out_path), _Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=exclude,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        finally:
            root.setLevel(level)
