"""Training driver: smoke run, outputs, resume, non-finite loss, configuration errors."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tiny_data import make_tiny_kitti

from squeezedet.checkpoint import load_checkpoint, model_from_checkpoint
from squeezedet.cli import main
from squeezedet.config import TrainConfig, load_config
from squeezedet.engine import learning_rate
from squeezedet.errors import NonFiniteLossError, SqueezeDetError
from squeezedet.train import resume, train

SMALL = dict(recipe="paper", input_size=(128, 64), batch_size=2, workers=0, log_every=1, checkpoint_every=2)


def test_two_step_cpu_smoke_run(tmp_path):
    root = make_tiny_kitti(tmp_path / "d", n=4)
    cfg = TrainConfig(steps=2, **SMALL)
    result = train(cfg, root, tmp_path / "run", progress=False)
    assert result.step == 2
    run = tmp_path / "run"
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv", "val.csv", "metrics.json"):
        assert (run / name).exists(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2"]
    assert {"loss_total", "loss_bbox", "loss_conf", "loss_class", "lr"} <= set(rows[0])
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["AP_R40"]) == {"Car", "Pedestrian", "Cyclist"}
    assert len(list((run / "val_results").glob("*.txt"))) == 4
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 2 and ckpt["meta"]["input_size"] == [128, 64]
    model = model_from_checkpoint(ckpt)
    assert model.grid_size == (8, 4)
    # a second run into the same folder is refused instead of overwriting it
    with pytest.raises(SqueezeDetError, match="--resume"):
        train(cfg, root, run, progress=False)


def record_steps(monkeypatch) -> list[int]:
    """The step index of every ``train_step`` call the training loop makes from now on."""
    import squeezedet.train as train_module

    seen: list[int] = []
    real = train_module.train_step

    def counted(*args, **kwargs):
        seen.append(args[6])
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", counted)
    return seen


def logged_rows(run) -> list[str]:
    """metrics.csv's complete rows as written (a resumed run keeps its earlier rows byte for
    byte: their images/s differ from any rerun's)."""
    text = (run / "metrics.csv").read_text()
    return text[: text.rfind("\n") + 1].splitlines()[1:]  # a killed writer may leave half a row


def test_resume_from_python_continues_at_the_saved_step_with_its_configuration_and_data(
        tmp_path, monkeypatch):
    root = make_tiny_kitti(tmp_path / "d", n=6)
    train(TrainConfig(steps=6, **SMALL), root, tmp_path / "full", progress=False)
    # the same run stopped after 4 steps (checkpoint at step 4), then resumed to 6 as
    # `squeezedet train --resume RUN --steps 6` does: no configuration and no data root given
    # again (the run recorded both)
    split = tmp_path / "split"
    train(TrainConfig(steps=4, **SMALL), root, split, progress=False)
    assert (split / "data_root.txt").read_text() == f"{root.resolve()}\n"
    before = logged_rows(split)
    steps = record_steps(monkeypatch)
    result = resume(split, overrides=["steps=6"], progress=False)
    # it starts at the saved step and runs only the remaining steps
    assert steps == [4, 5] and result.step == 6
    assert logged_rows(split)[:4] == before and len(before) == 4
    assert [int(r.split(",")[0]) for r in logged_rows(split)] == [1, 2, 3, 4, 5, 6]
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(split / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a folder that does not record its data root needs it given
    (split / "data_root.txt").unlink()
    with pytest.raises(SqueezeDetError, match=r"does not record its data root"):
        resume(split, overrides=["steps=8"], progress=False)
    assert steps == [4, 5]


@pytest.mark.slow  # three training processes (17-20 s); the in-process resume tests stay in the default run
def test_kill_and_resume_gives_identical_weights(tmp_path):
    """A real SIGKILL after a checkpoint, then --resume: same weights as an uninterrupted run."""
    root = make_tiny_kitti(tmp_path / "d", n=6)
    args = ["--data", str(root), "--input-size", "128x64", "--batch-size", "2", "--steps", "40",
            "--quiet", "workers=0", "checkpoint_every=5", "log_every=5", "val_max_images=2"]
    # every run in its own, identically configured process: other tests may have changed this
    # process's thread settings, and float sums depend on them. One thread: the 128x64 model is
    # too small to gain from two, and on a busy machine OpenMP's spin-waiting made the three runs
    # 2.5-3x slower with two (80 and 227 s against 32 and 80 s for this test)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cli = [sys.executable, "-m", "squeezedet.cli", "train"]
    subprocess.run([*cli, "--out", str(tmp_path / "full"), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cli, "--out", str(killed), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(killed / "last.pt")["step"]
    assert step < 40, "the run finished before it could be killed"
    # the rows logged up to the saved step (complete before the checkpoint was written)
    saved_rows = [r for r in logged_rows(killed) if int(r.split(",")[0]) <= step]
    assert len(saved_rows) == step // 5 >= 1
    subprocess.run([*cli, "--resume", str(killed), "--quiet"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(killed / "last.pt")
    assert b["step"] == 40
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    rows = list(csv.DictReader((killed / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(5, 41, 5))  # no duplicated log rows
    # the resumed run started at the saved step: the rows before it are the killed run's, kept
    # byte for byte (a run restarted from step 0 would have written them again, other images/s)
    assert logged_rows(killed)[: len(saved_rows)] == saved_rows


def test_non_finite_loss_stops_with_the_step_and_keeps_last_good(tmp_path):
    root = make_tiny_kitti(tmp_path / "d", n=4)
    train(TrainConfig(steps=4, **SMALL), root, tmp_path / "run", progress=False)
    good = load_checkpoint(tmp_path / "run" / "last.pt")
    blow_up = TrainConfig(steps=50, lr=1e12, grad_clip=0.0, momentum=0.0, **SMALL)
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step \d+"):
        train(blow_up, root, tmp_path / "run", resume=True, progress=False)
    kept = load_checkpoint(tmp_path / "run" / "last.pt")
    assert kept["step"] >= 4
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert good["step"] == 4


def test_learning_rate_schedule():
    cfg = TrainConfig(lr=0.01, lr_decay_steps=10_000, lr_decay=0.5)
    assert learning_rate(cfg, 0) == 0.01
    assert learning_rate(cfg, 9_999) == 0.01
    assert learning_rate(cfg, 10_000) == 0.005
    assert learning_rate(cfg, 25_000) == 0.0025
    warm = TrainConfig(lr=0.01, warmup_steps=4)
    assert [learning_rate(warm, s) for s in range(5)] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01])


def test_cosine_schedule_follows_the_fraction_done():
    cfg = TrainConfig(lr=0.01, lr_schedule="cosine", warmup_steps=0)
    # (1 + cos(pi p)) / 2: 1 at the start, 1/2 halfway, (1 + cos(pi/4)) / 2 = 0.853553 at a quarter
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(0.01)
    assert learning_rate(cfg, 10, 0.25) == pytest.approx(0.00853553, abs=1e-8)
    assert learning_rate(cfg, 10, 0.5) == pytest.approx(0.005)
    assert learning_rate(cfg, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(cfg, 10, 1.7) == pytest.approx(0.0, abs=1e-12)  # past the end: stays 0
    warm = TrainConfig(lr=0.01, lr_schedule="cosine", warmup_steps=4)
    assert learning_rate(warm, 1, 0.5) == pytest.approx(0.005 * 2 / 4)
    with pytest.raises(SqueezeDetError, match="lr_schedule must be 'step' or 'cosine'"):
        TrainConfig(lr_schedule="linear")


def test_weight_decay_only_on_kernels():
    import squeezedet
    from squeezedet.engine import make_optimizer

    model = squeezedet.create_model("squeezedet", input_size=(64, 32))
    opt = make_optimizer(model, TrainConfig())
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0
    assert all(p.ndim == 4 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_first_optimiser_step_by_hand(name):
    """The optimiser make_optimizer builds (fused kernels on the CPU) takes the textbook first
    step, clipping per tensor included."""
    from squeezedet.engine import clip_per_tensor, make_optimizer

    conv = torch.nn.Conv2d(1, 2, 1)  # kernel [2,1,1,1] (decayed), bias [2] (not decayed)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([0.5, 0.25]))
    cfg = TrainConfig(optimizer=name, lr=0.1, weight_decay=0.01, momentum=0.9, grad_clip=1.0)
    opt = make_optimizer(conv, cfg)
    conv.weight.grad = torch.tensor([3.0, 4.0]).view(2, 1, 1, 1)  # norm 5: clipped to 0.6, 0.8
    conv.bias.grad = torch.tensor([0.3, -0.4])  # norm 0.5: kept
    clip_per_tensor(list(conv.parameters()), cfg.grad_clip)
    assert conv.weight.grad.flatten().tolist() == pytest.approx([0.6, 0.8], rel=1e-5)
    opt.step()
    if name == "adamw":
        # first Adam step: m̂ = g, v̂ = g², so the update is lr·g/(|g| + 1e-8) = ±lr; decoupled
        # decay first multiplies the kernel by 1 − lr·wd
        weight = [1.0 * (1 - 0.001) - 0.1, -2.0 * (1 - 0.001) - 0.1]
        bias = [0.5 - 0.1, 0.25 + 0.1]
    else:
        # SGD: the first momentum buffer is the gradient (with L2 decay added to the kernel's)
        weight = [1.0 - 0.1 * (0.6 + 0.01 * 1.0), -2.0 - 0.1 * (0.8 + 0.01 * -2.0)]
        bias = [0.5 - 0.1 * 0.3, 0.25 + 0.1 * 0.4]
    assert conv.weight.flatten().tolist() == pytest.approx(weight, rel=1e-5)
    assert conv.bias.tolist() == pytest.approx(bias, rel=1e-5)


def test_config_errors_and_overrides(tmp_path):
    with pytest.raises(SqueezeDetError, match="did you mean 'batch_size'"):
        load_config(overrides=["batchsize=3"])
    with pytest.raises(SqueezeDetError, match="batch_size must be positive"):
        load_config(overrides=["batch_size=0"])
    with pytest.raises(SqueezeDetError, match="dropout"):
        TrainConfig(dropout=1.5)
    f = tmp_path / "c.yaml"
    f.write_text("input_size: [624, 192]\nclasses: [Car]\nlr: 0.001\n")
    cfg = load_config(f, ["lr=0.002"])
    assert cfg.input_size == (624, 192) and cfg.classes == ("Car",) and cfg.lr == 0.002
    f.write_text("lr: [oops\n")
    with pytest.raises(SqueezeDetError, match="not valid YAML"):
        load_config(f)


def test_train_cli_bad_data_names_file_and_line(tmp_path, capsys):
    root = make_tiny_kitti(tmp_path / "d", n=4)
    (root / "training" / "label_2" / "000002.txt").write_text("Car 0 0 0 1 2 3\n")
    code = main(["train", "--data", str(root), "--out", str(tmp_path / "r"), "--steps", "1",
                 "--input-size", "128x64", "--quiet", "workers=0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "000002.txt:1" in err and "Traceback" not in err
    code = main(["train", "--data", str(root), "--out", str(tmp_path / "r2"), "--steps", "1",
                 "--batch-size", "2", "--input-size", "128x64", "--quiet", "--skip-bad",
                 "workers=0"])
    assert code == 0


def test_weight_ema_by_hand():
    import squeezedet
    from squeezedet.engine import WeightEMA

    model = squeezedet.create_model("squeezedet", input_size=(64, 32))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    ema = WeightEMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    # at step 100 the warm-up factor (101/110) exceeds 0.5, so d = 0.5: 0.5·1 + 0.5·3 = 2
    ema.update(model, 100)
    assert all(torch.allclose(p, torch.full_like(p, 2.0)) for p in ema.model.parameters())
    # at step 0, d = min(0.5, 1/10) = 0.1: 0.1·2 + 0.9·3 = 2.9
    ema.update(model, 0)
    assert all(torch.allclose(p, torch.full_like(p, 2.9)) for p in ema.model.parameters())


def test_resume_with_ema_gives_the_same_averaged_weights(tmp_path, monkeypatch):
    root = make_tiny_kitti(tmp_path / "d", n=6)
    cfg = TrainConfig(steps=6, ema_decay=0.9, **SMALL)
    train(cfg, root, tmp_path / "full", progress=False)
    train(TrainConfig(steps=4, ema_decay=0.9, **SMALL), root, tmp_path / "split", progress=False)
    steps = record_steps(monkeypatch)
    train(cfg, root, tmp_path / "split", resume=True, progress=False)
    assert steps == [4, 5]  # from the saved step, the remaining steps only
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("model", "train_model"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    # the averaged weights differ from the raw ones the optimiser produced
    assert not all(torch.equal(a["model"][k], a["train_model"][k]) for k in a["model"])


def test_training_on_crops_keeps_the_model_at_the_input_size(tmp_path):
    from squeezedet.models import create_model
    from squeezedet.ops.anchors import make_anchors

    # the anchors of a crop are those of the crop's own grid, the same shapes
    model = create_model("squeezedet", input_size=(128, 64), num_classes=3)
    assert model.anchors_for((128, 64)) is model.anchors
    crop_anchors = model.anchors_for((96, 48))
    grid = (6, 3)  # SqueezeDet's stride 16: 96/16, 48/16
    assert model.compute_grid_size((96, 48)) == grid
    expected = make_anchors(grid, (96, 48), model.anchor_shapes, centers=model.anchor_centers)
    torch.testing.assert_close(crop_anchors, expected, rtol=0, atol=0)
    assert crop_anchors.shape == (grid[0] * grid[1] * 9, 4)

    root = make_tiny_kitti(tmp_path / "d", n=4)
    cfg = TrainConfig(steps=2, crop=(96, 48), **SMALL)
    result = train(cfg, root, tmp_path / "run", progress=False)
    assert result.step == 2
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["meta"]["input_size"] == [128, 64]  # validated and saved at the input size
    assert ckpt["config"]["crop"] == [96, 48]
    with pytest.raises(SqueezeDetError, match="crop 200x48 must fit in input_size 128x64"):
        TrainConfig(crop=(200, 48), **SMALL)
    with pytest.raises(SqueezeDetError, match="crop 1300x48 must fit in the input size 1248x384"):
        train(TrainConfig(steps=1, crop=(1300, 48)), root, tmp_path / "run2", progress=False)


def test_squeeze_bn_folds_into_the_convolution_by_hand():
    from torch import nn

    from squeezedet.models.layers import Fire, add_squeeze_bn, fold_squeeze_bn, has_squeeze_bn

    fire = Fire(2, 2, 1, 1)
    assert add_squeeze_bn(fire) == 1 and has_squeeze_bn(fire)
    with torch.no_grad():
        fire.squeeze.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.5]]).view(2, 2, 1, 1))
        fire.squeeze.bias.copy_(torch.tensor([0.5, -1.0]))
        bn = fire.squeeze_bn
        bn.running_mean.copy_(torch.tensor([1.5, 2.0]))
        bn.running_var.copy_(torch.tensor([4.0 - bn.eps, 0.25 - bn.eps]))  # σ = 2 and 0.5
        bn.weight.copy_(torch.tensor([3.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.25, 1.0]))
    fold_squeeze_bn(fire)
    assert fire.squeeze_bn is None and not has_squeeze_bn(fire)
    # channel 0: scale 3/2 = 1.5: W = [1.5, 3], b = (0.5 − 1.5)·1.5 + 0.25 = −1.25
    # channel 1: scale −1/0.5 = −2: W = [2, −1], b = (−1 − 2)·(−2) + 1 = 7
    torch.testing.assert_close(fire.squeeze.weight.view(2, 2),
                               torch.tensor([[1.5, 3.0], [2.0, -1.0]]))
    torch.testing.assert_close(fire.squeeze.bias, torch.tensor([-1.25, 7.0]))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fire.modules())


def test_folded_model_computes_what_the_eval_mode_model_did():
    import copy

    import squeezedet
    from squeezedet.models.layers import add_squeeze_bn, fold_squeeze_bn

    torch.manual_seed(0)
    model = squeezedet.create_model("squeezedet", input_size=(128, 64), num_classes=3)
    assert add_squeeze_bn(model) == 10  # fire2 … fire11
    model.train()
    x = torch.rand(4, 3, 64, 128) * 255
    with torch.no_grad():
        for _ in range(3):  # running statistics that are not the defaults
            model(x)
    model.eval()
    folded = fold_squeeze_bn(copy.deepcopy(model))
    with torch.no_grad():
        a, b = model(x), folded(x)
    # float32 rounding of two equal computations: relative ~1e-6 of the outputs' magnitude
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    assert set(folded.state_dict()) == set(
        squeezedet.create_model("squeezedet", input_size=(128, 64), num_classes=3).state_dict())


def test_squeeze_bn_run_saves_squeezedet_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    root = make_tiny_kitti(tmp_path / "d", n=6)
    cfg = TrainConfig(steps=6, ema_decay=0.9, squeeze_bn=True, **SMALL)
    train(cfg, root, tmp_path / "full", progress=False)
    train(TrainConfig(steps=4, ema_decay=0.9, squeeze_bn=True, **SMALL), root,
          tmp_path / "split", progress=False)
    steps = record_steps(monkeypatch)
    train(cfg, root, tmp_path / "split", resume=True, progress=False)
    assert steps == [4, 5]  # from the saved step, the remaining steps only
    monkeypatch.undo()
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("model", "train_model", "train_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    # what is saved to predict with is SqueezeDet's architecture; the training state has the norms
    assert not any("squeeze_bn" in k for k in a["model"])
    assert any("squeeze_bn" in k for k in a["train_model"])
    model = model_from_checkpoint(a)  # loads strictly: no key missing or left over
    assert set(model.state_dict()) == set(a["model"])
    # resuming with the setting flipped: one line naming the file, not torch's missing keys
    with pytest.raises(SqueezeDetError, match=r"last\.pt was trained with squeeze_bn=true, "
                       r"this run has squeeze_bn=false"):
        train(TrainConfig(steps=8, ema_decay=0.9, **SMALL), root, tmp_path / "split",
              resume=True, progress=False)
    assert "squeeze_bn: true" in (tmp_path / "split" / "config.yaml").read_text()  # kept
    with pytest.raises(SqueezeDetError, match="no Fire modules"):
        train(TrainConfig(steps=1, model="vgg16_convdet", squeeze_bn=True, **SMALL), root,
              tmp_path / "r50", progress=False)
