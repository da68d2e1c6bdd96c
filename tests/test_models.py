import json
import math

import pytest
import torch

import squeezedet
from squeezedet.cli import main
from squeezedet.errors import SqueezeDetError
from squeezedet.models import SqueezeDet
from squeezedet.models.profile import profile_model


@pytest.mark.parametrize(
    "name, params, grid",
    [
        ("squeezedet", 2_082_120, (78, 24)),
        ("squeezedet_plus", 7_021_640, (76, 22)),
        ("vgg16_convdet", 15_046_536, (78, 24)),
    ],
)
def test_parameter_counts_and_grid(name, params, grid):
    model = squeezedet.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.grid_size == grid
    assert model.anchors.shape == (grid[0] * grid[1] * 9, 4)


def test_resnet50_convdet_structure():
    model = squeezedet.create_model("resnet50_convdet")
    assert model.backbone.out_channels == 1024 and model.grid_size == (78, 24)
    # conv4_x ends with 1024 channels; ConvDet 1024 -> 72 (3x3): 1024*72*9 + 72 parameters
    assert sum(p.numel() for p in model.convdet.parameters()) == 1024 * 72 * 9 + 72
    # batch norm is frozen: no batch-norm parameters at all, statistics are buffers
    assert not any("bn" in n for n, _ in model.named_parameters())
    assert model.anchor_shapes[0] == (94.0, 49.0)


def test_list_and_unknown_model():
    assert squeezedet.list_models() == [
        "resnet50_convdet", "squeezedet", "squeezedet_plus", "vgg16_convdet"]
    with pytest.raises(SqueezeDetError, match="did you mean 'squeezedet'"):
        squeezedet.create_model("squeezdet")


def test_grid_follows_input_size_and_classes_follow_head():
    model = squeezedet.create_model("squeezedet", input_size=(624, 192), num_classes=5)
    assert model.grid_size == (39, 12)
    out = model.eval()(torch.zeros(1, 3, 192, 624))
    assert out.shape == (1, 9 * (5 + 1 + 4), 12, 39)
    # default anchors scale with the input: (36, 37) at 1248x384 -> (18, 18.5)
    assert model.anchor_shapes[0] == (18.0, 18.5)
    plus = squeezedet.create_model("squeezedet_plus", input_size=(621, 187))
    assert plus.grid_size == (37, 10)  # no padding, floor pools: 305x91 -> 152x45 -> 75x22 -> 37x10


@pytest.mark.parametrize("name", ["squeezedet", "squeezedet_plus", "vgg16_convdet", "resnet50_convdet"])
@pytest.mark.parametrize("size", [(97, 61), (130, 45), (75, 53)])
def test_grid_arithmetic_matches_a_real_forward(name, size):
    # odd sizes exercise ceil-mode pools (last window must start inside the input) and floor convs
    model = squeezedet.create_model(name, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size[1], size[0]))
    assert model.grid_size == (out.shape[-1], out.shape[-2])


@pytest.mark.parametrize("name", ["squeezedet", "squeezedet_plus"])
@pytest.mark.parametrize("size", [(97, 61), (130, 45), (200, 101)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_banded_inference_equals_the_plain_forward(name, size, channels_last, monkeypatch):
    """Banded first stage (each band normalised on its own, written into one preallocated
    result) and the inference Fire path against the plain layer-by-layer forward; uint8 pixels
    give what the same values as floats give."""
    import squeezedet.models.backbones as backbones

    torch.manual_seed(0)
    model = squeezedet.create_model(name, input_size=size).eval()
    pixels = torch.randint(0, 256, (2, 3, size[1], size[0]), dtype=torch.uint8)
    x = pixels.float()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # not inference mode: the plain forward
        plain = model(x)
    calls = []
    real = backbones.banded_forward
    monkeypatch.setattr(backbones, "banded_forward", lambda *a: calls.append(a[2]) or real(*a))
    monkeypatch.setattr(backbones, "BAND_MIN_PIXELS", 1)
    monkeypatch.setattr(backbones, "BAND_PIXELS", 1500)  # 4 to 14 bands, some of them empty
    with torch.inference_mode():
        banded = model(x)
        from_uint8 = model(pixels)
    bands = math.ceil(size[0] * size[1] / 1500)  # about 1500 input pixels per band
    assert calls == [bands, bands]
    torch.testing.assert_close(banded, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(from_uint8, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fire_inference_path_equals_the_training_path(channels_last):
    from squeezedet.models.layers import Fire

    torch.manual_seed(0)
    fire = Fire(8, 4, 6, 10)
    x = torch.randn(2, 8, 5, 7)
    if channels_last:
        fire = fire.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    s = torch.relu(fire.squeeze(x))
    expected = torch.cat((torch.relu(fire.expand1x1(s)), torch.relu(fire.expand3x3(s))), dim=1)
    with torch.no_grad():
        trained_path = fire(x)
    with torch.inference_mode():
        inference_path = fire(x)
    assert inference_path.shape == (2, 16, 5, 7)
    assert inference_path.is_contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(trained_path, expected)
    torch.testing.assert_close(inference_path, expected)


@pytest.mark.parametrize("version, size", [("1.1", (64, 48)), ("1.0", (75, 51))])
def test_relu_after_the_first_pool_gives_the_original_numbers(version, size):
    """conv1 → pool → ReLU (the backbone's order) and conv1 → ReLU → pool (SqueezeNet's) give
    the same outputs and the same gradients, bit for bit: max and ReLU only select and clamp
    values, no arithmetic, and a window whose max is ≤ 0 passes no gradient either way."""
    from torch import nn

    from squeezedet.models.backbones import SqueezeNetBackbone

    torch.manual_seed(0)
    backbone = SqueezeNetBackbone(version)
    conv, pool, relu = backbone.features[:3]
    assert isinstance(conv, nn.Conv2d) and isinstance(pool, nn.MaxPool2d)
    assert isinstance(relu, nn.ReLU)
    x = torch.randn(2, 3, size[1], size[0]) * 50
    grads = []
    for order in ((conv, pool, relu), (conv, nn.ReLU(), pool)):
        conv.zero_grad(set_to_none=True)
        y = nn.Sequential(*order)(x)
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        grads.append((y.detach(), conv.weight.grad.clone(), conv.bias.grad.clone()))
    (y_new, gw_new, gb_new), (y_old, gw_old, gb_old) = grads
    assert (y_old <= 0).any() and (y_old > 0).any()  # both branches of ReLU exercised
    assert torch.equal(y_new, y_old)
    assert torch.equal(gw_new, gw_old) and torch.equal(gb_new, gb_old)


def test_backbone_without_resolution_path_uses_a_meta_run():
    class Halve(torch.nn.Module):
        out_channels = 4

        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, 2).repeat(1, 2, 1, 1)[:, :4]

    model = SqueezeDet(Halve(), num_classes=1, anchor_shapes=[(8, 8)], input_size=(40, 22))
    assert model.grid_size == (20, 11)


def test_head_layout_matches_original_channels():
    model = squeezedet.create_model("squeezedet", input_size=(64, 32), num_classes=3)
    k, c = 9, 3
    out = torch.arange(72 * 2 * 4, dtype=torch.float32).reshape(1, 72, 2, 4)  # gh=2, gw=4
    head = model.split_head(out)
    # anchor index a = (row * gw + col) * K + k; class logit c of anchor k is channel k*C + c
    row, col, kk = 1, 2, 4
    a = (row * 4 + col) * k + kk
    assert head.class_logits[0, a].tolist() == [out[0, kk * c + j, row, col].item() for j in range(c)]
    assert head.conf_logits[0, a].item() == out[0, k * c + kk, row, col].item()
    assert head.deltas[0, a].tolist() == [
        out[0, k * c + k + 4 * kk + j, row, col].item() for j in range(4)]


def test_dropout_only_in_training():
    model = squeezedet.create_model("squeezedet", input_size=(64, 32))
    x = torch.rand(1, 3, 32, 64) * 255
    model.eval()
    assert torch.equal(model(x), model(x))
    assert model.dropout.p == 0.5


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_dropout_drops_p_and_keeps_the_expectation(channels_last):
    from squeezedet.models.layers import FastDropout

    torch.manual_seed(0)
    drop = FastDropout(0.2).train()
    assert drop.keep_levels == 52429  # round(0.8 * 65536)
    x = torch.ones(4, 64, 30, 50)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = drop(x)
    # 384,000 elements: the dropped fraction has sd sqrt(0.2 * 0.8 / 384000) = 6.5e-4
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.2) < 0.004
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 65536 / 52429))  # 1 / keep probability
    assert abs(y.mean().item() - 1.0) < 0.006
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    # seeded by torch's generator: the same seed gives the same mask
    torch.manual_seed(5)
    a = drop(x)
    torch.manual_seed(5)
    assert torch.equal(a, drop(x))
    # dropping is not tied to position: two draws differ
    assert not torch.equal(drop(x) == 0, drop(x) == 0)
    # gradients flow through kept elements only, scaled like the values
    g = x.clone().requires_grad_()
    out = drop(g)
    out.sum().backward()
    assert torch.equal(g.grad, out.detach())  # input all ones: grad = mask / keep = output


def test_fast_dropout_off_in_eval_and_at_zero():
    from squeezedet.models.layers import FastDropout

    x = torch.rand(2, 3, 4, 5)
    assert FastDropout(0.5).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    with pytest.raises(ValueError):
        FastDropout(1.0)


@pytest.mark.parametrize("name", squeezedet.list_models())
def test_backward_gives_finite_gradients_and_respects_freezing(name):
    torch.manual_seed(0)
    model = squeezedet.create_model(name, input_size=(96, 64), freeze_stem=True).train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen, "the original's stem layers are frozen"
    x = torch.rand(2, 3, 64, 96) * 255
    out = model(x)
    (out.float() ** 2).mean().backward()
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None, n
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_freeze_defaults_on_with_pretrained_off_from_scratch(tmp_path):
    scratch = squeezedet.create_model("squeezedet")
    assert all(p.requires_grad for p in scratch.parameters())
    path = tmp_path / "sq11.pth"
    torch.save(_torchvision_layout_squeezenet11(), path)
    pre = squeezedet.create_model("squeezedet", pretrained=path)
    assert not pre.backbone.features[0].weight.requires_grad
    assert pre.backbone.features[3].squeeze.weight.requires_grad


def _torchvision_layout_squeezenet11():
    """A SqueezeNet 1.1 state dict with torchvision's keys, values made up by the test."""
    g = torch.Generator().manual_seed(3)
    sd = {}
    fires = {3: (64, 16, 64), 4: (128, 16, 64), 6: (128, 32, 128), 7: (256, 32, 128),
             9: (256, 48, 192), 10: (384, 48, 192), 11: (384, 64, 256), 12: (512, 64, 256)}
    sd["features.0.weight"] = torch.randn(64, 3, 3, 3, generator=g)
    sd["features.0.bias"] = torch.randn(64, generator=g)
    for i, (cin, s, e) in fires.items():
        sd[f"features.{i}.squeeze.weight"] = torch.randn(s, cin, 1, 1, generator=g)
        sd[f"features.{i}.squeeze.bias"] = torch.randn(s, generator=g)
        sd[f"features.{i}.expand1x1.weight"] = torch.randn(e, s, 1, 1, generator=g)
        sd[f"features.{i}.expand1x1.bias"] = torch.randn(e, generator=g)
        sd[f"features.{i}.expand3x3.weight"] = torch.randn(e, s, 3, 3, generator=g)
        sd[f"features.{i}.expand3x3.bias"] = torch.randn(e, generator=g)
    sd["classifier.1.weight"] = torch.randn(1000, 512, 1, 1, generator=g)
    sd["classifier.1.bias"] = torch.randn(1000, generator=g)
    return sd


def test_pretrained_squeezenet_loads_by_torchvision_keys(tmp_path):
    sd = _torchvision_layout_squeezenet11()
    path = tmp_path / "squeezenet1_1.pth"
    torch.save(sd, path)
    model = squeezedet.create_model("squeezedet", pretrained=path)
    assert torch.equal(model.backbone.features[0].weight, sd["features.0.weight"])
    assert torch.equal(model.backbone.features[12].expand3x3.bias, sd["features.12.expand3x3.bias"])
    # new layers keep the original's N(0, 0.01) initialisation
    assert model.backbone.extra[0].squeeze.weight.std().item() == pytest.approx(0.01, rel=0.1)
    # a checkpoint-style {"state_dict": ...} wrapper works too
    torch.save({"state_dict": sd}, tmp_path / "wrapped.pth")
    squeezedet.create_model("squeezedet", pretrained=tmp_path / "wrapped.pth")


def test_pretrained_errors_are_clear(tmp_path):
    sd = _torchvision_layout_squeezenet11()
    bad_key = dict(sd, **{"features.13.weight": torch.zeros(1)})
    torch.save(bad_key, tmp_path / "extra.pth")
    with pytest.raises(SqueezeDetError, match="unexpected keys.*features.13.weight"):
        squeezedet.create_model("squeezedet", pretrained=tmp_path / "extra.pth")
    missing = {k: v for k, v in sd.items() if not k.startswith("features.12.")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(SqueezeDetError, match="missing.*features.12"):
        squeezedet.create_model("squeezedet", pretrained=tmp_path / "missing.pth")
    with pytest.raises(SqueezeDetError, match="shape"):
        squeezedet.create_model("squeezedet_plus", pretrained=tmp_path / "missing.pth")
    with pytest.raises(SqueezeDetError, match="not found"):
        squeezedet.create_model("squeezedet", pretrained=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(SqueezeDetError, match="not a readable"):
        squeezedet.create_model("squeezedet", pretrained=tmp_path / "junk.pth")


def test_profile_flops_by_hand_for_conv1():
    model = squeezedet.create_model("squeezedet")
    p = profile_model(model)
    # conv1 alone: 2 * (3*3*3) * 64 * 192 * 624 FLOPs; the whole net is ~10 G (paper: 9.7-10.7 G)
    assert 9.7 < p.gflops < 10.7
    assert p.size_mb == pytest.approx(2_082_120 * 4 / 2**20)  # the paper's 7.9 MB
    assert round(p.size_mb, 1) == 7.9


def test_info_cli_json(capsys):
    assert main(["info", "--model", "squeezedet", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 2_082_120
    assert info["grid"] == [78, 24] and info["anchors"] == 16848
    assert set(info) >= {"params", "size_mb", "gflops", "grid", "anchors"}
    assert main(["info", "--model", "squeezedet", "--input-size", "624x192", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["grid"] == [39, 12]
    assert main(["info", "--input-size", "12by5"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_input_too_small_for_the_backbone_is_a_clear_error():
    # squeezedet_plus heights: 33 -> conv 7/2 -> 14 -> pools -> 6 -> 2 -> 0
    with pytest.raises(ValueError, match="64x33 is too small for squeezedet_plus"):
        squeezedet.create_model("squeezedet_plus", input_size=(64, 33))
