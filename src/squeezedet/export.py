"""Export a trained model to ONNX, OpenVINO IR or TorchScript, with a parity check.

Every export writes the model file and a metadata file next to it, ``<model file>.json``
(:func:`squeezedet.runtime.metadata_path`): the model's :meth:`~SqueezeDet.metadata` (class names,
input size ``(W, H)``, anchor shapes, their centres and grid — the anchors are
``make_anchors(grid, input_size, anchor_shapes, centers=anchor_centers)`` in (row, column, anchor)
order — and the RGB 0–255 normalisation, which the graph already applies), the format,
precision, batch mode, outputs, and the parity figures.

Exported graphs take ``float32 [B, 3, H, W]`` RGB 0–255 at the network size, input ``images``.
By default they return the raw ConvDet head ``head [B, K·(C+5), gh, gw]`` (what the runners of
:mod:`squeezedet.runtime` consume). ``with_postprocess=True`` instead returns the top-``k`` decoded
detections before NMS — ``boxes [B, k, 4]`` xyxy network pixels, ``scores [B, k]``, ``labels
[B, k]`` int64 — so a consumer without PyTorch only runs per-class NMS on 64 boxes.

Precisions: ``fp32`` (every format); ``bf16`` (OpenVINO: weights stored in fp16, inference in bf16
on AVX512-BF16/AMX CPUs); ``int8`` (static post-training quantisation calibrated on training
images. OpenVINO: NNCF's ``performance`` preset on every convolution, ConvDet included — NNCF
quantises layer inputs, so the head's output stays float; 1.6x faster than the ONNX Runtime path
below, AP within 0.2 of fp32 on the demo model. ONNX, and OpenVINO without NNCF: ONNX Runtime's
quantiser — per-channel int8 weights, uint8 activations, QDQ format — with the first convolution
and ConvDet left in fp32, because QDQ also quantises ConvDet's output, which costs ~27 AP).

Parity: the exported model and PyTorch fp32 run on real-looking images (KITTI photos when given,
else rendered synthetic driving scenes); the maximum absolute difference of the outputs is printed
and the export fails when it exceeds ``rtol · max|reference|`` with ``rtol`` from
:data:`PARITY_RTOL` (fp32: 1e-4 — fp32 runtimes reorder sums and differ by ~1e-6 of the output's
range; bf16: 5 % — 8-bit mantissas; int8: 15 % — 256 levels per tensor through 27 layers).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from squeezedet.errors import SqueezeDetError, installed, require

if TYPE_CHECKING:
    from squeezedet.models.detector import SqueezeDet

FORMATS = ("onnx", "openvino", "torchscript")

#: suffix of the model file per format
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript"}

#: precisions each format supports
FORMAT_PRECISIONS = {"onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8"),
                     "torchscript": ("fp32",)}

#: parity tolerance per precision, relative to the largest reference output magnitude
PARITY_RTOL = {"fp32": 1e-4, "bf16": 0.05, "int8": 0.15}

#: ONNX opset of the exported graphs
#: The metadata's description of the anchors, per anchor-centre convention.
_ANCHOR_RULES = {
    "original": "make_anchors(grid_size, input_size, anchor_shapes): centres (j+1)*W/(gw+1), "
                "(i+1)*H/(gh+1), order (row, column, anchor)",
    "cell": "make_anchors(grid_size, input_size, anchor_shapes, centers='cell'): centres "
            "(j+0.5)*W/gw, (i+0.5)*H/gh, order (row, column, anchor)",
}

OPSET = 17


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
        rel = self.max_abs_diff / self.output_scale if self.output_scale else 0.0
        return (f"{self.path} ({self.format}, {self.precision}): parity max abs diff "
                f"{self.max_abs_diff:.3g} (relative {rel:.2g} of max |output| "
                f"{self.output_scale:.3g}; tolerance {self.tolerance:.3g})")


# ---------------------------------------------------------------------------------------------
# inputs: parity and calibration images


def render_images(input_size: tuple[int, int], n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic driving scenes, ``uint8 [H0, W0, 3]`` RGB at KITTI's 1242×375 (cached;
    treat them as read-only)."""
    return [_scene(seed + i) for i in range(n)]


@functools.lru_cache(maxsize=128)
def _scene(seed: int) -> np.ndarray:
    from squeezedet.data.synth_scene import render_scene

    image = np.asarray(render_scene(seed, (1242, 375))[0].convert("RGB"))
    image.flags.writeable = False
    return image


def image_files(source: str | Path, n: int) -> list[Path]:
    """Up to ``n`` image files from ``source``: a KITTI root (its ``ImageSets/train.txt`` ids when
    present, else all of ``training/image_2``) or a folder of images; evenly spaced when there
    are more."""
    from squeezedet.data.images import IMAGE_EXTENSIONS

    root = Path(source)
    if not root.exists():
        raise SqueezeDetError(f"{root}: calibration/parity image folder not found")
    folder = root / "training" / "image_2"
    files: list[Path]
    if folder.is_dir():
        split = root / "ImageSets" / "train.txt"
        ids = [line.split()[0] for line in split.read_text().splitlines() if line.strip()] \
            if split.is_file() else None
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if ids is not None:
            wanted = set(ids)
            files = [p for p in files if p.stem in wanted]
    elif root.is_dir():
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    else:
        files = [root]
    if not files:
        raise SqueezeDetError(f"{root}: no images (.png/.jpg) found")
    if len(files) > n:
        step = len(files) / n
        files = [files[int(i * step)] for i in range(n)]
    return files


def network_batch(arrays: Sequence[np.ndarray], input_size: tuple[int, int], *,
                  opencv: bool = True, channels_last: bool = False,
                  uint8: bool = False) -> Tensor:
    """RGB ``uint8`` arrays of any size → ``float32 [B, 3, H, W]`` 0–255 at the network size,
    resized like training and prediction (:class:`~squeezedet.data.transforms.Resize`;
    ``opencv`` as there). Contiguous NCHW, or with ``channels_last`` a channels-last tensor made
    without a layout copy (the stacked NHWC arrays already are that memory order). ``uint8``: the
    resized pixels as they are, for a PyTorch model, which converts them itself (a quarter of the
    memory, and of the transfer to a GPU)."""
    from squeezedet.data.transforms import Resize

    resize = Resize(input_size, opencv=opencv)
    resized = np.stack([resize(a, {})[0] for a in arrays])
    if channels_last:
        nhwc = torch.from_numpy(resized).permute(0, 3, 1, 2)
        return nhwc if uint8 else nhwc.float()
    # NumPy, not torch: torch's copy sometimes took 4.7 ms instead of 0.7 next to a runtime's threads
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(0, 3, 1, 2),
                                                 dtype=np.uint8 if uint8 else np.float32))


def parity_images(input_size: tuple[int, int], n: int = 2,
                  source: str | Path | None = None) -> Tensor:
    """``float32 [n, 3, H, W]`` real-looking network inputs: images of ``source`` (see
    :func:`image_files`) or, without it, rendered synthetic driving scenes."""
    from squeezedet.data.images import load_image

    if source is not None:
        arrays = [load_image(p) for p in image_files(source, n)]
    else:
        arrays = render_images(input_size, n)
    return network_batch(arrays, input_size)


# ---------------------------------------------------------------------------------------------
# graphs


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
        from squeezedet.models.detector import split_head
        from squeezedet.ops.coder import decode
        from squeezedet.postprocess import PostProcess

        model = self.model
        head = split_head(model(images), model.num_anchors, model.num_classes)
        scores, labels = PostProcess().scores(head)
        k = min(self.top_k, scores.shape[1])
        top_scores, top_idx = scores.topk(k, dim=1)
        deltas = torch.gather(head.deltas, 1, top_idx[..., None].expand(-1, -1, 4))
        boxes = decode(deltas, self.anchors[top_idx], model.input_size)
        return boxes, top_scores, torch.gather(labels, 1, top_idx)


def _export_module(model: SqueezeDet, example: Tensor, dynamic_batch: bool,
                   with_postprocess: bool) -> nn.Module:
    from squeezedet.models.layers import with_memory_format

    model = with_memory_format(model.eval(), torch.contiguous_format)
    return DetectionsHead(model).eval() if with_postprocess else model


def _output_names(with_postprocess: bool) -> list[str]:
    return ["boxes", "scores", "labels"] if with_postprocess else ["head"]


def onnx_bytes(model: SqueezeDet, *, dynamic_batch: bool = False, with_postprocess: bool = False,
               opset: int = OPSET) -> bytes:
    """The serialised fp32 ONNX graph of ``model`` (input ``images``; outputs see the module
    docstring), via the TorchScript-based exporter (fast, no onnxscript needed), falling back to
    the dynamo exporter."""
    h, w = model.input_size[1], model.input_size[0]
    example = torch.zeros(1, 3, h, w)
    module = _export_module(model, example, dynamic_batch, with_postprocess)
    outputs = _output_names(with_postprocess)
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
    with warnings.catch_warnings():
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
    from squeezedet.engine import detections_to_kitti, to_original_pixels
    from squeezedet.eval import evaluate_kitti
    from squeezedet.models.detector import split_head
    from squeezedet.postprocess import PostProcess

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantised = nncf.quantize_with_accuracy_control(
            ov_model, calib, nncf.Dataset(items), validation_fn=kitti_map, max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=int(calibration.shape[0]))
    convs = [op for op in quantised.get_ordered_ops() if op.get_type_name() == "Convolution"]
    floats = sum(not _fed_by_fake_quantize(conv.input_value(0).get_node()) for conv in convs)
    return quantised, floats


def _fed_by_fake_quantize(node: Any) -> bool:
    """Whether every path into an OpenVINO ``node`` starts at a FakeQuantize (through the
    quantisation-preserving Concat, MaxPool and ReLU): a convolution whose data input is so fed
    runs in int8."""
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind in ("Concat", "MaxPool", "Relu"):
        count = len(node.inputs()) if kind == "Concat" else 1
        return all(_fed_by_fake_quantize(node.input_value(i).get_node()) for i in range(count))
    return False


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


# ---------------------------------------------------------------------------------------------
# parity


def _run_exported(path: Path, fmt: str, precision: str, x: Tensor,
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
        from squeezedet.runtime import _threads

        ort = require("onnxruntime", "export")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = _threads(threads)
        sess = ort.InferenceSession(str(path), opts,
                                    providers=["CPUExecutionProvider"])
        for i in range(x.shape[0]):
            outs.append(list(sess.run(None, {"images": x[i:i + 1].numpy()})))
    else:
        from squeezedet.runtime import _threads, ov_precision_hint

        ov = require("openvino", "openvino")
        core = ov.Core()
        compiled = core.compile_model(str(path), "CPU", {
            "INFERENCE_NUM_THREADS": _threads(threads),
            "INFERENCE_PRECISION_HINT": ov_precision_hint(precision, core)})
        req = compiled.create_infer_request()
        for i in range(x.shape[0]):
            res = req.infer({0: x[i:i + 1].numpy()})
            outs.append([np.asarray(res[o]) for o in compiled.outputs])
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def _parity(model: SqueezeDet, path: Path, fmt: str, precision: str, x: Tensor,
            dynamic_batch: bool, with_postprocess: bool,
            threads: int | None) -> tuple[float, float]:
    """:func:`parity_error` of the exported file at ``path`` against ``model`` on ``x``."""
    module = _export_module(model, x, dynamic_batch, with_postprocess)
    with torch.inference_mode():
        ref = module(x)
    ref_arrays = [t.numpy() for t in (ref if isinstance(ref, tuple) else (ref,))]
    got = _run_exported(path, fmt, precision, x, with_postprocess, threads)
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


# ---------------------------------------------------------------------------------------------
# export


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
        accuracy_data: OpenVINO int8 only — a KITTI root whose validation split bounds the AP
            loss: layers return to float until mAP_R40 is at most ``max_ap_drop`` points below
            fp32 (:func:`quantize_openvino_int8_for_ap`).
    """
    from squeezedet.checkpoint import model_from_checkpoint
    from squeezedet.runtime import metadata_path

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
    out = Path(output)
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
        "output_names": _output_names(with_postprocess),
        "input_name": "images",
        "input_layout": "float32 [B, 3, H, W] RGB 0-255 at input_size (W, H); the graph normalises",
        "anchors": _ANCHOR_RULES[model.anchor_centers],
        "opset": OPSET if fmt != "torchscript" else None,
        "squeezedet_version": _version(),
    }
    files = [out]
    measured: tuple[float, float] | None = None  # parity of the file as written
    if fmt == "torchscript":
        module = _export_module(model, torch.zeros(1, 3, size[1], size[0]), dynamic_batch,
                                with_postprocess)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, torch.zeros(1, 3, size[1], size[0]))
            traced = torch.jit.freeze(traced)
        traced.save(str(out))
    else:
        proto = onnx_bytes(model, dynamic_batch=dynamic_batch, with_postprocess=with_postprocess)
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
            if nncf_int8:
                # NNCF clips activation ranges to quantiles; on weights with unusual activations
                # (seen with random weights) that can miss parity: then ConvDet stays float, and
                # last ONNX Runtime's min/max quantiser with the first and last layers float
                x = parity_images(size, 2, parity_data)
                fallbacks = [("convdet float", ["convdet"]), ("onnxruntime", None)]
                while fallbacks:
                    measured = _parity(model, out, fmt, precision, x, dynamic_batch,
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
        err, scale = measured or _parity(model, out, fmt, precision, x, dynamic_batch,
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
    try:
        from importlib.metadata import version

        return version("squeezedet")
    except Exception:  # noqa: BLE001
        return "unknown"
