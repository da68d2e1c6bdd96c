"""Export parity: every format and precision reproduces the PyTorch checkpoint.

Tolerances are those of :data:`squeezedet.deployment.parity.PARITY_RTOL` (relative to the largest output
magnitude): fp32 runtimes only reorder sums (observed ~1e-6 relative), bf16 keeps 8 mantissa bits
(observed ~2 %), int8 quantises activations to 256 levels per tensor (observed ~5-9 %). Tests are
skipped when the optional extra of a format is missing; CI installs the extras.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from random_model import random_checkpoint

from squeezedet.deployment.export import export_model
from squeezedet.deployment.parity import PARITY_RTOL
from squeezedet.deployment.preprocess import parity_images
from squeezedet.deployment.quantize import fed_by_fake_quantize
from squeezedet.deployment.runners import TorchRunner, load_runner, metadata_path
from squeezedet.errors import SqueezeDetError
from squeezedet.models import create_model

SIZE = (192, 64)  # small network input (W, H): a 12x4 grid, fast to export and run


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_ort = pytest.mark.skipif(not (_has("onnxruntime") and _has("onnx")),
                               reason="needs the 'export' extra")
needs_ov = pytest.mark.skipif(not (_has("openvino") and _has("onnxruntime")),
                              reason="needs the 'openvino' and 'export' extras")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random SqueezeDet whose head gives varied outputs (ConvDet N(0, 0.01))."""
    return random_checkpoint(tmp_path_factory.mktemp("ckpt"), SIZE, seed=0)


CASES = [
    pytest.param("onnx", "fp32", "onnxruntime", marks=needs_ort),
    pytest.param("onnx", "int8", "onnxruntime", marks=needs_ort),
    pytest.param("openvino", "fp32", "openvino", marks=needs_ov),
    pytest.param("openvino", "bf16", "openvino", marks=needs_ov),
    pytest.param("openvino", "int8", "openvino", marks=needs_ov),
    pytest.param("torchscript", "fp32", "torchscript", marks=pytest.mark.slow),  # tracing: ~10 s
]


@pytest.mark.parametrize(("fmt", "precision", "backend"), CASES)
def test_export_parity_and_runner(checkpoint: Path, tmp_path: Path, fmt: str, precision: str,
                                  backend: str) -> None:
    suffix = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript"}[fmt]
    out = tmp_path / f"m-{precision}{suffix}"
    result = export_model(checkpoint, fmt, out, precision=precision, calib_images=4)
    assert out.is_file() and result.metadata_path == metadata_path(out)
    assert result.max_abs_diff <= result.tolerance
    meta = json.loads(result.metadata_path.read_text())
    assert meta["input_size"] == list(SIZE)
    assert meta["class_names"] == ["Car", "Pedestrian", "Cyclist"]
    assert len(meta["anchor_shapes"]) == 9 and meta["grid_size"] == [12, 4]
    assert meta["precision"] == precision and meta["format"] == fmt
    assert meta["parity"]["max_abs_diff"] == pytest.approx(result.max_abs_diff)
    assert "pixel_mean" in meta and "pixel_std" in meta

    # the runner of the exported file agrees with the checkpoint's PyTorch runner
    runner = load_runner(out, backend)
    x = parity_images(SIZE, 2)
    ref = TorchRunner(checkpoint)(x)
    got = runner(x)
    assert got.shape == ref.shape and got.dtype == torch.float32
    tol = PARITY_RTOL[precision] * float(ref.abs().max())
    assert float((got - ref).abs().max()) <= tol


@needs_ort
def test_onnx_int8_quantises_convolutions_whose_zero_biases_the_exporter_shared(
        checkpoint: Path, tmp_path: Path) -> None:
    """The random checkpoint's biases are all zero: PyTorch's exporter stores equal ones once and
    reaches the rest through Identity nodes, which ONNX Runtime's quantiser left in float (and
    those convolutions unfused, in float). Every convolution but the first and ConvDet must get
    quantised weights and a quantised bias."""
    import onnx

    out = tmp_path / "q.onnx"
    export_model(checkpoint, "onnx", out, precision="int8", calib_images=2)
    graph = onnx.load(str(out)).graph
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 32 and not any(n.op_type == "Identity" for n in graph.node)
    for conv in convs[1:-1]:
        assert [made_by.get(i) for i in conv.input] == ["DequantizeLinear"] * 3, conv.name


def test_unshare_initializers_copies_what_identity_reached() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    from squeezedet.deployment.quantize import unshare_initializers

    zeros = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["b"], ["b2"]), helper.make_node("Add", ["x", "b"], ["y"]),
         helper.make_node("Add", ["y", "b2"], ["z"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2])], [zeros])
    model = helper.make_model(graph)
    assert unshare_initializers(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Add", "Add"]
    copies = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert set(copies) == {"b", "b2"} and not copies["b2"].any()
    onnx.checker.check_model(model)


@needs_ov
@pytest.mark.skipif(not _has("nncf"), reason="needs NNCF (the 'openvino' extra)")
def test_openvino_int8_quantises_every_convolution_with_nncf(checkpoint: Path, tmp_path: Path) -> None:
    import openvino as ov

    out = tmp_path / "q.xml"
    result = export_model(checkpoint, "openvino", out, precision="int8", calib_images=4)
    meta = json.loads(result.metadata_path.read_text())
    assert meta["calibration"]["quantizer"] == "nncf"
    graph = ov.Core().read_model(str(out))
    convs = [op for op in graph.get_ordered_ops() if op.get_type_name() == "Convolution"]
    assert len(convs) == 1 + 10 * 3 + 1  # conv1, fire2..fire11 (squeeze + two expands), ConvDet
    assert all(fed_by_fake_quantize(c.input_value(0).get_node()) for c in convs)
    # the head's output is not quantised: no FakeQuantize after ConvDet
    consumers = [i.get_node().get_type_name() for i in convs[-1].output(0).get_target_inputs()]
    assert "FakeQuantize" not in consumers


@needs_ov
@pytest.mark.skipif(not _has("nncf"), reason="needs NNCF (the 'openvino' extra)")
def test_openvino_int8_without_check_keeps_nncfs_all_int8_model(
        checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the benchmark's random weights: a parity miss (forced here) must not swap the model
    monkeypatch.setitem(PARITY_RTOL, "int8", 1e-9)
    result = export_model(checkpoint, "openvino", tmp_path / "q.xml", precision="int8",
                          calib_images=2, check=False)
    calibration = json.loads(result.metadata_path.read_text())["calibration"]
    assert calibration["quantizer"] == "nncf" and "float_layers" not in calibration
    assert result.summary().endswith("parity not checked")


@needs_ov
@pytest.mark.skipif(not _has("nncf"), reason="needs NNCF (the 'openvino' extra)")
def test_openvino_int8_keeps_convdet_float_when_all_int8_misses_parity(
        checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino as ov

    import squeezedet.deployment.export as export

    real, calls = export.measure_parity, []

    def first_fails(*args, **kwargs):
        calls.append(1)
        return (float("inf"), 1.0) if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(export, "measure_parity", first_fails)
    out = tmp_path / "q.xml"
    result = export_model(checkpoint, "openvino", out, precision="int8", calib_images=4)
    # fail, then the retry's measurement, which is also the final check's (not measured twice)
    assert len(calls) == 2 and result.max_abs_diff <= result.tolerance
    assert json.loads(result.metadata_path.read_text())["calibration"]["float_layers"] == ["convdet"]
    convs = [op for op in ov.Core().read_model(str(out)).get_ordered_ops()
             if op.get_type_name() == "Convolution"]
    assert all(fed_by_fake_quantize(c.input_value(0).get_node()) for c in convs[:-1])
    assert not fed_by_fake_quantize(convs[-1].input_value(0).get_node())


@needs_ov
@pytest.mark.skipif(not _has("nncf"), reason="needs NNCF (the 'openvino' extra)")
def test_openvino_int8_accuracy_control_records_what_it_did(checkpoint: Path, tmp_path: Path) -> None:
    import openvino as ov
    from tiny_data import make_tiny_kitti

    root = make_tiny_kitti(tmp_path / "data", n=4, size=(192, 64))
    out = tmp_path / "ac.xml"
    # no AP loss can exceed 100 points: the accuracy control returns no layer to float
    result = export_model(checkpoint, "openvino", out, precision="int8", calib_data=root,
                          calib_images=4, parity_data=root, accuracy_data=root, max_ap_drop=100.0)
    control = json.loads(result.metadata_path.read_text())["calibration"]["accuracy_control"]
    assert control["max_drop"] == 100.0 and control["data"] == str(root)
    assert control["float_convolutions"] == 0
    # the file holds SqueezeDet's 32 convolutions (conv1, 10 fire modules x (squeeze, expand 1x1,
    # expand 3x3), ConvDet), every one fed by a FakeQuantize: int8, as the record says
    convs = [op for op in ov.Core().read_model(str(out)).get_ordered_ops()
             if op.get_type_name() == "Convolution"]
    assert len(convs) == 1 + 10 * 3 + 1
    assert all(fed_by_fake_quantize(c.input_value(0).get_node()) for c in convs)
    assert result.max_abs_diff <= result.tolerance
    assert load_runner(out, "openvino")(parity_images(SIZE, 1)).shape == (1, 72, 4, 12)


#: bf16 keeps 8 significant bits: rounding one value changes it by up to 2^-9 of itself. Through
#: the network's 27 layers computed in bf16 the outputs' largest difference from fp32 is several
#: times that (1.1e-2 of max |output| on this model), while f32 arithmetic on the fp16-stored
#: weights of a bf16 file (11 significant bits) stays below it (7.8e-4); AMD EPYC with AVX512-BF16.
BF16_ROUNDING = 2.0**-9


@needs_ov
@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "no-bf16"])
def test_openvino_bf16_computes_in_bf16_only_where_the_cpu_has_it(
        checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    """A bf16 export stores its weights in fp16; where the CPU has bf16 natively OpenVINO computes
    it in bf16 (the results differ from fp32 by bf16 rounding, within the bf16 tolerance);
    elsewhere the documented fallback: OpenVINO computes it in f32 (``ov_precision_hint``), and the
    results stay within fp32 arithmetic on fp16 weights. The CPU without bf16 is this one with
    :func:`squeezedet.cpu.native_bf16` answering no, as it does on an AVX2 CPU or under
    ``ONEDNN_MAX_CPU_ISA=AVX2``."""
    import squeezedet.cpu

    if native and not squeezedet.cpu.native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX)")
    if not native:
        monkeypatch.setattr(squeezedet.cpu, "native_bf16", lambda: False)
    fp32 = export_model(checkpoint, "openvino", tmp_path / "m.xml")
    bf16 = export_model(checkpoint, "openvino", tmp_path / "m-bf16.xml", precision="bf16")
    # fp16 weights: half the bytes of the fp32 file's
    ratio = (tmp_path / "m-bf16.bin").stat().st_size / (tmp_path / "m.bin").stat().st_size
    assert 0.45 < ratio < 0.55

    x = parity_images(SIZE, 2)
    reference = load_runner(fp32.path, "openvino")
    assert reference.inference_precision == "f32"
    ref = reference(x)
    runner = load_runner(bf16.path, "openvino")
    assert runner.precision == "bf16"  # as the metadata records it
    rel = float((runner(x) - ref).abs().max()) / float(ref.abs().max())
    if native:
        assert runner.inference_precision == "bf16"
        assert BF16_ROUNDING < rel <= PARITY_RTOL["bf16"]
    else:
        assert runner.inference_precision == "f32"
        assert rel < BF16_ROUNDING


@needs_ov
def test_openvino_int8_without_nncf_falls_back_with_a_warning(
        checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import squeezedet.deployment.export as export

    monkeypatch.setattr(export, "installed", lambda module: module != "nncf")
    with pytest.warns(UserWarning, match="NNCF is not installed"):
        result = export_model(checkpoint, "openvino", tmp_path / "q.xml", precision="int8",
                              calib_images=4)
    assert json.loads(result.metadata_path.read_text())["calibration"]["quantizer"] == "onnxruntime"


@needs_ort
def test_dynamic_batch_and_auto_backend(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "dyn.onnx"
    export_model(checkpoint, "onnx", out, dynamic_batch=True)
    runner = load_runner(out)  # auto: OpenVINO when installed, else ONNX Runtime
    x = parity_images(SIZE, 3)
    ref = TorchRunner(checkpoint)(x)
    got = runner(x)
    assert got.shape[0] == 3
    assert float((got - ref).abs().max()) <= 1e-4 * float(ref.abs().max())


@needs_ort
def test_static_batch_runs_image_by_image(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "static.onnx"
    export_model(checkpoint, "onnx", out)
    runner = load_runner(out, "onnxruntime")
    x = parity_images(SIZE, 2)
    assert runner(x).shape[0] == 2


@needs_ort
def test_with_postprocess_outputs_detections(checkpoint: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "det.onnx"
    result = export_model(checkpoint, "onnx", out, with_postprocess=True)
    assert result.max_abs_diff <= result.tolerance
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["boxes", "scores", "labels"]
    x = parity_images(SIZE, 1).numpy()
    boxes, scores, labels = sess.run(None, {"images": x})
    k = min(64, 12 * 4 * 9)
    assert boxes.shape == (1, k, 4) and scores.shape == (1, k) and labels.shape == (1, k)
    assert np.all(np.diff(scores[0]) <= 1e-6)  # by decreasing score
    assert boxes[..., 0].min() >= 0 and boxes[..., 2].max() <= SIZE[0]
    with pytest.raises(SqueezeDetError, match="with-postprocess"):
        load_runner(out, "onnxruntime")


@needs_ort
def test_parity_failure_is_loud(checkpoint: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PARITY_RTOL, "int8", 1e-9)  # int8 cannot meet an fp32-level tolerance
    with pytest.raises(SqueezeDetError, match="parity check failed"):
        export_model(checkpoint, "onnx", tmp_path / "bad.onnx", precision="int8", calib_images=2)


def test_unsupported_precision_and_suffix(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(SqueezeDetError, match="bf16"):
        export_model(checkpoint, "onnx", tmp_path / "x.onnx", precision="bf16")
    with pytest.raises(SqueezeDetError, match="must end in"):
        export_model(checkpoint, "torchscript", tmp_path / "x.onnx")
    with pytest.raises(SqueezeDetError, match="unknown export format"):
        export_model(checkpoint, "tflite", tmp_path / "x.tflite")


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, checkpoint: Path,
                                tmp_path: Path) -> None:
    import importlib

    real = importlib.import_module

    def fake(name: str, *args: object) -> object:
        if name == "openvino":
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(SqueezeDetError, match=r"squeezedet\[openvino\]"):
        export_model(checkpoint, "openvino", tmp_path / "x.xml")


@needs_ort
def test_export_cli(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from squeezedet.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", "--weights", str(checkpoint), "--format", "onnx",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and out.is_file() and metadata_path(out).is_file()
    assert main(["export", "--weights", str(tmp_path / "none.pt"), "--format", "onnx"]) == 2


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx not installed")
def test_exported_graph_rectifies_before_the_first_pool_with_the_same_outputs() -> None:
    import onnx

    from squeezedet.deployment.graph import onnx_bytes, relu_before_first_pool

    torch.manual_seed(0)
    model = create_model("squeezedet", input_size=(96, 64), num_classes=3).eval()
    names = [type(m).__name__ for m in model.backbone.features[:3]]
    assert names == ["Conv2d", "MaxPool2d", "ReLU"]  # the training order
    swapped = relu_before_first_pool(model)
    assert [type(m).__name__ for m in swapped.backbone.features[:3]] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert [type(m).__name__ for m in model.backbone.features[:3]] == names  # the model untouched
    x = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        # max(relu(a), relu(b)) == relu(max(a, b)) exactly, so the outputs agree bit for bit
        torch.testing.assert_close(swapped(x), model(x), rtol=0, atol=0)
    ops = [n.op_type for n in onnx.load_from_string(onnx_bytes(model, relu_first=True)).graph.node]
    assert ops.index("Conv") < ops.index("Relu") < ops.index("MaxPool")
    ops = [n.op_type for n in onnx.load_from_string(onnx_bytes(model)).graph.node]
    assert ops.index("Conv") < ops.index("MaxPool") < ops.index("Relu")


@needs_ort
def test_export_records_the_runs_post_processing_for_predict(checkpoint: Path,
                                                             tmp_path: Path) -> None:
    """A run that validated with ``top_k=1, nms_iou=0.5, tta=hflip`` is exported with them in its
    metadata, and ``recorded_postprocess`` (what ``predict`` and ``track`` use) reads them back
    from the exported file as from the checkpoint; a checkpoint without a configuration records
    none, and its export is predicted with the defaults."""
    from squeezedet.checkpoint import load_checkpoint, save_checkpoint
    from squeezedet.deployment.runners import recorded_postprocess

    ckpt = load_checkpoint(checkpoint)
    ckpt["config"] = {"top_k": 1, "nms_iou": 0.5, "tta": "hflip", "lr": 0.1}
    save_checkpoint(ckpt, tmp_path / "small.pt")
    export_model(tmp_path / "small.pt", "onnx", tmp_path / "small.onnx")
    recorded = {"top_k": 1, "nms_iou": 0.5, "tta": "hflip"}
    assert json.loads(metadata_path(tmp_path / "small.onnx").read_text())["postprocess"] == recorded
    assert recorded_postprocess(tmp_path / "small.onnx") == recorded
    assert recorded_postprocess(tmp_path / "small.pt") == recorded
    export_model(checkpoint, "onnx", tmp_path / "plain.onnx")
    assert "postprocess" not in json.loads(metadata_path(tmp_path / "plain.onnx").read_text())
    assert recorded_postprocess(tmp_path / "plain.onnx") == {}
