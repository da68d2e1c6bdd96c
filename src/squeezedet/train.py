"""The training run: data, model, optimiser, logs, checkpoints, validation, resume.

``RUN_DIR`` receives::

    config.yaml            the resolved configuration
    last.pt, best.pt       atomic checkpoints (last: every ``checkpoint_every`` steps and at the end;
                           best: highest validation mAP_R40)
    metrics.csv            step, epoch, lr, every loss term, images/s
    val.csv                step and validation AP (mAP and moderate AP per class)
    tb/                    TensorBoard logs (when tensorboard is installed)
    training_curves.png    loss terms and validation AP (when matplotlib is installed)
    val_results/           KITTI result files of the latest validation
    metrics.json           the latest validation, in the shape `squeezedet evaluate --json` writes
    data_report.json       the data check before the first step: bad samples, boxes left out

The folder is never deleted. ``resume=True`` continues from ``last.pt`` exactly: same data order,
same augmentation and dropout draws, same learning-rate schedule; on CPU an interrupted and resumed
run ends with the same weights as an uninterrupted one. A run folder that has ``config.yaml`` but no
``last.pt`` yet (stopped before its first checkpoint) is started again from step 0.

Stopping: SIGTERM, SIGINT (Ctrl-C) or SIGUSR1 finish the current optimiser step, write ``last.pt``
of exactly that step and raise :class:`TrainingStopped` (the command line exits with
:data:`~squeezedet.preemption.EXIT_RESUMABLE`, 75); a second signal raises
:class:`KeyboardInterrupt` at once. The signal handlers are installed only while :func:`train`
runs, and only in the main thread.

Several processes (``torchrun``, see :mod:`squeezedet.distributed`): DistributedDataParallel, NCCL
on GPUs, gloo on CPUs. ``batch_size`` is per process: a step takes ``batch_size × world size``
images, the global batch. Each epoch's permutation of the data is the single-process one cut into
global batches, and each process takes its slice of every global batch, so the step alone fixes
where a run is in the data (resume included). The loss is normalised over the global batch, so a
run of P processes follows a one-process run with the same global batch up to float rounding
(dropout aside: each process draws its own masks). ``lr_scaling=linear`` multiplies ``lr`` by the
number of processes. Only rank 0 writes the run folder; validation is split across the processes
and scored once over all images; checkpoints hold every process's random-number state and can
only be resumed with the same number of processes. Stop signals and time limits are agreed on
after every step (an all-reduce), so every process stops after the same step.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from squeezedet import distributed
from squeezedet.checkpoint import load_checkpoint, save_checkpoint
from squeezedet.config import TrainConfig, save_config
from squeezedet.data.check import open_checked
from squeezedet.engine import (
    WeightEMA,
    build_model,
    configure_cuda,
    epoch_batches,
    evaluate,
    loss_from_config,
    make_optimizer,
    resolve_device,
    train_step,
)
from squeezedet.errors import NonFiniteLossError, SqueezeDetError
from squeezedet.models.layers import (
    add_squeeze_bn,
    fold_squeeze_bn,
    has_squeeze_bn,
    with_memory_format,
)
from squeezedet.preemption import StopSignals, ignore_stop_signals, worker_batches

log = logging.getLogger("squeezedet.train")

LOSS_KEYS = ("loss_total", "loss_bbox", "loss_conf", "loss_class")


@dataclass
class TrainResult:
    """Where a run ended."""

    run_dir: Path
    step: int
    best_map: float | None
    last_metrics: dict[str, Any] | None
    stopped_early: bool
    last_result: Any = None  # the evaluator's result object of the last validation


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


def build_datasets(cfg: TrainConfig, root: str | Path, need_val: bool = True) -> tuple[Any, Any]:
    """Training (augmented) and validation data sets of ``root`` in ``cfg.data_format``
    (:func:`squeezedet.data.formats.open_dataset`)."""
    from squeezedet.data.formats import open_dataset

    return open_dataset(cfg, root, need_val)


def measure_step_seconds(cfg: TrainConfig, data_root: str | Path, steps: int = 4,
                         warmup: int = 2) -> float:
    """Median wall-clock seconds of one training step of ``cfg`` on this machine, now.

    Runs ``warmup`` + ``steps`` real steps (forward, targets, loss, backward, clipping, optimiser;
    mixed precision as ``cfg`` sets it) of a throw-away model on the first batch of the training
    split, with the thread settings training will use. Leaves the global random state as it was.
    """
    import statistics

    rng = _rng_state()
    try:
        torch.manual_seed(cfg.seed)
        device = resolve_device(cfg.device)
        train_ds, _ = build_datasets(cfg, data_root, need_val=False)
        if len(train_ds) == 0:
            raise SqueezeDetError(f"{data_root}: the training split has no images")
        from squeezedet.data.dataset import collate

        images, targets = collate([train_ds[i % len(train_ds)] for i in range(cfg.batch_size)])
        # random weights (speed does not depend on them; nothing is read or downloaded), the
        # stem frozen as the run will have it (a frozen conv1 computes no weight gradient)
        freeze = cfg.freeze_stem if cfg.freeze_stem is not None else bool(cfg.pretrained)
        model = build_model(replace(cfg, pretrained=None, freeze_stem=freeze),
                            tuple(train_ds.classes)).to(device)
        if cfg.squeeze_bn:
            add_squeeze_bn(model)
        if device.type == "cpu":
            model = with_memory_format(model, torch.channels_last)
        optimizer = make_optimizer(model, cfg)
        loss_fn = loss_from_config(cfg)
        times = []
        for i in range(warmup + steps):
            t = time.perf_counter()
            train_step(model, images, targets, loss_fn, optimizer, cfg, i, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t)
        return statistics.median(times[warmup:])
    finally:
        _set_rng_state(rng)


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict[str, Any]) -> None:
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


class _Logger:
    """CSV files plus TensorBoard (when installed)."""

    def __init__(self, run_dir: Path, enable_tb: bool = True, write: bool = True) -> None:
        self.run_dir = run_dir
        self.write = write  # False: a process other than rank 0, which writes nothing
        self.tb = None
        if enable_tb and write:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                log.info("tensorboard is not installed: logging to CSV only")

    def _append(self, name: str, row: dict[str, Any]) -> None:
        if not self.write:
            return
        path = self.run_dir / name
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def train(self, row: dict[str, Any]) -> None:
        self._append("metrics.csv", row)
        if self.tb is not None:
            for k, v in row.items():
                if k.startswith("loss_") or k in ("lr", "images_per_s"):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def val(self, row: dict[str, Any]) -> None:
        self._append("val.csv", row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(f"val/{k}", v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _truncate_csv(path: Path, max_step: int) -> None:
    """Drop rows logged after ``max_step`` (work a killed run did after its last checkpoint)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    keep = [r for r in rows if int(float(r["step"])) <= max_step]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)


def train(
    cfg: TrainConfig,
    data_root: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    handle_signals: bool = True,
) -> TrainResult:
    """Train ``cfg.model`` on ``data_root`` into ``run_dir``; see the module docstring.

    ``handle_signals``: catch SIGTERM, SIGINT and SIGUSR1 while training (main thread only) to
    stop after the current step with a checkpoint.

    Raises:
        TrainingStopped: a stop signal arrived; ``last.pt`` holds the step the run reached.
    """
    with distributed.process_group(cfg.device), StopSignals(enabled=handle_signals) as stop:
        return _train(cfg, Path(data_root), Path(run_dir), resume, progress, stop)


def _train(cfg: TrainConfig, data_root: Path, run_dir: Path, resume: bool, progress: bool,
           stop: StopSignals) -> TrainResult:
    ddp_on = distributed.active()  # under torchrun with more than one process
    world = distributed.world_size() if ddp_on else 1
    rank = distributed.rank() if ddp_on else 0
    main = rank == 0  # the process that writes the run folder and prints
    ckpt: dict[str, Any] | None = None
    if resume and (run_dir / "last.pt").exists():
        ckpt = load_checkpoint(run_dir / "last.pt")
    elif resume:
        if not (run_dir / "config.yaml").exists():
            raise SqueezeDetError(f"{run_dir}: nothing to resume (no last.pt or config.yaml)")
        # stopped before its first checkpoint: start again, dropping what the lost steps logged
        log.info("%s has no checkpoint yet: starting the run from step 0", run_dir)
        for name in ("metrics.csv", "val.csv"):
            if main:
                _truncate_csv(run_dir / name, 0)
    elif (run_dir / "last.pt").exists():
        raise SqueezeDetError(
            f"{run_dir} already holds a run (last.pt); continue it with --resume {run_dir} "
            "or choose another --out folder"
        )
    if ckpt is not None and int(ckpt.get("world_size", 1)) != world:
        saved = int(ckpt.get("world_size", 1))
        how = (f"torchrun with {saved} processes in all (e.g. torchrun --nproc-per-node {saved} "
               "squeezedet train --resume ...)" if saved > 1 else "one process, without torchrun")
        raise SqueezeDetError(
            f"{run_dir / 'last.pt'} was written by a run of {saved} process(es), this one has "
            f"{world}: the data order and random states belong to that number; resume with {how}"
        )
    if ckpt is not None:  # checked before config.yaml is written again
        bn_saved = any(".squeeze_bn." in k for k in ckpt.get("train_model") or ckpt["model"])
        if bn_saved != cfg.squeeze_bn:
            flag = str(bn_saved).lower()
            raise SqueezeDetError(
                f"{run_dir / 'last.pt'} was trained with squeeze_bn={flag}, this run has "
                f"squeeze_bn={str(cfg.squeeze_bn).lower()}: resume with squeeze_bn={flag} "
                "(or start a new run in another --out folder)")
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    torch.manual_seed(cfg.seed)  # the same on every process: the same initial weights
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    device = distributed.local_device(resolve_device(cfg.device))
    if device.type == "cuda":
        configure_cuda(cfg.deterministic)
    # both splits checked before the first step (squeezedet.data.check): bad samples stop the
    # run, listed together (or are left out with skip_bad); boxes left out are counted
    train_ds, val_ds, data_report = open_checked(cfg, data_root)
    if main:  # the run folder is rank 0's (every rank checks the data it reads)
        data_report.write(run_dir / "data_report.json")
        if progress or data_report.noteworthy:
            print(data_report.summary_line(), flush=True)
    if len(train_ds) == 0:
        raise SqueezeDetError(f"{data_root}: the training split has no images")
    if cfg.cache_images:
        held = train_ds.cache_images(progress=progress and main)
        log.info("training images cached in memory: %.0f MiB", held / 2**20)

    # resuming: the weights come from last.pt, not from cfg.weights again
    model = build_model(cfg, tuple(train_ds.classes), init_weights=ckpt is None).to(device)
    if cfg.squeeze_bn and not add_squeeze_bn(model):
        raise SqueezeDetError(f"squeeze_bn=true: {cfg.model} has no Fire modules (only the "
                              "SqueezeNet models have them); leave squeeze_bn out")
    if device.type == "cpu":
        model = with_memory_format(model, torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    loss_fn = loss_from_config(cfg)
    scaler = None
    if device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported():
        scaler = torch.amp.GradScaler("cuda")
    if rank > 0:  # dropout masks of their own on the other processes
        torch.manual_seed(cfg.seed + 1_000_003 * rank)
        np.random.seed((cfg.seed + 1_000_003 * rank) % 2**32)
        random.seed(cfg.seed + 1_000_003 * rank)

    global_batch = cfg.batch_size * world
    if world > 1 and len(train_ds) < global_batch:
        raise SqueezeDetError(
            f"{data_root}: {len(train_ds)} training images are fewer than one global batch "
            f"({world} processes × batch_size {cfg.batch_size}); lower batch_size"
        )
    step_cfg = cfg  # the settings each step sees: the learning rate scaled with the processes
    if world > 1 and cfg.lr_scaling == "linear":
        step_cfg = dataclasses.replace(cfg, lr=cfg.lr * world)
    if world > 1 and main:
        print(f"distributed: {world} processes ({_dist_backend()}) × batch {cfg.batch_size} = "
              f"{global_batch} images a step; lr {step_cfg.lr:g} (lr_scaling={cfg.lr_scaling})",
              flush=True)
    batches_per_epoch = len(epoch_batches(len(train_ds), global_batch, cfg.seed, 0))
    if cfg.steps is not None:
        total_steps = cfg.steps
    elif cfg.epochs is not None:
        total_steps = cfg.epochs * batches_per_epoch
    else:
        total_steps = 40_000 if cfg.time_limit_min is None else 10**9

    step, best, finished = 0, None, False
    last_metrics: dict[str, Any] | None = None
    last_result: Any = None
    if ckpt is not None:
        model.load_state_dict(ckpt.get("train_model") or ckpt["model"])
        if ema is not None:
            ema.model.load_state_dict(ckpt.get("train_ema") or ckpt["model"])
        # a checkpoint from `squeezedet import-weights` has weights only: a fresh optimiser at
        # step 0 then
        if ckpt.get("optimizer"):
            optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        step, best = int(ckpt.get("step") or 0), ckpt.get("best")
        rng = (ckpt.get("rng_ranks") or [None] * (rank + 1))[rank] if world > 1 else ckpt.get("rng")
        if rng:
            _set_rng_state(rng)
        for name in ("metrics.csv", "val.csv"):
            if main:
                _truncate_csv(run_dir / name, step)
        log.info("resuming %s at step %d", run_dir, step)
    ddp = None
    if ddp_on:  # wraps the model after loading: every process starts from the same weights
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    logger = _Logger(run_dir, write=main)
    elapsed_before = float(ckpt.get("elapsed_s", 0.0)) if ckpt else 0.0
    start = time.monotonic()

    def snapshot(rng_ranks: list[dict[str, Any]] | None) -> dict[str, Any]:
        return {
            # "model" holds the weights to predict with (the average when EMA is on; squeeze
            # batch norm folded in); the raw weights the optimiser works on are kept under
            # "train_model" and the average as trained under "train_ema" for resuming
            "model": _deploy_state(ema.model if ema is not None else model),
            "train_model": _cpu_state(model) if ema is not None or cfg.squeeze_bn else None,
            "train_ema": _cpu_state(ema.model) if ema is not None and cfg.squeeze_bn else None,
            "meta": model.metadata(),
            "config": cfg.to_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "step": step,
            "best": best,
            "rng": _rng_state(),
            "world_size": world,
            "rng_ranks": rng_ranks,  # every process's random-number states, by rank (torchrun)
            "elapsed_s": elapsed_before + time.monotonic() - start,
            "finished": finished,
        }

    def save(name: str) -> None:
        """Checkpoint ``name`` in the run folder; with torchrun every process calls this and
        rank 0 writes it."""
        rng_ranks = distributed.gather_object(_rng_state()) if ddp_on else None
        if main:
            save_checkpoint(snapshot(rng_ranks), run_dir / name)
        distributed.barrier()  # no process goes on (or returns) before the file is complete

    def validate() -> None:
        nonlocal best, last_metrics, last_result
        if val_ds is None or len(val_ds) == 0:
            return
        result = evaluate(ema.model if ema is not None else model, val_ds, cfg, device,
                          run_dir / "val_results", progress=progress)
        last_result = result
        last_metrics = result.to_json()
        last_metrics["step"] = step
        if main:
            (run_dir / "metrics.json").write_text(json.dumps(last_metrics, indent=2))
        if hasattr(result, "headline"):  # COCO-style AP (data without KITTI difficulties)
            name, score = result.headline
            row: dict[str, Any] = {"step": step, **result.csv_row()}
            detail = f"mAP50 {result.map50:.2f}"
        else:
            name, score = "mAP_R40", result.map_r40
            row = {"step": step, "mAP_R40": result.map_r40, "mAP_R11": result.map_r11}
            for c in result.classes:
                row[f"{c}_moderate_R40"] = result.ap_r40[c]["moderate"]
            detail = f"mAP_R11 {result.map_r11:.2f}"
        logger.val(row)
        if best is None or score > best:
            best = score
            save("best.pt")
        if progress and main:
            print(f"\nstep {step}: validation {name} {score:.2f} ({detail}); best {best:.2f}",
                  flush=True)

    def stop_here() -> TrainingStopped:
        """Save the state after the step just done; the exception to raise."""
        save("last.pt")
        logger.close()
        return TrainingStopped(run_dir, step, stop.received or "a stop signal to another process")

    def agree() -> tuple[bool, float]:
        """Whether to stop now, and the time spent so far; with torchrun, agreed by all the
        processes (any stop signal counts, the longest time)."""
        stop_now, spent = stop.received is not None, elapsed_before + time.monotonic() - start
        if ddp_on:
            flag, spent = distributed.all_reduce([float(stop_now), spent], op="max")
            stop_now = flag > 0
        return stop_now, spent

    stop_requested, spent = agree()
    if stop_requested:  # during the set-up (data caching, model building)
        raise stop_here()
    bar = None
    if progress and main:
        from tqdm import tqdm

        bar = tqdm(total=total_steps if total_steps < 10**9 else None, initial=step,
                   desc="training", unit="step", dynamic_ncols=True)
    stopped_early = False
    t_log, n_log = time.monotonic(), 0
    try:
        while step < total_steps:
            epoch, offset = divmod(step, batches_per_epoch)
            train_ds.set_epoch(epoch)
            batches = [b[rank * cfg.batch_size:(rank + 1) * cfg.batch_size]  # this process's part
                       for b in epoch_batches(len(train_ds), global_batch, cfg.seed, epoch)[offset:]]
            from squeezedet.data.dataset import collate

            loader = DataLoader(train_ds, batch_sampler=batches, num_workers=cfg.workers,
                                collate_fn=collate, persistent_workers=False,
                                pin_memory=device.type == "cuda",
                                # its own generator: creating a loader must not draw from the
                                # global RNG (dropout), or a resumed run would diverge
                                worker_init_fn=ignore_stop_signals,  # see squeezedet.preemption
                                generator=torch.Generator().manual_seed(cfg.seed + epoch))
            for images, targets in worker_batches(loader):
                done = step / total_steps
                if cfg.time_limit_min is not None:  # time-bounded: the clock decides the schedule
                    if not ddp_on:  # (with torchrun: the time agreed after the previous step)
                        spent = elapsed_before + time.monotonic() - start
                    done = max(done, spent / (cfg.time_limit_min * 60))
                try:
                    stats = train_step(model, images, targets, loss_fn, optimizer, step_cfg, step,
                                       device, scaler, progress=done, ddp=ddp)
                except NonFiniteLossError:
                    logger.close()
                    raise
                step += 1
                if ema is not None:
                    ema.update(model, step)
                n_log += images.shape[0] * world
                if bar is not None:
                    bar.update(1)
                    extra = {}
                    if cfg.time_limit_min is not None:  # time-bounded run: the ETA is the clock
                        left = cfg.time_limit_min * 60 - elapsed_before - (time.monotonic() - start)
                        extra["left"] = f"{max(left, 0) / 60:.1f}min"
                    bar.set_postfix(loss=f"{stats['loss_total']:.3f}", lr=f"{stats['lr']:.2g}",
                                    **extra)
                if step % cfg.log_every == 0 or step == total_steps:
                    now = time.monotonic()
                    logger.train({"step": step, "epoch": epoch, **stats,
                                  "images_per_s": n_log / max(now - t_log, 1e-9)})
                    t_log, n_log = now, 0
                stop_requested, spent = agree()
                if stop_requested:
                    break
                if cfg.val_every and step % cfg.val_every == 0 and step < total_steps:
                    validate()
                if step % cfg.checkpoint_every == 0:
                    save("last.pt")
                if not ddp_on:
                    spent = elapsed_before + time.monotonic() - start
                out_of_time = cfg.time_limit_min is not None and spent > cfg.time_limit_min * 60
                if step >= total_steps or out_of_time:
                    stopped_early = out_of_time and step < total_steps
                    break
            if stopped_early or stop_requested:
                break
    finally:
        if bar is not None:
            bar.close()
    if stop_requested:
        raise stop_here()
    finished = True  # reached the step or time limit (an interruption raises before this)
    save("last.pt")
    validate()
    logger.close()
    if main:
        plot_training_curves(run_dir)
    return TrainResult(run_dir, step, best, last_metrics, stopped_early, last_result)


def _dist_backend() -> str:
    import torch.distributed as dist

    return str(dist.get_backend()) if dist.is_available() and dist.is_initialized() else "none"


def plot_training_curves(run_dir: str | Path) -> Path | None:
    """``training_curves.png``: loss terms (log scale) and validation AP against steps."""
    run_dir = Path(run_dir)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no training_curves.png")
        return None
    metrics = run_dir / "metrics.csv"
    if not metrics.exists():
        return None
    with metrics.open(newline="") as f:
        rows = list(csv.DictReader(f))
    val_rows: list[dict[str, str]] = []
    if (run_dir / "val.csv").exists():
        with (run_dir / "val.csv").open(newline="") as f:
            val_rows = list(csv.DictReader(f))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = [float(r["step"]) for r in rows]
    for key in LOSS_KEYS:
        axes[0].plot(steps, [float(r[key]) for r in rows], label=key.removeprefix("loss_"))
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("training loss")
    axes[0].legend()
    if val_rows:
        vs = [float(r["step"]) for r in val_rows]
        for key in val_rows[0]:
            if key != "step":
                axes[1].plot(vs, [float(r[key]) for r in val_rows], marker="o", label=key)
        axes[1].legend(fontsize=8)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("AP (%)")
    axes[1].set_title("validation AP (KITTI)")
    fig.tight_layout()
    out = run_dir / "training_curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
