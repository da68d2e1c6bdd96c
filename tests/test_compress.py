"""Compression: the .sqz codec (bit-exact round trip), magnitude pruning, fine-tuning keeps the
sparsity, and a compressed checkpoint loads wherever a .pt does."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_data import make_tiny_kitti

from squeezedet import codec, weight_sharing
from squeezedet.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from squeezedet.cli import main
from squeezedet.compress import (
    CompressSettings,
    compress_checkpoint,
    magnitude_masks,
    prunable,
    prune_state_dict,
    ramp_sparsity,
    sparsity_of,
)
from squeezedet.config import TrainConfig
from squeezedet.errors import SqueezeDetError
from squeezedet.models import create_model


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def smallest_zeroed(t: torch.Tensor, share: float) -> torch.Tensor:
    """``t`` with its ``round(share·n)`` smallest magnitudes set to zero, by sorting (random
    weights have no ties): pruning's rule worked out apart from the code under test."""
    flat = t.flatten().clone()
    flat[torch.argsort(flat.abs())[: round(share * flat.numel())]] = 0
    return flat.view(t.shape)


def test_runs_encode_by_hand():
    mask = np.zeros(310, dtype=bool)
    mask[[2, 3, 300]] = True
    # 2 zeros then an entry; no zeros then an entry; 296 zeros = one 255-fill + 41, then an entry
    tokens = codec.runs_encode(mask)
    assert tokens.tolist() == [2, 0, 255, 41]
    assert np.array_equal(codec.runs_decode(tokens, 310), mask)
    assert codec.runs_encode(np.zeros(5, bool)).size == 0
    with pytest.raises(SqueezeDetError, match="past the end"):
        codec.runs_decode(np.array([9], np.uint8), 5)


def test_kmeans_small_cases_by_hand():
    # three distinct values and room for four: stored exactly
    assert weight_sharing.kmeans_1d(np.array([0.5, -1.0, 0.5, 2.0]), 4).tolist() == [-1.0, 0.5, 2.0]
    # two clear clusters: the centroids are their means
    v = np.array([1.0, 1.2, 1.4, 10.0, 10.5, 11.0])
    assert weight_sharing.kmeans_1d(v, 2) == pytest.approx([1.2, 10.5])
    # uniform: evenly spaced from min to max
    assert weight_sharing.uniform_levels(np.array([-1.0, 0.1, 0.2, 3.0]), 3).tolist() == [-1.0, 1.0, 3.0]


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {
        "conv.weight": torch.randn(32, 16, 3, 3, generator=g),
        "conv.bias": torch.randn(32, generator=g),
        "fc.weight": torch.randn(64, 40, generator=g) * 1e-3,
        "tiny.weight": torch.randn(4, 4, generator=g),           # < min_numel: stored exactly
        "steps": torch.tensor(12345, dtype=torch.int64),
        "half": torch.randn(3, 5, generator=g).to(torch.bfloat16),
    }
    return prune_state_dict(state, 0.6, min_numel=1024)


@pytest.mark.parametrize("entropy,positions", [("lzma", "bitmap"), ("zlib", "runs"),
                                               ("none", "auto"), ("lzma", "auto")])
@pytest.mark.parametrize("quantizer", ["kmeans", "uniform"])
def test_codec_round_trip_is_bit_exact(entropy, positions, quantizer):
    state = _random_state()
    settings = codec.CodecSettings(bits=4, quantizer=quantizer, entropy=entropy, positions=positions)
    data, size = codec.encode_state_dict(state, settings, {"meta": {"model": "x"}})
    assert size.total == len(data) and data[:8] == codec.MAGIC
    decoded, header = codec.decode(data)
    assert header["meta"] == {"model": "x"} and header["codec"]["bits"] == 4
    assert list(decoded) == list(state)
    for name in ("conv.weight", "fc.weight"):
        mask, cb, idx = weight_sharing.quantize_tensor(state[name], 4, quantizer)
        assert cb.size <= 16 and np.all(np.diff(cb) > 0)
        # the decoded tensor is the stored codebook values at the stored positions, bit for bit
        expect = np.zeros(mask.size, np.float32)
        expect[mask] = cb[idx]
        assert torch.equal(_bits(decoded[name]).flatten(),
                           torch.from_numpy(expect).view(torch.int32))
        # zeros stay exactly where pruning put them
        assert torch.equal(decoded[name] == 0, state[name] == 0)
        assert len(torch.unique(decoded[name])) <= 17  # 16 shared values and 0
    for name in ("conv.bias", "tiny.weight", "steps", "half"):  # stored as they are
        assert decoded[name].dtype == state[name].dtype
        assert torch.equal(decoded[name], state[name])
    # what was decoded has at most 2^bits values per tensor: encoding it again loses nothing
    again, _ = codec.decode(codec.encode_state_dict(decoded, settings)[0])
    assert all(torch.equal(_bits(again[k].float()), _bits(decoded[k].float())) for k in decoded)


def test_quantize_state_dict_matches_decode():
    state = _random_state(1)
    settings = codec.CodecSettings(bits=3)
    decoded, _ = codec.decode(codec.encode_state_dict(state, settings)[0])
    expected = codec.quantize_state_dict(state, settings)
    assert all(torch.equal(decoded[k], expected[k]) for k in state)


def test_kmeans_error_is_smaller_than_uniform():
    w = prune_state_dict({"w": torch.randn(64, 64, 3, 3)}, 0.7)["w"]
    err = {}
    for q in ("kmeans", "uniform"):
        out = codec.quantize_state_dict({"w": w}, codec.CodecSettings(bits=4, quantizer=q))["w"]
        err[q] = float(((out - w) ** 2).mean())
    assert err["kmeans"] < err["uniform"]


def test_corrupt_files_give_one_line_errors(tmp_path):
    data, _ = codec.encode_state_dict(_random_state(), codec.CodecSettings())
    bad = tmp_path / "cut.sqz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SqueezeDetError, match="cut.sqz"):
        codec.read_encoded(bad)
    with pytest.raises(SqueezeDetError, match="wrong magic"):
        codec.decode(b"not a file at all")
    with pytest.raises(SqueezeDetError, match="bits"):
        codec.CodecSettings(bits=9)


def test_magnitude_masks_drop_the_smallest():
    t = torch.tensor([[0.5, -0.1, 3.0, -2.0, 0.05, 1.0, -0.7, 0.2, 0.3, -4.0]])
    mask = magnitude_masks({"w": t}, 0.4, ["w"])["w"]
    # the 4 smallest magnitudes: 0.05, -0.1, 0.2, 0.3
    assert mask.tolist() == [[True, False, True, True, False, True, True, False, False, True]]
    w = torch.randn(100, 10, 3, 3)
    pruned = prune_state_dict({"w": w, "b": torch.randn(100)}, 0.73)
    assert int((pruned["w"] == 0).sum()) == 6570  # round(0.73 * 9000)
    assert int((pruned["b"] == 0).sum()) == 0      # biases are not pruned
    kept = pruned["w"][pruned["w"] != 0].abs().min()
    assert kept >= w.abs().flatten().kthvalue(6570).values


def test_ramp_sparsity_schedule():
    assert ramp_sparsity(0, 100, 0.8) == 0.0
    assert ramp_sparsity(50, 100, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))
    assert ramp_sparsity(100, 100, 0.8) == 0.8
    assert ramp_sparsity(500, 100, 0.8) == 0.8


SIZE = (128, 64)


def _checkpoint(tmp_path, seed=0):
    torch.manual_seed(seed)
    model = create_model("squeezedet", input_size=SIZE, num_classes=3,
                         class_names=("Car", "Pedestrian", "Cyclist"))
    for p in model.parameters():  # a trained-looking spread instead of ConvDet's tiny init
        torch.nn.init.normal_(p, std=0.05)
    cfg = TrainConfig(input_size=SIZE, batch_size=2, workers=0, optimizer="adamw", lr=1e-3,
                      ema_decay=0.9)
    path = tmp_path / "model.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(),
                     "config": cfg.to_dict()}, path)
    return path, model


LEVELS = torch.tensor([-0.08, -0.07, -0.06, -0.05, -0.04, -0.03, -0.02, -0.01,
                       0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08])  # 16: 4 bits


def _planted_checkpoint(tmp_path, sparsity: float):
    """A checkpoint whose compression is known before compressing, from the module docstring's
    rules alone: in every convolution kernel of at least 1,024 weights but the first (on the
    image), ``round(sparsity·n)`` weights of magnitude below 1e-3 at random places and the rest
    from the 16 :data:`LEVELS`; the first convolution from the 16 levels too; biases random.
    Pruning at ``sparsity`` then drops exactly the small weights, and 4-bit sharing (at most 16
    values per kernel) keeps every other weight exactly. Returns the checkpoint's path and the
    weights it must compress to: the planted ones with the small weights zeroed."""
    g = torch.Generator().manual_seed(0)
    model = create_model("squeezedet", input_size=SIZE, num_classes=3,
                         class_names=("Car", "Pedestrian", "Cyclist"))
    expected = {}
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dim() == 4 and t.numel() >= 1024:  # a kernel that is weight-shared
                flat = LEVELS[torch.randint(16, (t.numel(),), generator=g)]
                want = flat.clone()
                if t.shape[1] > 3:  # not on the image: pruned
                    small = torch.randperm(t.numel(), generator=g)[: round(sparsity * t.numel())]
                    sign = torch.randint(2, small.shape, generator=g) * 2.0 - 1.0
                    flat[small] = sign * (torch.rand(small.shape, generator=g) * 0.9 + 0.05) * 1e-3
                    want[small] = 0.0
                t.copy_(flat.view(t.shape))
                expected[name] = want.view(t.shape)
            else:  # biases: too small to share, stored exactly
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)
                expected[name] = t.clone()
    path = tmp_path / "planted.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(),
                     "config": TrainConfig(input_size=SIZE).to_dict()}, path)
    return path, model, expected


def test_compressed_checkpoint_loads_and_computes_with_the_dequantised_weights(tmp_path):
    path, model, expected = _planted_checkpoint(tmp_path, 0.6)
    settings = CompressSettings(sparsity=0.6, bits=4)
    result = compress_checkpoint(path, tmp_path / "model.sqz", settings, progress=False)
    assert result.path.stat().st_size == result.bytes
    assert result.bytes < result.fp32_bytes / 8
    pruned = [k for k, v in expected.items() if v.dim() == 4 and v.shape[1] > 3]
    zeros = sum(int((expected[k] == 0).sum()) for k in pruned)
    assert result.sparsity == zeros / sum(expected[k].numel() for k in pruned)
    assert result.sparsity == pytest.approx(0.6, abs=1e-4)
    ckpt = load_checkpoint(result.path)
    assert ckpt["meta"] == model.metadata() and ckpt["compression"]["bits"] == 4
    # the weights worked out above, bit for bit: the small ones gone, every other one kept
    assert ckpt["model"].keys() == expected.keys()
    for name, want in expected.items():
        assert torch.equal(_bits(ckpt["model"][name]), _bits(want)), name
    loaded = model_from_checkpoint(result.path)
    reference = create_model("squeezedet", input_size=SIZE, num_classes=3,
                             class_names=("Car", "Pedestrian", "Cyclist")).eval()
    reference.load_state_dict(expected)
    x = torch.rand(2, 3, SIZE[1], SIZE[0]) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x))
    # the Detector and the runtime accept it like a .pt
    from squeezedet.inference import Detector

    det = Detector.from_checkpoint(result.path, backend="torch")
    assert det.class_names == ("Car", "Pedestrian", "Cyclist")
    out = det(np.zeros((64, 128, 3), np.uint8))
    assert out.boxes.shape[-1] == 4


@pytest.mark.slow  # ~8 s of CPU: three training steps, and torch's optimiser imports dynamo
def test_fine_tuning_keeps_the_requested_sparsity(tmp_path):
    path, _ = _checkpoint(tmp_path)
    root = make_tiny_kitti(tmp_path / "data", n=4, size=SIZE)
    settings = CompressSettings(sparsity=0.75, bits=5, steps=3, ramp=0.5, entropy="zlib")
    result = compress_checkpoint(path, tmp_path / "ft.sqz", settings, data_root=root, progress=False)
    state = load_checkpoint(result.path)["model"]
    names = prunable(state)
    assert names and result.sparsity == pytest.approx(0.75, abs=1e-4)
    for name in names:  # every pruned kernel holds its share, not only the total
        n = state[name].numel()
        assert int((state[name] == 0).sum()) == round(0.75 * n), name
    assert sparsity_of(state, names) == pytest.approx(0.75, abs=1e-4)
    # the fine-tuned weights differ from one-shot pruning of the original
    original = load_checkpoint(path)["model"]
    one_shot = {k: smallest_zeroed(original[k], 0.75) for k in (names[0], names[-1])}
    assert not torch.equal(state[names[0]] != 0, one_shot[names[0]] != 0) or not torch.allclose(
        state[names[-1]], one_shot[names[-1]])


def test_compress_cli(tmp_path, capsys):
    path, _ = _checkpoint(tmp_path)
    out = tmp_path / "c.sqz"
    assert main(["compress", "--weights", str(path), "--out", str(out), "--bits", "4",
                 "--sparsity", "0.5", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bytes"] == out.stat().st_size and report["sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert main(["compress", "--weights", str(path), "--out", str(tmp_path / "c.pt")]) == 2
    assert ".sqz" in capsys.readouterr().err
    assert main(["compress", "--weights", str(path), "--out", str(out), "--sparsity", "1.5"]) == 2
    assert main(["compress", "--weights", str(path), "--out", str(out), "--steps", "5"]) == 2
    assert "--data" in capsys.readouterr().err


@pytest.mark.slow  # ~8 s of CPU: training steps
def test_trained_weight_sharing_keeps_shared_values_and_zeros(tmp_path):
    path, _ = _checkpoint(tmp_path)
    root = make_tiny_kitti(tmp_path / "data", n=4, size=SIZE)
    settings = CompressSettings(sparsity=0.6, bits=3, share_steps=2, entropy="zlib")
    result = compress_checkpoint(path, tmp_path / "s.sqz", settings, data_root=root, progress=False)
    state = load_checkpoint(result.path)["model"]
    original = load_checkpoint(path)["model"]
    untrained = compress_checkpoint(path, tmp_path / "u.sqz", replace(settings, share_steps=0),
                                    progress=False)
    one_shot = load_checkpoint(untrained.path)["model"]
    moved = False
    for name in prunable(state):
        values = torch.unique(state[name][state[name] != 0])
        assert values.numel() <= 8, name                               # 2^3 shared values
        # zeros stay where one-shot pruning put them: the 60 % smallest magnitudes
        assert torch.equal(state[name] == 0, smallest_zeroed(original[name], 0.6) == 0), name
        moved |= not torch.equal(state[name], one_shot[name])
    assert moved  # training moved the shared values


def test_layer_bits_parse_and_match():
    from squeezedet.compress import SENSITIVE_LAYER_BITS, parse_layer_bits

    assert parse_layer_bits("auto") == SENSITIVE_LAYER_BITS
    assert parse_layer_bits("none") == () and parse_layer_bits("") == ()
    pairs = parse_layer_bits("convdet.*=6, *.squeeze.*=5")
    assert pairs == (("convdet.*", 6), ("*.squeeze.*", 5))
    with pytest.raises(SqueezeDetError, match="GLOB=BITS"):
        parse_layer_bits("convdet.*")
    with pytest.raises(SqueezeDetError, match="between 1 and 8"):
        codec.CodecSettings(layer_bits=(("convdet.*", 9),))
    settings = codec.CodecSettings(bits=4, layer_bits=(("convdet.*", 6), ("*.squeeze.*", 5),
                                                       ("*squeeze*", 2)))
    assert settings.bits_for("convdet.weight") == 6
    assert settings.bits_for("backbone.features.3.squeeze.weight") == 5  # the first match counts
    assert settings.bits_for("backbone.features.3.expand3x3.weight") == 4
    assert settings.max_bits == 6


@pytest.mark.parametrize("entropy", ["lzma", "none"])
def test_layer_bits_round_trip(tmp_path, entropy):
    """Tensors matched by layer_bits get their own number of shared values; the file decodes
    bit for bit to the dequantised weights, also when the indices are packed (entropy none)."""
    _, model = _checkpoint(tmp_path)
    state = model.state_dict()
    settings = codec.CodecSettings(bits=3, entropy=entropy, layer_bits=(("convdet.*", 6),))
    data, _ = codec.encode_state_dict(state, settings)
    decoded, _ = codec.decode(data)
    expected = codec.quantize_state_dict(state, settings)
    for name, t in decoded.items():
        assert torch.equal(_bits(t), _bits(expected[name])), name
    # random normal weights fill every level: 64 values in ConvDet, 8 in the 3-bit kernels
    assert torch.unique(decoded["convdet.weight"]).numel() == 64
    name = "backbone.features.3.expand3x3.weight"
    assert torch.unique(decoded[name]).numel() == 8
    assert json.loads(json.dumps(settings.layer_bits)) == [["convdet.*", 6]]


def test_compress_cli_default_recipe(tmp_path, capsys):
    """Without options: no pruning, 4-bit sharing with the sensitive layers wider, no fine-tuning
    without data."""
    path, _ = _checkpoint(tmp_path)
    out = tmp_path / "d.sqz"
    assert main(["compress", "--weights", str(path), "--out", str(out), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    s = report["settings"]
    assert s["sparsity"] == 0.0 and s["bits"] == 4 and s["steps"] == 0 and s["share_steps"] == 0
    assert [tuple(p) for p in s["layer_bits"]] == [("backbone.features.0.*", 8), ("convdet.*", 6),
                                                  ("*.squeeze.*", 5), ("*.expand1x1.*", 5)]
    state = load_checkpoint(out)["model"]
    assert torch.unique(state["convdet.weight"]).numel() == 64
    assert torch.unique(state["backbone.features.3.squeeze.weight"]).numel() <= 32
    assert torch.unique(state["backbone.features.3.expand3x3.weight"]).numel() == 16
    assert main(["compress", "--weights", str(path), "--out", str(out), "--layer-bits", "x"]) == 2
    assert "GLOB=BITS" in capsys.readouterr().err


@pytest.mark.parametrize(("run", "decay"), [
    ({"ema_decay": 0.999}, 0.95),  # the run's decay, its horizon cut to a tenth of 200 steps
    ({"ema_decay": 0.9}, 0.9),  # already shorter: kept
    ({"ema_fraction": 0.05, "warmup_fraction": 0.05}, 0.95),  # the small recipe's: a tenth too
    ({}, 0.0),  # the run kept no average: none
])
def test_fine_tuning_averages_the_weights_when_the_run_did(run, decay):
    from squeezedet.compress import _finetune_config

    ckpt = {"config": TrainConfig(lr=1e-3, **run).to_dict(), "meta": {}}
    cfg = _finetune_config(ckpt, CompressSettings(steps=200), 200)
    assert cfg.ema_decay == pytest.approx(decay)  # 1 - 10 / 200 = 0.95
    assert (cfg.ema_fraction, cfg.warmup_fraction, cfg.warmup_steps) == (0.0, 0.0, 0)
    assert cfg.steps == 200 and cfg.lr == pytest.approx(1e-5)
