"""Importing the original's, the PyTorch port's and the Keras port's weights.

Every file here is made without the source's code: the TensorFlow checkpoint fixture was written by
TensorFlow (scripts/make_tf_fixture.py); full-size TensorFlow checkpoints are written by the
minimal TensorBundle writer below; ``.pth`` by torch.save, ``.h5`` by h5py, the Python 2 pickle
opcode by opcode. The source layouts are produced by reference permutations written here,
independently of squeezedet.interop.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from squeezedet.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from squeezedet.errors import SqueezeDetError
from squeezedet.interop import import_weights
from squeezedet.interop.tf_bundle import TensorBundle, read_checkpoint
from squeezedet.models import create_model
from squeezedet.ops.anchors import KITTI_ANCHOR_SHAPES, make_anchors, scale_anchor_shapes

FIXTURE = Path(__file__).parent / "fixtures" / "tf_bundle"
SIZE = (192, 96)  # a small input for the end-to-end checks (grid 12x6)
PORT_ANCHORS = [(34, 30), (75, 45), (38, 90), (127, 68), (80, 174), (196, 97), (194, 178),
                (283, 156), (381, 185)]

# our module path -> the original's layer name, written out by hand
FIRE_INDICES = {"squeezedet": [3, 4, 6, 7, 9, 10, 11, 12], "squeezedet_plus": [3, 4, 5, 7, 8, 9, 10, 12]}


def original_layers(model_name: str) -> dict[str, str]:
    paths = [f"backbone.features.{i}" for i in FIRE_INDICES[model_name]]
    paths += ["backbone.extra.0", "backbone.extra.1"]
    out = {"backbone.features.0": "conv1", "convdet": "conv12"}
    for n, path in enumerate(paths, start=2):
        out[f"{path}.squeeze"] = f"fire{n}/squeeze1x1"
        out[f"{path}.expand1x1"] = f"fire{n}/expand1x1"
        out[f"{path}.expand3x3"] = f"fire{n}/expand3x3"
    return out


def randomised(model):
    """Weights with some spread everywhere (ConvDet's own init is ~0: all scores alike)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (1.5 / fan_in) ** 0.5)
    return model.eval()


# --- a minimal TensorBundle writer (independent of the reader) ---------------------------------

def _crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: int | bytes) -> bytes:
    if isinstance(payload, bytes):
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload
    return _varint(number << 3) + _varint(payload)


def write_tf_checkpoint(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    """``prefix.index`` (an SSTable: one data block, one index block, an empty metaindex) and
    ``prefix.data-00000-of-00001``; float32 only, no tensor checksums (the field is optional)."""
    data = bytearray()
    entries = [(b"", _field(1, 1) + _field(3, _field(1, 1)))]  # header: 1 shard, version 1
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        shape = b"".join(_field(2, _field(1, d)) for d in a.shape)
        entry = (_field(1, 1) + _field(2, shape) + _field(4, len(data)) + _field(5, a.nbytes))
        entries.append((name.encode(), entry))
        data += a.tobytes()
    (prefix.parent / f"{prefix.name}.data-00000-of-00001").write_bytes(bytes(data))

    def block(items: list[tuple[bytes, bytes]]) -> bytes:
        body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in items)
        return body + struct.pack("<II", 0, 1)  # one restart point, at 0

    out = bytearray()

    def put(b: bytes) -> bytes:
        handle = _varint(len(out)) + _varint(len(b))
        out.extend(b + b"\x00" + struct.pack("<I", _masked(_crc32c_bitwise(b + b"\x00"))))
        return handle

    data_handle = put(block(entries))
    meta_handle = put(block([]))
    index_handle = put(block([(entries[-1][0], data_handle)]))
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    (prefix.parent / f"{prefix.name}.index").write_bytes(bytes(out + footer))


def to_original_layout(model, model_name: str) -> dict[str, np.ndarray]:
    state = model.state_dict()
    out = {"global_step": np.array(87000.0, np.float32), "iou": np.zeros((2, 3), np.float32)}
    for ours, theirs in original_layers(model_name).items():
        out[f"{theirs}/kernels"] = state[f"{ours}.weight"].permute(2, 3, 1, 0).numpy()
        out[f"{theirs}/biases"] = state[f"{ours}.bias"].numpy()
        out[f"{theirs}/kernels/Momentum"] = np.zeros_like(out[f"{theirs}/kernels"])
    return out


# --- the TensorFlow-written fixture -------------------------------------------------------------

def test_reads_the_tensorflow_written_checkpoint_tensor_by_tensor():
    expected = np.load(FIXTURE / "expected.npz")
    tensors = read_checkpoint(FIXTURE / "model.ckpt-7")
    assert set(tensors) == {k.replace("|", "/") for k in expected.files}
    for key in expected.files:
        want, got = expected[key], tensors[key.replace("|", "/")]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        assert np.array_equal(got, want), key
    assert tensors["conv1/kernels"].shape == (3, 3, 3, 4)  # HWIO, as the original stores them
    # the prefix, the .index file and the folder name the same checkpoint
    for path in (FIXTURE / "model.ckpt-7.index", FIXTURE):
        assert TensorBundle(path).names() == sorted(tensors)


def test_checksums_and_truncation_are_errors(tmp_path):
    for name in ("model.ckpt-7.index", "model.ckpt-7.data-00000-of-00001"):
        (tmp_path / name).write_bytes((FIXTURE / name).read_bytes())
    data = tmp_path / "model.ckpt-7.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    entry = TensorBundle(tmp_path / "model.ckpt-7").entries["conv1/kernels"]
    raw[entry.offset + 5] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(SqueezeDetError, match="checksum mismatch for conv1/kernels"):
        TensorBundle(tmp_path / "model.ckpt-7").read("conv1/kernels")
    index = tmp_path / "model.ckpt-7.index"
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(SqueezeDetError, match="not a TensorFlow checkpoint index"):
        TensorBundle(tmp_path / "model.ckpt-7")
    with pytest.raises(SqueezeDetError, match="index not found"):
        TensorBundle(tmp_path / "nothing")


def test_tf_same_layers_give_tensorflows_numbers():
    from squeezedet.models.layers import TFSameConv2d, TFSameMaxPool2d, output_length

    ops = np.load(FIXTURE / "tf_same_ops.npz")
    w = np.load(FIXTURE / "expected.npz")
    conv = TFSameConv2d(3, 4, 3, stride=2)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w["conv1|kernels"]).permute(3, 2, 0, 1))
        conv.bias.copy_(torch.from_numpy(w["conv1|biases"]))
    pool = TFSameMaxPool2d(3, 2)
    for tag in ("even", "odd"):
        x = torch.from_numpy(ops[f"{tag}_input"]).permute(0, 3, 1, 2)
        y = conv(x)
        z = pool(y.relu())
        np.testing.assert_allclose(y.permute(0, 2, 3, 1).detach().numpy(), ops[f"{tag}_conv"],
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(z.permute(0, 2, 3, 1).detach().numpy(), ops[f"{tag}_pool"],
                                   rtol=1e-5, atol=1e-5)
        assert output_length(x.shape[-1], conv, -1) == y.shape[-1]
        assert output_length(y.shape[-2], pool, -2) == z.shape[-2]
    # on even sizes PyTorch's symmetric padding samples elsewhere: the option matters
    x = torch.from_numpy(ops["even_input"]).permute(0, 3, 1, 2)
    sym = torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
    assert sym.shape == conv(x).shape and not torch.allclose(sym, conv(x))


def test_fixture_imported_as_the_original_names_what_does_not_fit():
    with pytest.raises(SqueezeDetError) as err:
        import_weights("original", FIXTURE / "model.ckpt-7", model_name="squeezedet")
    msg = str(err.value)
    assert msg.count("\n") == 0
    assert "wrong shape: conv1/kernels [3, 3, 3, 4] (expected [3, 3, 3, 64])" in msg
    assert "unknown extra/bool, extra/float16" in msg
    assert "Momentum" not in msg and "global_step" not in msg and "iou" not in msg


# --- end to end: source-layout files built from our own weights --------------------------------

def _same_detections(ref, imported_ckpt, tmp_path):
    from squeezedet.inference import Detector

    ref_path = tmp_path / "ref.pt"
    save_checkpoint({"model": ref.state_dict(), "meta": ref.metadata(), "config": {}}, ref_path)
    imp_path = tmp_path / "imported.pt"
    save_checkpoint(imported_ckpt, imp_path)
    image = np.random.default_rng(0).integers(0, 256, (150, 300, 3), dtype=np.uint8)
    a = Detector.from_checkpoint(ref_path, backend="torch", conf=0.0)(image)
    b = Detector.from_checkpoint(imp_path, backend="torch", conf=0.0)(image)
    assert len(a) > 0
    assert torch.equal(a.labels, b.labels) and torch.allclose(a.scores, b.scores)
    assert torch.allclose(a.boxes, b.boxes)
    assert a.class_names == b.class_names == ("Car", "Pedestrian", "Cyclist")


@pytest.mark.parametrize("model_name", ["squeezedet", "squeezedet_plus"])
def test_original_checkpoint_end_to_end(tmp_path, model_name):
    src_size = (1248, 384) if model_name == "squeezedet" else (1242, 375)
    size = SIZE if model_name == "squeezedet" else (160, 96)
    ref = randomised(create_model(model_name, input_size=size, normalization="caffe",
                                  anchor_shapes=scale_anchor_shapes(KITTI_ANCHOR_SHAPES, src_size, size),
                                  padding="tf"))
    write_tf_checkpoint(tmp_path / "model.ckpt-87000", to_original_layout(ref, model_name))
    out = tmp_path / "kitti.pt"
    ckpt = import_weights("original", tmp_path / "model.ckpt-87000", model_name=model_name,
                          out=out, input_size=size)
    meta = load_checkpoint(out)["meta"]
    assert (meta["normalization"], meta["anchor_centers"], meta["padding"]) == (
        "caffe", "original", "tf")
    assert ckpt["config"]["freeze_stem"] is True  # the original kept conv1 frozen
    imported = model_from_checkpoint(out)
    x = torch.rand(1, 3, size[1], size[0]) * 255
    with torch.no_grad():
        assert torch.equal(ref(x), imported(x))
    _same_detections(ref, ckpt, tmp_path)


def test_original_checkpoint_of_the_other_model_gets_a_hint(tmp_path):
    ref = create_model("squeezedet_plus", input_size=(160, 96))
    write_tf_checkpoint(tmp_path / "m", to_original_layout(ref, "squeezedet_plus"))
    with pytest.raises(SqueezeDetError, match="try --model squeezedet_plus"):
        import_weights("original", tmp_path / "m", model_name="squeezedet")


def to_pytorch_port(model) -> dict[str, torch.Tensor]:
    k, c = model.num_anchors, model.num_classes
    out = {}
    for name, value in model.state_dict().items():
        if name.startswith("backbone.extra."):
            i, rest = name.removeprefix("backbone.extra.").split(".", 1)
            key = f"base.features.{13 + int(i)}.{rest}"
        elif name.startswith("convdet."):
            rows = []
            for a in range(k):  # per anchor: C class logits, the confidence, 4 deltas
                rows += [a * c + j for j in range(c)] + [k * c + a]
                rows += [k * c + k + 4 * a + d for d in range(4)]
            value = value[torch.tensor(rows)]
            key = f"base.{name}"
        else:
            key = "base." + name.removeprefix("backbone.")
        out[key] = value.clone()
    return out


def test_pytorch_port_end_to_end(tmp_path):
    ref = randomised(create_model(
        "squeezedet", input_size=SIZE, normalization="kitti", anchor_centers="cell",
        anchor_shapes=scale_anchor_shapes(PORT_ANCHORS, (1248, 384), SIZE)))
    path = tmp_path / "squeezedet_kitti_epoch280.pth"
    torch.save({"epoch": 280, "state_dict": to_pytorch_port(ref)}, path)
    ckpt = import_weights("pytorch-port", path, input_size=SIZE)
    meta = ckpt["meta"]
    assert (meta["normalization"], meta["anchor_centers"], meta["padding"]) == (
        "kitti", "cell", "torch")
    imported = model_from_checkpoint(ckpt)
    # the port's anchors: its shapes, at cell centres (j + 1/2) * W / gw
    gw, gh = imported.grid_size
    a = imported.anchors.view(gh, gw, 9, 4)
    assert torch.allclose((a[0, :, 0, 0] + a[0, :, 0, 2]) / 2, (torch.arange(gw) + 0.5) * SIZE[0] / gw)
    x = torch.rand(1, 3, SIZE[1], SIZE[0]) * 255
    with torch.no_grad():
        assert torch.equal(ref(x), imported(x))
    _same_detections(ref, ckpt, tmp_path)
    # tensor by tensor: the source file's convdet rows, anchor-major, came back in our blocks
    state = torch.load(path, weights_only=True)["state_dict"]
    assert torch.equal(ckpt["model"]["backbone.extra.1.expand3x3.weight"],
                       state["base.features.14.expand3x3.weight"])
    c = 3
    assert torch.equal(ckpt["model"]["convdet.weight"][9 * c + 4],  # anchor 4's confidence
                       state["base.convdet.weight"][4 * (c + 5) + c])


def test_pytorch_port_file_with_missing_and_unknown_keys(tmp_path):
    state = to_pytorch_port(create_model("squeezedet", input_size=SIZE))
    del state["base.features.3.squeeze.weight"]
    state["base.features.15.squeeze.weight"] = torch.zeros(1)
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(SqueezeDetError, match=r"missing features\.3\.squeeze\.weight; unknown "
                                              r"features\.15\.squeeze\.weight"):
        import_weights("pytorch-port", tmp_path / "bad.pth")
    with pytest.raises(SqueezeDetError, match="released SqueezeDet only"):
        import_weights("pytorch-port", tmp_path / "bad.pth", model_name="squeezedet_plus")


def write_keras_h5(path: Path, model, full_model: bool = False) -> None:
    h5py = pytest.importorskip("h5py")
    state = model.state_dict()
    ours_names = ["car", "pedestrian", "cyclist"]
    theirs_names = ["cyclist", "pedestrian", "car"]
    k, c = model.num_anchors, model.num_classes
    cls_rows = [a * c + ours_names.index(theirs_names[j]) for a in range(k) for j in range(c)]
    rows = torch.tensor(cls_rows + list(range(k * c, k * (c + 5))))
    layers = {}
    for ours, theirs in original_layers("squeezedet").items():
        w, b = state[f"{ours}.weight"], state[f"{ours}.bias"]
        if ours == "convdet":
            w, b = w[rows], b[rows]
        keras_name = "conv2d_1" if theirs == "conv1" else theirs
        layers[keras_name] = (w.permute(2, 3, 1, 0).numpy(), b.numpy())
    names = ["input", "conv2d_1", "pool1"] + [n for n in layers if n != "conv2d_1"] + ["drop11"]
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        root.attrs["layer_names"] = [n.encode() for n in names]
        for name in names:
            g = root.create_group(name)
            if name not in layers:
                g.attrs["weight_names"] = []
                continue
            wn = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g.attrs["weight_names"] = wn
            g.create_dataset(wn[0].decode(), data=layers[name][0])
            g.create_dataset(wn[1].decode(), data=layers[name][1])


@pytest.mark.parametrize("full_model", [False, True])
def test_keras_port_end_to_end(tmp_path, full_model):
    ref = randomised(create_model(
        "squeezedet", input_size=SIZE, normalization="per_image", padding="tf",
        anchor_shapes=scale_anchor_shapes(KITTI_ANCHOR_SHAPES, (1248, 384), SIZE)))
    path = tmp_path / "model.h5"
    write_keras_h5(path, ref, full_model)
    ckpt = import_weights("keras-port", path, input_size=SIZE)
    assert (ckpt["meta"]["normalization"], ckpt["meta"]["padding"]) == ("per_image", "tf")
    imported = model_from_checkpoint(ckpt)
    x = torch.rand(1, 3, SIZE[1], SIZE[0]) * 255
    with torch.no_grad():
        assert torch.equal(ref(x), imported(x))
    _same_detections(ref, ckpt, tmp_path)


# --- the new model settings ----------------------------------------------------------------------

def test_cell_anchor_centres_and_the_default():
    shapes = [(10.0, 10.0)]
    cell = make_anchors((4, 2), (64, 32), shapes, centers="cell")
    assert ((cell[:, 0] + cell[:, 2]) / 2).tolist() == [8, 24, 40, 56] * 2
    assert ((cell[:, 1] + cell[:, 3]) / 2).tolist() == [8] * 4 + [24] * 4
    orig = make_anchors((4, 2), (64, 32), shapes)
    assert torch.allclose((orig[:4, 0] + orig[:4, 2]) / 2, torch.arange(1, 5) * 64 / 5)
    with pytest.raises(ValueError):
        make_anchors((4, 2), (64, 32), shapes, centers="middle")


def test_per_image_and_kitti_normalisations():
    img = torch.randint(0, 256, (2, 3, 16, 24), dtype=torch.uint8)
    m = create_model("squeezedet", input_size=(64, 32), normalization="per_image")
    arr = img.numpy().astype(np.float64)
    for i in range(2):
        bgr = arr[i, ::-1]
        want = (bgr - bgr.mean()) / bgr.std()
        np.testing.assert_allclose(m.normalize(img)[i].numpy(), want, rtol=1e-4, atol=1e-4)
    k = create_model("squeezedet", input_size=(64, 32), normalization="kitti")
    want = (arr - np.array([93.877, 98.801, 95.923])[None, :, None, None]) / np.array(
        [78.782, 80.130, 81.200])[None, :, None, None]
    np.testing.assert_allclose(k.normalize(img).numpy(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("settings", [dict(normalization="per_image"), dict(padding="tf")])
def test_banded_inference_keeps_whole_image_semantics(settings):
    # large enough for the banded first stage (>= 250,000 pixels)
    torch.manual_seed(0)
    m = randomised(create_model("squeezedet", input_size=(640, 400), **settings))
    x = torch.randint(0, 256, (1, 3, 400, 640), dtype=torch.uint8)
    with torch.no_grad():
        plain = m(x)
    with torch.inference_mode():
        banded = m(x)
    torch.testing.assert_close(banded, plain, rtol=1e-4, atol=1e-4)


def test_settings_round_trip_through_checkpoints(tmp_path):
    m = create_model("squeezedet", input_size=(128, 64), normalization="kitti",
                     anchor_centers="cell", padding="tf")
    path = tmp_path / "m.pt"
    save_checkpoint({"model": m.state_dict(), "meta": m.metadata(), "config": {}}, path)
    back = model_from_checkpoint(path)
    assert (back.normalization, back.anchor_centers, back.metadata()["padding"]) == (
        "kitti", "cell", "tf")
    assert torch.equal(back.anchors, m.anchors)
    d = create_model("squeezedet", input_size=(128, 64)).metadata()
    assert (d["normalization"], d["anchor_centers"], d["padding"]) == ("torchvision", "original",
                                                                        "torch")
    with pytest.raises(SqueezeDetError, match="padding"):
        create_model("vgg16_convdet", input_size=(128, 64), padding="tf")


# --- the original's ImageNet pickle --------------------------------------------------------------

def py2_pickle(layers: dict[str, list[np.ndarray]]) -> bytes:
    """What Python 2's pickle (protocol 2) writes for a dict of lists of float32 arrays: strings
    as BINSTRING, arrays through numpy.core.multiarray._reconstruct and a BUILD state whose raw
    data is a (byte) string."""
    out = bytearray(b"\x80\x02")

    def string(b: bytes) -> None:
        out.extend((b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<I", len(b))) + b)

    def integer(n: int) -> None:
        out.extend(b"K" + bytes([n]) if n < 256 else b"J" + struct.pack("<i", n))

    def array(a: np.ndarray) -> None:
        out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
        integer(0)
        out.extend(b"\x85")
        string(b"b")
        out.extend(b"\x87R(")
        integer(1)
        out.extend(b"(")
        for d in a.shape:
            integer(d)
        out.extend(b"tcnumpy\ndtype\n")
        string(b"f4")
        out.extend(b"K\x00K\x01\x87R(K\x03")
        string(b"<")
        out.extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")
        string(np.ascontiguousarray(a, dtype="<f4").tobytes())
        out.extend(b"tb")

    out.extend(b"}(")
    for name, blobs in layers.items():
        string(name.encode("latin1"))
        out.extend(b"]")
        if blobs:
            out.extend(b"(")
            for blob in blobs:
                array(blob)
            out.extend(b"e")
    out.extend(b"u.")
    return bytes(out)


def caffe_layers(model_name: str, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """ImageNet SqueezeNet blobs as Caffe holds them ([out, in, H, W]), plus the classifier and
    parameter-less layers."""
    rng = np.random.default_rng(seed)
    state = create_model(model_name, input_size=(128, 64)).state_dict()
    layers: dict[str, list[np.ndarray]] = {"data": [], "relu_conv1": [], "pool1": []}
    for ours, theirs in original_layers(model_name).items():
        if ours.startswith("backbone.extra") or ours == "convdet":
            continue
        w, b = state[f"{ours}.weight"], state[f"{ours}.bias"]
        layers[theirs] = [rng.standard_normal(w.shape).astype(np.float32),
                          rng.standard_normal(b.shape).astype(np.float32)]
    layers["conv10"] = [rng.standard_normal((1000, 512, 1, 1)).astype(np.float32),
                        rng.standard_normal(1000).astype(np.float32)]
    layers["prob"] = []
    return layers


@pytest.mark.parametrize("model_name", ["squeezedet", "squeezedet_plus"])
def test_imagenet_pickle_initialises_the_backbone(tmp_path, model_name):
    layers = caffe_layers(model_name)
    path = tmp_path / "sqz_full.pkl"
    path.write_bytes(py2_pickle(layers))
    with pytest.raises(UnicodeDecodeError):  # what a plain Python 3 load does with it
        pickle.loads(path.read_bytes())
    model = create_model(model_name, input_size=(128, 64), pretrained=str(path),
                         normalization="caffe")
    state = model.state_dict()
    for ours, theirs in original_layers(model_name).items():
        if theirs in layers:
            assert np.array_equal(state[f"{ours}.weight"].numpy(), layers[theirs][0]), theirs
            assert np.array_equal(state[f"{ours}.bias"].numpy(), layers[theirs][1]), theirs
    assert not model.backbone.features[0].weight.requires_grad  # frozen stem, as with ImageNet


def test_imagenet_pickle_written_by_joblib(tmp_path):
    joblib = pytest.importorskip("joblib")
    layers = caffe_layers("squeezedet", seed=1)
    joblib.dump(layers, tmp_path / "squeezenet_v1.1.pkl")
    model = create_model("squeezedet", input_size=(128, 64), normalization="caffe",
                         pretrained=str(tmp_path / "squeezenet_v1.1.pkl"))
    assert np.array_equal(model.backbone.features[11].expand3x3.weight.detach().numpy(),
                          layers["fire8/expand3x3"][0])


def test_imagenet_pickle_problems_are_named(tmp_path):
    layers = caffe_layers("squeezedet")
    del layers["fire4/squeeze1x1"]
    layers["fire2/squeeze1x1"][0] = layers["fire2/squeeze1x1"][0][:8]
    (tmp_path / "bad.pkl").write_bytes(py2_pickle(layers))
    with pytest.raises(SqueezeDetError, match=r"missing fire4/squeeze1x1; wrong shape: "
                                              r"fire2/squeeze1x1 weight \[8, 64, 1, 1\]"):
        create_model("squeezedet", input_size=(128, 64), pretrained=str(tmp_path / "bad.pkl"),
                     normalization="caffe")
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"\x80\x02cos\nsystem\nU\x04trueR.")
    with pytest.raises(SqueezeDetError, match="refusing to load os.system"):
        create_model("squeezedet", input_size=(128, 64), pretrained=str(evil))


# --- the command, and the checkpoint in the other commands -------------------------------------

def test_import_command_then_predict_and_fine_tune(tmp_path, capsys):
    from tiny_data import make_tiny_kitti

    from squeezedet.cli import main

    ref = randomised(create_model("squeezedet", input_size=(128, 64), normalization="kitti",
                                  anchor_centers="cell"))
    torch.save({"epoch": 280, "state_dict": to_pytorch_port(ref)}, tmp_path / "port.pth")
    out = tmp_path / "port.pt"
    assert main(["import-weights", "--from", "pytorch-port", str(tmp_path / "port.pth"),
                 "--out", str(out), "--input-size", "128x64"]) == 0
    assert "normalization=kitti, anchor_centers=cell" in capsys.readouterr().out
    root = make_tiny_kitti(tmp_path / "d", n=2)
    assert main(["predict", "--weights", str(out), "--source",
                 str(root / "training" / "image_2"), "--out", str(tmp_path / "pred"),
                 "--backend", "torch", "--save-kitti"]) == 0
    assert len(list((tmp_path / "pred").rglob("*.txt"))) == 2
    # fine-tuning: the imported settings carry over, the weights are the starting point
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "ft"), "--weights",
                 str(out), "--steps", "1", "--quiet", "batch_size=2", "workers=0"]) == 0
    ft = load_checkpoint(tmp_path / "ft" / "last.pt")
    assert ft["meta"]["anchor_centers"] == "cell" and ft["config"]["weights"] == str(out)
    # resuming a run folder that holds an imported checkpoint: step 0, fresh optimiser
    run = tmp_path / "resume"
    run.mkdir()
    (run / "last.pt").write_bytes(out.read_bytes())
    assert main(["train", "--resume", str(run), "--data", str(root), "--steps", "1", "--quiet",
                 "batch_size=2", "workers=0"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 1
    # unknown source: argparse's message
    with pytest.raises(SystemExit):
        main(["import-weights", "--from", "caffe", "x", "--out", "y.pt"])


def test_exported_imported_model_keeps_the_source_settings(tmp_path):
    pytest.importorskip("onnxruntime")
    from squeezedet.deployment.export import export_model
    from squeezedet.inference import Detector

    ref = randomised(create_model("squeezedet", input_size=SIZE, normalization="kitti",
                                  anchor_centers="cell"))
    torch.save({"epoch": 280, "state_dict": to_pytorch_port(ref)}, tmp_path / "port.pth")
    import_weights("pytorch-port", tmp_path / "port.pth", input_size=SIZE, out=tmp_path / "p.pt")
    result = export_model(tmp_path / "p.pt", "onnx", tmp_path / "p.onnx")  # parity-checked
    import json

    meta = json.loads(result.metadata_path.read_text())
    assert (meta["normalization"], meta["anchor_centers"]) == ("kitti", "cell")
    assert "(j+0.5)*W/gw" in meta["anchors"]
    image = np.random.default_rng(1).integers(0, 256, (96, 192, 3), dtype=np.uint8)
    a = Detector.from_checkpoint(tmp_path / "p.pt", backend="torch", conf=0.0)(image)
    b = Detector.from_checkpoint(tmp_path / "p.onnx", backend="onnxruntime", conf=0.0)(image)
    assert len(a) > 0 and torch.equal(a.labels, b.labels)
    assert torch.allclose(a.boxes, b.boxes, atol=1e-3)
