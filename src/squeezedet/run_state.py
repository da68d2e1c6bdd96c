"""The state of one training run, apart from the loop that advances it (:mod:`squeezedet.train`).

- **Where a run starts**: :func:`check_resume` (a run folder holds no run, or the run to continue
  with the same number of processes and the same ``squeeze_bn``), :func:`record_run` (the run
  folder's ``config.yaml`` and ``data_root.txt``) and :func:`resume_settings`, the configuration
  and data root ``squeezedet train --resume RUN_DIR`` continues with.
- **What a checkpoint holds**: :class:`TrainingState` (weights, moving average, optimiser, loss
  scaler, step, best score, every process's random-number states) writes and restores it.
- **When a run stops**: :class:`RunClock`, the time trained across resumes, a time limit's share
  of the run done, and the agreement of several processes to stop after the same step;
  :class:`TrainingStopped` after a stop signal.
- **A run while it trains**: :class:`Run`, everything the loop of :mod:`squeezedet.train` uses.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from squeezedet import distributed
from squeezedet.checkpoint import config_from_checkpoint, load_checkpoint, save_checkpoint
from squeezedet.config import TrainConfig, load_config, save_config
from squeezedet.engine import WeightEMA, build_model, make_optimizer
from squeezedet.errors import SqueezeDetError
from squeezedet.loss import SqueezeDetLoss
from squeezedet.models import SqueezeDet
from squeezedet.models.layers import (
    add_squeeze_bn,
    fold_squeeze_bn,
    has_squeeze_bn,
    with_memory_format,
)
from squeezedet.preemption import StopSignals
from squeezedet.run_log import LOG_FILES, RunLogger, truncate_csv

log = logging.getLogger("squeezedet.train")

DATA_ROOT_FILE = "data_root.txt"


@dataclass(frozen=True)
class Processes:
    """The processes training together: ``world`` of them (torchrun), this one of rank ``rank``."""

    world: int = 1
    rank: int = 0

    @classmethod
    def current(cls) -> Processes:
        """This process's place in the active process group (one process without one)."""
        if not distributed.active():
            return cls()
        return cls(distributed.world_size(), distributed.rank())

    @property
    def several(self) -> bool:
        """More than one process: DistributedDataParallel, agreed stops, gathered states."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run folder and prints."""
        return self.rank == 0


# --- where a run starts ------------------------------------------------------------------------


def check_resume(run_dir: Path, resume: bool, cfg: TrainConfig,
                 procs: Processes) -> dict[str, Any] | None:
    """``last.pt`` of the run to continue (``None``: start at step 0), after checking that
    ``run_dir`` holds no run unless ``resume``, and that the run it holds was trained by as many
    processes and with the same ``squeeze_bn`` as this one. A folder with ``config.yaml`` but no
    ``last.pt`` (stopped before its first checkpoint) starts again, its log rows dropped."""
    last = run_dir / "last.pt"
    if resume and last.exists():
        ckpt = load_checkpoint(last)
        _check_same_processes(ckpt, last, procs.world)
        _check_same_squeeze_bn(ckpt, last, cfg.squeeze_bn)
        return ckpt
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise SqueezeDetError(f"{run_dir}: nothing to resume (no last.pt or config.yaml)")
        log.info("%s has no checkpoint yet: starting the run from step 0", run_dir)
        if procs.main:
            for name in LOG_FILES:
                truncate_csv(run_dir / name, 0)
    elif last.exists():
        raise SqueezeDetError(
            f"{run_dir} already holds a run (last.pt); continue it with --resume {run_dir} "
            "or choose another --out folder"
        )
    return None


def _check_same_processes(ckpt: dict[str, Any], path: Path, world: int) -> None:
    saved = int(ckpt.get("world_size", 1))
    if saved == world:
        return
    how = (f"torchrun with {saved} processes in all (e.g. torchrun --nproc-per-node {saved} "
           "squeezedet train --resume ...)" if saved > 1 else "one process, without torchrun")
    raise SqueezeDetError(
        f"{path} was written by a run of {saved} process(es), this one has "
        f"{world}: the data order and random states belong to that number; resume with {how}"
    )


def _check_same_squeeze_bn(ckpt: dict[str, Any], path: Path, squeeze_bn: bool) -> None:
    bn_saved = any(".squeeze_bn." in k for k in ckpt.get("train_model") or ckpt["model"])
    if bn_saved != squeeze_bn:
        flag = str(bn_saved).lower()
        raise SqueezeDetError(
            f"{path} was trained with squeeze_bn={flag}, this run has "
            f"squeeze_bn={str(squeeze_bn).lower()}: resume with squeeze_bn={flag} "
            "(or start a new run in another --out folder)")


def record_run(run_dir: Path, cfg: TrainConfig, data_root: Path) -> None:
    """Write the run folder's ``config.yaml`` and ``data_root.txt`` (the data root, absolute), from
    which :func:`resume_config` and :func:`recorded_data_root` continue the run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    tmp = run_dir / f".{DATA_ROOT_FILE}.{os.getpid()}.tmp"
    tmp.write_text(str(Path(data_root).resolve()) + "\n")
    os.replace(tmp, run_dir / DATA_ROOT_FILE)


def resume_config(run_dir: str | Path, config_file: str | Path | None = None,
                  overrides: Sequence[str] = ()) -> TrainConfig:
    """The configuration a resumed run continues with: the one ``last.pt`` records, or
    ``config.yaml`` for a run stopped before its first checkpoint; then the settings file
    ``config_file`` and ``key=value`` ``overrides`` on top (e.g. ``steps=4000`` to go further)."""
    run_dir = Path(run_dir)
    if (run_dir / "last.pt").exists():
        base = config_from_checkpoint(run_dir / "last.pt")
    elif (run_dir / "config.yaml").exists():
        base = load_config(run_dir / "config.yaml")
    else:
        raise SqueezeDetError(f"{run_dir}: nothing to resume (no last.pt or config.yaml); "
                              f"start a run there with --data DATA --out {run_dir}")
    return load_config(config_file, overrides, base=base)


def resume_settings(run_dir: str | Path, data_root: str | Path | None = None,
                    config_file: str | Path | None = None,
                    overrides: Sequence[str] = ()) -> tuple[TrainConfig, Path]:
    """What ``squeezedet train --resume RUN_DIR`` continues with: :func:`resume_config` and the
    data root the run recorded (:func:`recorded_data_root`) unless ``data_root`` is given. Says
    (rank 0) when a run without a checkpoint starts again from its saved configuration."""
    run_dir = Path(run_dir)
    cfg = resume_config(run_dir, config_file, overrides)
    data = Path(data_root) if data_root is not None else recorded_data_root(run_dir)
    if data is None:
        raise SqueezeDetError(f"{run_dir} does not record its data root (no {DATA_ROOT_FILE}): "
                              "give the data root (--data ROOT)")
    if not (run_dir / "last.pt").exists() and distributed.is_main():
        print(f"{run_dir} has no checkpoint yet: starting the run from its saved configuration "
              "(config.yaml)", flush=True)
    return cfg, data


def recorded_data_root(run_dir: str | Path) -> Path | None:
    """The data root a run was started on (``data_root.txt``, written by :func:`record_run`), or
    ``None`` when the folder records none."""
    path = Path(run_dir) / DATA_ROOT_FILE
    if not path.exists():
        return None
    text = path.read_text().strip()
    return Path(text) if text else None


# --- what a checkpoint holds -------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """The global random-number states (torch, NumPy, Python, CUDA), as a checkpoint holds them."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _deploy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a checkpoint's ``"model"`` holds: ``model``'s, with any squeeze batch norm
    folded into its convolution (SqueezeDet's architecture; ``model`` itself is left as it is)."""
    if not has_squeeze_bn(model):
        return _cpu_state(model)
    return _cpu_state(fold_squeeze_bn(copy.deepcopy(model)))


@dataclass
class TrainingState:
    """What a checkpoint saves of a run and a resumed run gets back."""

    model: SqueezeDet
    optimizer: torch.optim.Optimizer
    ema: WeightEMA | None = None
    scaler: Any = None  # torch.amp.GradScaler (fp16 on CUDA) or None
    step: int = 0
    best: float | None = None
    finished: bool = False  # reached its step or time limit (an interruption is not finished)

    @classmethod
    def start(cls, cfg: TrainConfig, class_names: tuple[str, ...], device: torch.device,
              fresh: bool) -> TrainingState:
        """Model, optimiser, moving average and loss scaler at step 0; the weights of
        ``cfg.weights`` only for a ``fresh`` run (a resumed one gets them from ``last.pt``)."""
        model = build_model(cfg, class_names, init_weights=fresh).to(device)
        if cfg.squeeze_bn and not add_squeeze_bn(model):
            raise SqueezeDetError(f"squeeze_bn=true: {cfg.model} has no Fire modules (only the "
                                  "SqueezeNet models have them); leave squeeze_bn out")
        if device.type == "cpu":
            model = with_memory_format(model, torch.channels_last)
        optimizer = make_optimizer(model, cfg)
        ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 or cfg.ema_fraction > 0 \
            else None
        scaler = None
        if device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported():
            scaler = torch.amp.GradScaler("cuda")
        return cls(model, optimizer, ema, scaler)

    def checkpoint(self, cfg: TrainConfig, world: int, rng_ranks: list[dict[str, Any]] | None,
                   elapsed_s: float) -> dict[str, Any]:
        """The checkpoint's contents (see :mod:`squeezedet.checkpoint`)."""
        ema, squeeze_bn = self.ema, cfg.squeeze_bn
        return {
            # "model" holds the weights to predict with (the average when EMA is on; squeeze
            # batch norm folded in); the raw weights the optimiser works on are kept under
            # "train_model" and the average as trained under "train_ema" for resuming
            "model": _deploy_state(ema.model if ema is not None else self.model),
            "train_model": _cpu_state(self.model) if ema is not None or squeeze_bn else None,
            "train_ema": _cpu_state(ema.model) if ema is not None and squeeze_bn else None,
            "meta": self.model.metadata(),
            "config": cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": self.step,
            "best": self.best,
            "rng": rng_state(),
            "world_size": world,
            "rng_ranks": rng_ranks,  # every process's random-number states, by rank (torchrun)
            "elapsed_s": elapsed_s,
            "finished": self.finished,
        }

    def restore(self, ckpt: dict[str, Any], procs: Processes) -> None:
        """Continue from ``ckpt``: weights, average, optimiser, scaler, step, best score and this
        process's random-number states. A checkpoint from ``squeezedet import-weights`` has
        weights only: a fresh optimiser at step 0 then."""
        self.model.load_state_dict(ckpt.get("train_model") or ckpt["model"])
        if self.ema is not None:
            self.ema.model.load_state_dict(ckpt.get("train_ema") or ckpt["model"])
        if ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.best = int(ckpt.get("step") or 0), ckpt.get("best")
        if procs.several:
            rng = (ckpt.get("rng_ranks") or [None] * (procs.rank + 1))[procs.rank]
        else:
            rng = ckpt.get("rng")
        if rng:
            set_rng_state(rng)

    def save(self, path: Path, cfg: TrainConfig, procs: Processes, clock: RunClock) -> None:
        """Checkpoint to ``path``; with several processes every one calls this (their random
        states are gathered) and rank 0 writes it."""
        rng_ranks = distributed.gather_object(rng_state()) if procs.several else None
        if procs.main:
            save_checkpoint(self.checkpoint(cfg, procs.world, rng_ranks, clock.elapsed()), path)
        distributed.barrier()  # no process goes on (or returns) before the file is complete


# --- when a run stops --------------------------------------------------------------------------


class RunClock:
    """The seconds a run has trained, counted across resumes (``elapsed_before``: what the
    checkpoint recorded), and its time limit.

    With several processes the time that decides (:meth:`spent`) is the one agreed after the
    latest step (:meth:`agree`: the longest of all), so that every process reads the same
    schedule and stops after the same step; a single process reads its own clock.
    """

    def __init__(self, elapsed_before: float, limit_min: float | None, shared: bool) -> None:
        self.elapsed_before = elapsed_before
        self.limit_s = limit_min * 60 if limit_min is not None else None
        self.shared = shared
        self.start = time.monotonic()
        self.agreed = elapsed_before

    def elapsed(self) -> float:
        """Seconds trained, by this process's clock."""
        return self.elapsed_before + time.monotonic() - self.start

    def spent(self) -> float:
        """Seconds trained that decide the schedule: agreed (several processes) or this clock."""
        return self.agreed if self.shared else self.elapsed()

    def fraction_done(self, step: int, total_steps: int) -> float:
        """Share of the run done: of its steps, or of its time limit when that is further."""
        done = step / total_steps
        if self.limit_s is not None:  # time-bounded: the clock decides the schedule
            done = max(done, self.spent() / self.limit_s)
        return done

    def out_of_time(self) -> bool:
        """Whether the time limit is spent."""
        return self.limit_s is not None and self.spent() > self.limit_s

    def left_s(self) -> float | None:
        """Seconds left before the time limit (by this clock), ``None`` without one."""
        return None if self.limit_s is None else max(self.limit_s - self.elapsed(), 0.0)

    def agree(self, stop_requested: bool) -> bool:
        """Whether to stop now; with several processes agreed by all of them (a stop signal to
        any one counts), which also agrees on the time spent (the longest)."""
        spent = self.elapsed()
        if self.shared:
            flag, spent = distributed.all_reduce([float(stop_requested), spent], op="max")
            stop_requested = flag > 0
        self.agreed = spent
        return stop_requested


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """The run's length in steps: ``steps``, or ``epochs`` of ``batches_per_epoch``; 40,000 (the
    original's) without either, unbounded when a time limit ends the run."""
    if cfg.steps is not None:
        return cfg.steps
    if cfg.epochs is not None:
        return cfg.epochs * batches_per_epoch
    return 40_000 if cfg.time_limit_min is None else 10**9


class TrainingStopped(Exception):  # noqa: N818 - a stop on request, not an error
    """A stop signal ended the run after it saved ``last.pt`` of step ``step``; resume it."""

    def __init__(self, run_dir: Path, step: int, signal_name: str) -> None:
        super().__init__(
            f"{signal_name}: stopped after step {step} and saved {run_dir / 'last.pt'}; "
            f"continue with: squeezedet train --resume {run_dir}"
        )
        self.run_dir = run_dir
        self.step = step
        self.signal_name = signal_name


@dataclass
class Run:
    """One run while it trains (:mod:`squeezedet.train`'s loop): what its steps use, the state
    its checkpoints save, its clock, stop signals and logs, and its latest validation."""

    cfg: TrainConfig
    step_cfg: TrainConfig  # the settings each step sees: lr scaled with the processes
    run_dir: Path
    procs: Processes
    device: torch.device
    train_ds: Any
    val_ds: Any
    state: TrainingState
    loss_fn: SqueezeDetLoss
    ddp: Any  # DistributedDataParallel around state.model (several processes), else None
    batches_per_epoch: int
    total_steps: int
    stop: StopSignals
    logger: RunLogger
    clock: RunClock
    progress: bool
    last_metrics: dict[str, Any] | None = None
    last_result: Any = None

    def save(self, name: str) -> None:
        """Checkpoint ``name`` in the run folder (every process calls this; rank 0 writes)."""
        self.state.save(self.run_dir / name, self.cfg, self.procs, self.clock)

    def stopped(self) -> TrainingStopped:
        """Save the state after the step just done; the exception to raise."""
        self.save("last.pt")
        self.logger.close()
        return TrainingStopped(self.run_dir, self.state.step,
                               self.stop.received or "a stop signal to another process")
