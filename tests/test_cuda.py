"""The GPU paths: mixed-precision training (bf16, and fp16 with a gradient scaler), checkpoints
that load on a CPU-only machine, bit-exact resume with ``deterministic=true``, and inference that
agrees with the CPU. Skipped where PyTorch sees no CUDA GPU (CI has none)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_data import make_tiny_kitti

from squeezedet.checkpoint import load_checkpoint, model_from_checkpoint
from squeezedet.config import TrainConfig
from squeezedet.engine import mixed_precision, resolve_device
from squeezedet.errors import SqueezeDetError
from squeezedet.inference import Detector
from squeezedet.train import train

SMALL = dict(recipe="paper", input_size=(128, 64), batch_size=2, workers=0, log_every=1, checkpoint_every=2,
             device="cuda")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_asking_for_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SqueezeDetError, match="no CUDA GPU.*choose cpu or auto"):
        resolve_device("cuda")
    with pytest.raises(SqueezeDetError, match="unknown device 'gpu'"):
        resolve_device("gpu")


@needs_cuda
def test_cuda_training_learns_and_its_checkpoint_loads_on_the_cpu(tmp_path):
    root = make_tiny_kitti(tmp_path / "d", n=4)
    cfg = TrainConfig(steps=60, optimizer="adamw", lr=1e-3, warmup_steps=5, **SMALL)
    assert mixed_precision(torch.device("cuda"), cfg.amp, training=True) == (
        "bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    train(cfg, root, tmp_path / "run", progress=False)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("loss_total")]) for r in rows[1:]]
    assert len(losses) == 60
    # overfitting four images: the loss of the last five steps is well below the first five's
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())
    model = model_from_checkpoint(ckpt).eval()  # a CPU model from a GPU run
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 128))
    assert torch.isfinite(out).all()


@needs_cuda
def test_fp16_training_with_a_gradient_scaler_resumes(tmp_path, monkeypatch):
    """GPUs without bf16 train in fp16 with a GradScaler, whose state is checkpointed."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    root = make_tiny_kitti(tmp_path / "d", n=4)
    assert mixed_precision(torch.device("cuda"), True, training=True) == "float16"
    train(TrainConfig(steps=4, **SMALL), root, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["scaler"] is not None and ckpt["scaler"]["scale"] > 0
    result = train(TrainConfig(steps=6, **SMALL), root, tmp_path / "run", resume=True,
                   progress=False)
    assert result.step == 6
    weights = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


@needs_cuda
def test_deterministic_cuda_resume_gives_identical_weights(tmp_path):
    """With deterministic=true a GPU run stopped at step 4 and resumed to 8 ends with the same
    weights as an uninterrupted run (each run in its own process, as a user would run them)."""
    root = make_tiny_kitti(tmp_path / "d", n=6)
    args = ["--data", str(root), "--input-size", "128x64", "--batch-size", "2", "--quiet",
            "workers=0", "checkpoint_every=2", "val_max_images=2", "device=cuda",
            "deterministic=true"]
    cli = [sys.executable, "-m", "squeezedet.cli", "train"]
    env = dict(os.environ)

    def run(out, steps):
        subprocess.run([*cli, "--out", str(tmp_path / out), "--steps", str(steps), *args],
                       env=env, check=True, stdout=subprocess.DEVNULL)

    run("full", 8)
    run("split", 4)
    subprocess.run([*cli, "--resume", str(tmp_path / "split"), "--steps", "8", "--quiet"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 8
    assert all(torch.equal(a[k], b[k]) for k in a)


@needs_cuda
def test_cuda_inference_agrees_with_the_cpu(tmp_path):
    root = make_tiny_kitti(tmp_path / "d", n=4)
    train(TrainConfig(steps=30, optimizer="adamw", lr=1e-3, **SMALL), root, tmp_path / "run",
          progress=False)
    images = sorted((root / "training" / "image_2").glob("*.png"))
    ckpt = tmp_path / "run" / "best.pt"
    on_cpu = Detector.from_checkpoint(ckpt, device="cpu", backend="torch", conf=0.0)
    on_gpu = Detector.from_checkpoint(ckpt, device="cuda", backend="torch", conf=0.0)
    # the raw network output: fp32 on both (cuDNN may use TF32, ~1e-3 relative)
    x = on_cpu.preprocess([np.asarray(Image.open(p).convert("RGB")) for p in images])
    a, b = on_cpu.runner(x), on_gpu.runner(x.cuda()).cpu()
    assert torch.allclose(a, b, rtol=1e-2, atol=1e-2 * float(a.abs().max()))
    for c, g in zip(on_cpu(images), on_gpu(images), strict=True):
        assert g.boxes.device.type == "cpu"  # results come back to the host
        # the best detection: same class, score and box within TF32's error
        assert len(c.scores) > 0 and len(g.scores) > 0
        assert abs(float(c.scores[0]) - float(g.scores[0])) < 1e-2
        assert int(c.labels[0]) == int(g.labels[0])
        assert torch.allclose(c.boxes[0], g.boxes[0], atol=0.5)
