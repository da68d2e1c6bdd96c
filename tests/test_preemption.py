"""Stopping on SIGTERM / SIGINT / SIGUSR1 with a checkpoint of the step reached, and resuming."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_data import make_tiny_kitti
from torch.utils.data import DataLoader

import squeezedet.train as train_module
from squeezedet.checkpoint import load_checkpoint
from squeezedet.cli import main
from squeezedet.config import TrainConfig
from squeezedet.preemption import (
    EXIT_RESUMABLE,
    STOP_SIGNALS,
    ignore_stop_signals,
    worker_batches,
)
from squeezedet.train import TrainingStopped, train

# 64x32 input, 6 images in batches of 2 (3 steps an epoch); no periodic checkpoint
SMALL = dict(recipe="paper", input_size=(64, 32), batch_size=2, workers=0, log_every=1, checkpoint_every=1000,
             amp=False, val_max_images=2)
CLI_ARGS = ["--input-size", "64x32", "--batch-size", "2", "--steps", "12", "--quiet",
            "workers=0", "log_every=1", "checkpoint_every=1000", "amp=false", "val_max_images=2"]
# every CLI run in its own, identically configured process (float sums depend on thread settings);
# one thread: these tiny steps are several times slower with two on a busy two-core machine
ENV = dict(os.environ, OMP_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join([str(Path(train_module.__file__).parents[1]),
                                       os.environ.get("PYTHONPATH", "")]))
CLI = [sys.executable, "-m", "squeezedet.cli", "train"]


def logged_steps(run: Path) -> list[int]:
    if not (run / "metrics.csv").exists():
        return []
    text = (run / "metrics.csv").read_text()
    complete = text[: text.rfind("\n") + 1]  # the writer may be in the middle of a row
    return [int(r["step"]) for r in csv.DictReader(complete.splitlines())]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_kitti(tmp_path_factory.mktemp("preempt") / "d", n=6)


@pytest.fixture(scope="module")
def uninterrupted(data) -> dict:
    """The final checkpoint of a CLI run of 12 steps that nothing interrupts."""
    run = data.parent / "uninterrupted"
    subprocess.run([*CLI, "--data", str(data), "--out", str(run), *CLI_ARGS], env=ENV, check=True,
                   stdout=subprocess.DEVNULL)
    return load_checkpoint(run / "last.pt")


def wait_for(predicate, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not predicate():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.mark.slow  # three CLI processes (~30 s on this busy 2-core machine); the in-process
# SIGUSR1 test and the Ctrl-C test below run by default
def test_sigterm_saves_the_step_reached_and_resume_ends_like_an_uninterrupted_run(
        data, uninterrupted, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "--data", str(data), "--out", str(run), *CLI_ARGS], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(logged_steps(run)) >= 2, proc, "two steps were logged")
    done_before = len(logged_steps(run))
    proc.send_signal(signal.SIGTERM)
    done_at_signal = len(logged_steps(run))  # at least the steps done when the signal arrived
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_RESUMABLE, err
    step = load_checkpoint(run / "last.pt")["step"]
    # the step running when the signal came is finished and saved, and no further step is taken
    assert done_before <= step <= done_at_signal + 1 < 12
    assert logged_steps(run) == list(range(1, step + 1))
    assert f"SIGTERM: stopped after step {step}" in err and f"--resume {run}" in err
    assert "Traceback" not in err
    assert not (run / "best.pt").exists()  # no validation on the way out

    rows_before = (run / "metrics.csv").read_text()
    subprocess.run([*CLI, "--resume", str(run), "--quiet"], env=ENV, check=True,
                   stdout=subprocess.DEVNULL)
    resumed = load_checkpoint(run / "last.pt")
    assert resumed["step"] == 12 and resumed["finished"]
    # the resumed run started at the saved step: the rows before it are kept byte for byte (a
    # run restarted from step 0 would have written them again, with other images/s)
    assert (run / "metrics.csv").read_text().startswith(rows_before)
    assert same_weights(resumed["model"], uninterrupted["model"])
    assert same_weights(resumed["optimizer"]["state"][0], uninterrupted["optimizer"]["state"][0])
    assert logged_steps(run) == list(range(1, 13))


@pytest.mark.slow  # two CLI processes (~14 s here); test_resume_without_checkpoint_* is the quick one
def test_killed_before_its_first_checkpoint_resume_starts_it_again(data, uninterrupted, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "--data", str(data), "--out", str(run), *CLI_ARGS], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(logged_steps(run)) >= 1, proc, "a step was logged")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "config.yaml").exists() and not (run / "last.pt").exists()

    out = subprocess.run([*CLI, "--resume", str(run), "--quiet"], env=ENV, check=True,
                         capture_output=True, text=True).stdout
    assert "has no checkpoint yet: starting the run from its saved configuration" in out
    final = load_checkpoint(run / "last.pt")
    assert final["step"] == 12
    assert same_weights(final["model"], uninterrupted["model"])
    assert logged_steps(run) == list(range(1, 13))  # the killed attempt's rows are gone


def test_ctrl_c_to_the_process_group_with_dataloader_workers(data, tmp_path):
    """SIGINT reaches the DataLoader workers too (as from a terminal): they must not die of it."""
    run = tmp_path / "run"
    args = [a if a != "workers=0" else "workers=1" for a in CLI_ARGS]
    proc = subprocess.Popen([*CLI, "--data", str(data), "--out", str(run), *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for(lambda: len(logged_steps(run)) >= 2, proc, "two steps were logged")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_RESUMABLE, err
    step = load_checkpoint(run / "last.pt")["step"]
    assert logged_steps(run) == list(range(1, step + 1)) and step < 12
    assert f"SIGINT: stopped after step {step}" in err and "exited unexpectedly" not in err


def _signal_at(monkeypatch, at_step: int, signals: list[signal.Signals]) -> None:
    """Make the training step of index ``at_step`` send ``signals`` to this process first."""
    real = train_module.train_step

    def step_then_signal(*args, **kwargs):
        if args[6] == at_step:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step_then_signal)


def test_sigusr1_in_process_stops_resumes_and_restores_the_handlers(data, tmp_path, monkeypatch, one_thread):
    cfg = TrainConfig(steps=8, **SMALL)
    full = train(cfg, data, tmp_path / "full", progress=False)
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    _signal_at(monkeypatch, 4, [signal.SIGUSR1])  # arrives during the fifth step
    with pytest.raises(TrainingStopped) as stopped:
        train(cfg, data, tmp_path / "split", progress=False)
    assert stopped.value.step == 5 and stopped.value.signal_name == "SIGUSR1"
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before
    ckpt = load_checkpoint(tmp_path / "split" / "last.pt")
    assert ckpt["step"] == 5 and not ckpt["finished"]

    monkeypatch.undo()
    steps: list[int] = []
    real = train_module.train_step
    monkeypatch.setattr(train_module, "train_step",
                        lambda *a, **k: steps.append(a[6]) or real(*a, **k))
    resumed = train(cfg, data, tmp_path / "split", resume=True, progress=False)
    assert steps == [5, 6, 7]  # from the saved step, the remaining steps only
    assert resumed.step == full.step == 8
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert same_weights(a, b)


def test_a_second_signal_interrupts_at_once(data, tmp_path, monkeypatch, one_thread):
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    _signal_at(monkeypatch, 1, [signal.SIGTERM, signal.SIGINT])
    with pytest.raises(KeyboardInterrupt, match="SIGTERM, then SIGINT"):
        train(TrainConfig(steps=8, **SMALL), data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing saved on the way out
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before


def test_without_signal_handling_the_handlers_are_left_alone(data, tmp_path, monkeypatch, one_thread):
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda *a: seen.append("mine"))
    try:
        _signal_at(monkeypatch, 1, [signal.SIGUSR1])
        result = train(TrainConfig(steps=3, **SMALL), data, tmp_path / "run", progress=False,
                       handle_signals=False)
        assert seen == ["mine"] and result.step == 3
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_worker_init_ignores_the_stop_signals():
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        ignore_stop_signals(0)
        assert all(signal.getsignal(sig) is signal.SIG_IGN for sig in STOP_SIGNALS)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _signalled_before_init(worker_id: int) -> None:
    # torchrun signals the whole process group: here the signal reaches a DataLoader worker
    # after PyTorch set it up (with its own, fatal, SIGTERM handler) and before worker_init_fn
    os.kill(os.getpid(), signal.SIGTERM)
    ignore_stop_signals(worker_id)


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="needs POSIX signal masks")
def test_a_stop_signal_while_a_worker_starts_does_not_kill_it():
    loader = DataLoader(list(range(6)), batch_size=2, num_workers=1,
                        worker_init_fn=_signalled_before_init)
    assert [b.tolist() for b in worker_batches(loader)] == [[0, 1], [2, 3], [4, 5]]
    held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert not set(STOP_SIGNALS) & held  # this process's signals are let through again


def test_resume_without_checkpoint_starts_from_the_saved_configuration(data, tmp_path, capsys,
                                                                      one_thread):
    cfg = TrainConfig(steps=3, **SMALL)
    train(cfg, data, tmp_path / "full", progress=False)
    # a run that died before its first checkpoint: config.yaml and a logged row, no last.pt
    run = tmp_path / "run"
    train(cfg.with_overrides({"steps": 1}), data, run, progress=False)
    (run / "last.pt").unlink()
    (run / "best.pt").unlink()
    (run / "config.yaml").write_text((tmp_path / "full" / "config.yaml").read_text())
    assert (run / "data_root.txt").read_text() == f"{data.resolve()}\n"  # train() recorded it
    assert logged_steps(run) == [1]
    code = main(["train", "--resume", str(run), "--quiet"])
    assert code == 0
    assert "has no checkpoint yet: starting the run from its saved configuration" in \
        capsys.readouterr().out
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(run / "last.pt")
    assert b["step"] == 3 and same_weights(a["model"], b["model"])
    assert logged_steps(run) == [1, 2, 3]


def test_resume_of_a_folder_without_a_run(tmp_path, capsys):
    code = main(["train", "--resume", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == 2 and "nothing to resume (no last.pt or config.yaml)" in err
