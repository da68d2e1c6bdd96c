"""Several processes (torchrun's environment, gloo on 127.0.0.1): training and sharded prediction."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from dist_helpers import free_port, launch, stop_resume_worker, train_worker
from tiny_data import make_tiny_kitti

import squeezedet
from squeezedet import distributed
from squeezedet.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from squeezedet.cli import main
from squeezedet.config import TrainConfig
from squeezedet.data.kitti_format import read_kitti_file
from squeezedet.engine import evaluate, loss_from_config
from squeezedet.errors import SqueezeDetError
from squeezedet.ops.matching import build_targets
from squeezedet.train import build_datasets, train

# no dropout (each process draws its own masks); no gradient clipping, which would hide a wrong
# gradient scale; 1 thread like each worker
SMALL = dict(recipe="paper", input_size=(64, 32), workers=0, log_every=1, checkpoint_every=1000, amp=False,
             dropout=0.0, grad_clip=0.0, lr=2e-4, device="cpu", ema_decay=0.9)
SRC = str(Path(squeezedet.__file__).parents[1])
ENV = dict(os.environ, OMP_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))


def close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_shard_gives_every_item_to_exactly_one_rank():
    items = list(range(11))
    shares = [distributed.shard(items, r, 3) for r in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert distributed.shard(items) == items  # a single process keeps everything
    with pytest.raises(ValueError):
        distributed.shard(items, 3, 3)


def test_helpers_without_torchrun_are_a_single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.init_from_env("cpu")  # nothing to join
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.all_reduce([1.5, 2.0], op="max") == [1.5, 2.0]
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    assert distributed.broadcast_object(7) == 7


def test_loss_shares_of_a_split_batch_add_up_to_the_whole_batch_loss(tmp_path):
    """What data-parallel training relies on: the per-process terms, normalised with the global N
    and B, sum to the loss of the whole batch computed at once."""
    root = make_tiny_kitti(tmp_path / "d", n=4, per_image=2)
    cfg = TrainConfig(input_size=(64, 32), dropout=0.0)
    ds, _ = build_datasets(cfg, root, need_val=False)
    model = squeezedet.create_model("squeezedet", input_size=(64, 32), num_classes=3).eval()
    images = torch.stack([ds[i][0] for i in range(4)])
    targets = [ds[i][1] for i in range(4)]
    loss_fn = loss_from_config(cfg)

    def loss(idx, **kw):
        dense = build_targets([targets[i]["boxes"] for i in idx],
                              [targets[i]["labels"] for i in idx], model.anchors)
        with torch.no_grad():
            head = model.split_head(model(images[idx]))
        return loss_fn(head, dense, model.anchors, model.input_size, **kw), dense

    whole, dense = loss([0, 1, 2, 3])
    n = dense["mask"].sum()
    assert n == 8  # 2 objects in each of 4 images, one anchor each
    parts = [loss(idx, num_assigned=n, num_images=4)[0] for idx in ([0, 1], [2, 3])]
    for key in whole:
        torch.testing.assert_close(parts[0][key] + parts[1][key], whole[key])
    # the plain per-part losses (each normalised over its own half) would not add up
    halves = [loss(idx)[0]["total"] for idx in ([0, 1], [2, 3])]
    assert not torch.allclose(halves[0] + halves[1], whole["total"])


def test_two_processes_follow_one_process_with_the_same_global_batch(tmp_path, one_thread):
    data = make_tiny_kitti(tmp_path / "d", n=8)
    single = train(TrainConfig(steps=4, batch_size=4, **SMALL), data, tmp_path / "one",
                   progress=False)
    run = tmp_path / "two"
    launch(train_worker, (2, free_port(), TrainConfig(steps=4, batch_size=2, **SMALL),
                          str(data), str(run)))
    a = load_checkpoint(tmp_path / "one" / "last.pt")
    b = load_checkpoint(run / "last.pt")
    assert single.step == b["step"] == 4 and b["world_size"] == 2
    close(a["train_model"], b["train_model"])
    close(a["model"], b["model"])  # the weight average
    # the logged loss terms are the global batch's, as one process computes them
    for one, two in zip(csv.DictReader((tmp_path / "one" / "metrics.csv").open()),
                        csv.DictReader((run / "metrics.csv").open()), strict=True):
        for key in ("loss_bbox", "loss_conf", "loss_class", "loss_total"):
            assert float(two[key]) == pytest.approx(float(one[key]), rel=1e-5)
    assert not all(torch.equal(b["model"][k], b["train_model"][k]) for k in b["model"])
    # one set of outputs: rank 0 alone logged, validated and wrote
    assert [json.loads((run / f"rank{r}.json").read_text())["step"] for r in (0, 1)] == [4, 4]
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4"]
    assert len(list((run / "tb").glob("events.*"))) == 1
    assert len((run / "val.csv").read_text().splitlines()) == 2
    assert not list(run.glob(".*.tmp"))
    # validation was split across the two processes and gathered: every image, scored once,
    # as one process scores the same weights
    files = sorted(p.name for p in (run / "val_results").glob("*.txt"))
    assert files == [f"{i:06d}.txt" for i in range(8)]
    _, val_ds = build_datasets(TrainConfig(**SMALL), data)
    model = model_from_checkpoint(b)
    ref = evaluate(model, val_ds, TrainConfig(batch_size=2, **SMALL), torch.device("cpu"),
                   tmp_path / "ref")
    assert json.loads((run / "metrics.json").read_text())["AP_R40"] == ref.to_json()["AP_R40"]
    for name in files:
        got = read_kitti_file(run / "val_results" / name, check_box=False)
        want = read_kitti_file(tmp_path / "ref" / name, check_box=False)
        assert [o.type for o in got] == [o.type for o in want]
        for o, w in zip(got, want, strict=True):
            assert o.box == pytest.approx(w.box, abs=0.02) and o.score == pytest.approx(w.score,
                                                                                        abs=1e-3)
    # the run belongs to two processes: one process may not resume it
    with pytest.raises(SqueezeDetError, match=r"written by a run of 2 process\(es\), this one has 1"):
        train(TrainConfig(steps=6, batch_size=2, **SMALL), data, run, resume=True, progress=False)


@pytest.mark.slow  # three runs in two processes (~30 s here)
def test_stop_signal_on_one_rank_stops_all_and_the_resumed_run_ends_like_the_full_one(tmp_path):
    data = make_tiny_kitti(tmp_path / "d", n=8)
    cfg = TrainConfig(steps=6, batch_size=2, lr_schedule="cosine", **{**SMALL, "dropout": 0.3})
    launch(stop_resume_worker, (2, free_port(), cfg, str(data), str(tmp_path), 2))
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # only rank 0 got SIGTERM (during the third step); both stopped after that step
    assert [r["stopped_at"] for r in records] == [3, 3]
    assert [r["resumed_to"] for r in records] == [6, 6]
    # the resumed run started at the saved step on both ranks and ran only the remaining steps
    assert [r["resumed_steps"] for r in records] == [[3, 4, 5], [3, 4, 5]]
    full = load_checkpoint(tmp_path / "full" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "last.pt")
    assert len(split["rng_ranks"]) == 2
    for key in ("model", "train_model"):  # dropout on: each process's random state was resumed
        assert all(torch.equal(full[key][k], split[key][k]) for k in full[key])
    # a time-bounded run: both processes stop after the same step
    assert records[0]["timed_steps"] == records[1]["timed_steps"] >= 1


def _random_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = squeezedet.create_model("squeezedet", input_size=(64, 32), num_classes=3)
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata()}, path)
    return path


def test_torchrun_predict_writes_each_image_once_like_one_process(tmp_path, one_thread, capsys):
    data = make_tiny_kitti(tmp_path / "d", n=5)
    images = data / "training" / "image_2"
    weights = _random_checkpoint(tmp_path / "w.pt")
    args = ["predict", "--weights", str(weights), "--source", str(images), "--save-kitti",
            "--no-draw", "--device", "cpu", "--backend", "torch", "--batch-size", "2",
            "--no-progress", "--conf", "0.0"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one_line = capsys.readouterr().out.strip()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                "-m", "squeezedet.cli"]
    done = subprocess.run([*torchrun, *args, "--out", str(tmp_path / "two")], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if "detections" in ln]
    assert len(lines) == 1  # one summary, for all images
    assert lines[0].startswith("5 images;") and one_line.startswith("5 images;")
    # the same counts as one process (the thresholds are 0: every kept detection counts)
    assert lines[0].split(";")[1] == one_line.split(";")[1]
    names = sorted(p.name for p in (tmp_path / "two" / "kitti").iterdir())
    assert names == [f"{i:06d}.txt" for i in range(5)]
    for name in names:
        got = read_kitti_file(tmp_path / "two" / "kitti" / name, check_box=False)
        want = read_kitti_file(tmp_path / "one" / "kitti" / name, check_box=False)
        assert len(got) == len(want) > 0
        for o, w in zip(got, want, strict=True):
            assert o.type == w.type and o.box == pytest.approx(w.box, abs=0.02)
            assert o.score == pytest.approx(w.score, abs=1e-3)


@pytest.mark.slow  # torchrun with two training processes, twice (~40 s here)
def test_torchrun_train_sigterm_stops_every_rank_and_resumes(tmp_path):
    """The unchanged command under torchrun (AMP and EMA on); SIGTERM to torchrun, which passes it
    on to its workers: they stop after the same step and rank 0 saves it."""
    data = make_tiny_kitti(tmp_path / "d", n=8)
    run = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                "-m", "squeezedet.cli", "train"]
    args = ["--input-size", "64x32", "--batch-size", "2", "--steps", "60", "--quiet", "workers=1",
            "log_every=1", "lr=2e-4", "ema_decay=0.9", "val_max_images=2"]
    proc = subprocess.Popen([*torchrun, "--data", str(data), "--out", str(run), *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 200
    while not ((run / "metrics.csv").exists()
               and len((run / "metrics.csv").read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert (run / "last.pt").exists(), (proc.returncode, out[-2000:], err[-4000:])
    ckpt = load_checkpoint(run / "last.pt")
    step = ckpt["step"]
    assert ckpt["world_size"] == 2 and len(ckpt["rng_ranks"]) == 2 and 2 <= step < 60
    assert err.count(f"SIGTERM: stopped after step {step}") == 1  # rank 0 says it, once
    assert out.count("distributed: 2 processes (gloo) × batch 2 = 4 images a step") == 1
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, step + 1))

    rows_before = (run / "metrics.csv").read_text()
    done = subprocess.run([*torchrun, "--resume", str(run), "--steps", str(step + 2), "--quiet"],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(run / "last.pt")["step"] == step + 2
    # started at the saved step: the earlier rows kept byte for byte, two rows more
    after = (run / "metrics.csv").read_text()
    assert after.startswith(rows_before)
    assert [int(r.split(",")[0]) for r in after[len(rows_before):].splitlines()] == [step + 1,
                                                                                    step + 2]
    assert done.stdout.count(f"trained {step + 2} steps") == 1
