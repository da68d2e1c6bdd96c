"""The training run: data, model, optimiser, logs, checkpoints, validation, resume.

``RUN_DIR`` receives::

    config.yaml            the resolved configuration
    data_root.txt          the data root (absolute), which :func:`resume` reads
    last.pt, best.pt       atomic checkpoints (last: every ``checkpoint_every`` steps and at the end;
                           best: highest validation mAP_R40)
    metrics.csv            step, epoch, lr, every loss term, images/s
    val.csv                step and validation AP (mAP and moderate AP per class)
    tb/                    TensorBoard logs (when tensorboard is installed)
    training_curves.png    loss terms and validation AP (when matplotlib is installed)
    val_results/           KITTI result files of the latest validation
    metrics.json           the latest validation, in the shape `squeezedet evaluate --json` writes
    data_report.json       the data check before the first step: bad samples, boxes left out

The folder is never deleted. :func:`resume` (``squeezedet train --resume RUN_DIR``) continues the
run with its recorded configuration and data root; it and ``train(..., resume=True)`` continue
from ``last.pt`` exactly: same data order,
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

The loop is :func:`_train_steps`; what a run keeps between its steps and its checkpoints (resume
checks, the checkpoint's contents, random-number states, the clock, the stop agreement) is
:mod:`squeezedet.run_state`, and its logs :mod:`squeezedet.run_log`.
"""


from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from squeezedet import distributed
from squeezedet.config import TrainConfig, augment_names
from squeezedet.data.check import open_checked
from squeezedet.data.dataset import collate
from squeezedet.engine import (
    EpochBatchSampler,
    build_model,
    configure_cuda,
    ema_decay_at,
    epoch_batches,
    evaluate,
    loss_from_config,
    make_optimizer,
    resolve_device,
    train_step,
)
from squeezedet.errors import NonFiniteLossError, SqueezeDetError
from squeezedet.models.layers import add_squeeze_bn, with_memory_format
from squeezedet.preemption import StopSignals, ignore_stop_signals, worker_batches
from squeezedet.run_log import (
    LOG_FILES,
    RunLogger,
    StepBar,
    plot_training_curves,
    truncate_csv,
    val_row,
)
from squeezedet.run_state import (
    Processes,
    Run,
    RunClock,
    TrainingState,
    TrainingStopped,
    check_resume,
    record_run,
    resume_settings,
    rng_state,
    seed_everything,
    set_rng_state,
    total_steps,
)

log = logging.getLogger("squeezedet.train")

__all__ = ["TrainResult", "TrainingStopped", "build_datasets", "measure_step_seconds",
           "plot_training_curves", "resume", "train"]


@dataclass
class TrainResult:
    """Where a run ended."""

    run_dir: Path
    step: int
    best_map: float | None
    last_metrics: dict[str, Any] | None
    stopped_early: bool
    last_result: Any = None  # the evaluator's result object of the last validation


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

    rng = rng_state()
    try:
        torch.manual_seed(cfg.seed)
        device = resolve_device(cfg.device)
        train_ds, _ = build_datasets(cfg, data_root, need_val=False)
        if len(train_ds) == 0:
            raise SqueezeDetError(f"{data_root}: the training split has no images")
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
        set_rng_state(rng)


def train(
    cfg: TrainConfig,
    data_root: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    handle_signals: bool = True,
    given: Collection[str] = (),
) -> TrainResult:
    """Train ``cfg.model`` on ``data_root`` into ``run_dir``; see the module docstring.

    A new run first applies its recipe (:mod:`squeezedet.recipes`; ``recipe=auto`` looks at the
    data) and prints one line saying what it chose. ``given``: the settings the user set, which
    the recipe keeps even where their value is the default's (settings with other values are
    kept anyway).

    ``resume``: continue the run ``run_dir`` holds with ``cfg`` (:func:`resume` also finds its
    configuration and data root). ``handle_signals``: catch SIGTERM, SIGINT and SIGUSR1 while
    training (main thread only) to stop after the current step with a checkpoint.

    Raises:
        TrainingStopped: a stop signal arrived; ``last.pt`` holds the step the run reached.
    """
    with distributed.process_group(cfg.device), StopSignals(enabled=handle_signals) as stop:
        return _train(cfg, Path(data_root), Path(run_dir), resume, progress, stop, given)


def resume(
    run_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
    handle_signals: bool = True,
) -> TrainResult:
    """Continue the run in ``run_dir`` as ``squeezedet train --resume RUN_DIR`` does.

    Its configuration is the one ``last.pt`` records (or ``config.yaml`` for a run stopped before
    its first checkpoint, which starts again from step 0), with the settings file ``config`` and
    ``key=value`` ``overrides`` on top; its data is the root the run recorded
    (``data_root.txt``) unless ``data_root`` is given (:func:`~squeezedet.run_state.resume_settings`).

    Raises:
        TrainingStopped: a stop signal arrived; ``last.pt`` holds the step the run reached.
        SqueezeDetError: nothing to resume in ``run_dir``, or no data root recorded or given.
    """
    cfg, data = resume_settings(run_dir, data_root, config, overrides)
    return train(cfg, data, run_dir, resume=True, progress=progress,
                 handle_signals=handle_signals)


def _train(cfg: TrainConfig, data_root: Path, run_dir: Path, resume: bool, progress: bool,
           stop: StopSignals, given: Collection[str] = ()) -> TrainResult:
    """The run: checks and records, data, set-up, the steps, the last checkpoint, validation."""
    procs = Processes.current()
    ckpt = check_resume(run_dir, resume, cfg, procs)  # before config.yaml is written again
    if procs.main:
        record_run(run_dir, cfg, data_root)
    seed_everything(cfg.seed)  # the same on every process: the same initial weights
    device = distributed.local_device(resolve_device(cfg.device))
    if device.type == "cuda":
        configure_cuda(cfg.deterministic)
    train_ds, val_ds = _open_data(cfg, data_root, run_dir, procs, progress)
    if ckpt is None:  # a new run: the recipe for this data (a resumed run keeps its settings)
        cfg = _choose_recipe(cfg, train_ds, given, procs)
        if procs.main:
            record_run(run_dir, cfg, data_root)  # config.yaml: the settings the run trains with
    if cfg.cache_images:
        held = train_ds.cache_images(progress=progress and procs.main)
        log.info("training images cached in memory: %.0f MiB", held / 2**20)
    run = _set_up(cfg, run_dir, procs, device, (train_ds, val_ds), ckpt, stop, progress)
    if run.clock.agree(stop.received is not None):  # during the set-up (caching, model building)
        raise run.stopped()
    outcome = _train_steps(run)
    if outcome == "stopped":
        raise run.stopped()
    run.state.finished = True  # reached the step or time limit (an interruption raises before)
    run.save("last.pt")
    _validate(run)
    run.logger.close()
    if procs.main:
        plot_training_curves(run_dir)
    return TrainResult(run_dir, run.state.step, run.state.best, run.last_metrics,
                       outcome == "out of time", run.last_result)


def _train_steps(run: Run) -> str:
    """Steps from ``run.state.step`` to the end of the run: each one trained, averaged, logged,
    agreed on (stop signals, time), validated and checkpointed as the settings ask. Returns
    ``"done"`` (its steps), ``"out of time"`` (its time limit, before its steps) or ``"stopped"``
    (a stop signal: the caller saves and raises)."""
    cfg, state = run.cfg, run.state
    bar = StepBar(run.total_steps if run.total_steps < 10**9 else None, state.step) \
        if run.progress and run.procs.main else None
    run.logger.start_timing()
    try:
        # one loader for the whole run: its workers persist across epochs (an epoch of a small
        # data set is a few steps); its (epoch, index) pairs fix each sample's augmentation
        for images, targets in worker_batches(_loader(run)):
            try:
                stats = train_step(state.model, images, targets, run.loss_fn, state.optimizer,
                                   run.step_cfg, state.step, run.device, state.scaler,
                                   progress=run.clock.fraction_done(state.step,
                                                                    run.total_steps),
                                   ddp=run.ddp)
            except NonFiniteLossError:
                run.logger.close()
                raise
            state.step += 1
            if state.ema is not None:  # the decay from the clock too (ema_fraction)
                state.ema.update(state.model, state.step, ema_decay_at(
                    cfg, state.step, run.clock.fraction_done(state.step, run.total_steps)))
            if bar is not None:
                bar.update(stats, run.clock.left_s())
            epoch = (state.step - 1) // run.batches_per_epoch  # of the step just done
            run.logger.step(state.step, epoch, stats, images.shape[0] * run.procs.world,
                            state.step % cfg.log_every == 0 or state.step == run.total_steps)
            if run.clock.agree(run.stop.received is not None):
                return "stopped"
            if cfg.val_every and state.step % cfg.val_every == 0 \
                    and state.step < run.total_steps:
                _validate(run)
            if state.step % cfg.checkpoint_every == 0:
                run.save("last.pt")
            out_of_time = run.clock.out_of_time()
            if state.step >= run.total_steps or out_of_time:
                return "out of time" if out_of_time and state.step < run.total_steps else "done"
    finally:
        if bar is not None:
            bar.close()
    return "done"


def _open_data(cfg: TrainConfig, data_root: Path, run_dir: Path, procs: Processes,
               progress: bool) -> tuple[Any, Any]:
    """Both splits, checked before the first step (:mod:`squeezedet.data.check`): bad samples
    stop the run, listed together (or are left out with skip_bad); boxes left out are counted in
    ``data_report.json``, which rank 0 writes (every rank checks the data it reads). The
    training split must fill a global batch (``batch_size`` × processes)."""
    main, world = procs.main, procs.world
    train_ds, val_ds, data_report = open_checked(cfg, data_root)
    if main:
        data_report.write(run_dir / "data_report.json")
        if progress or data_report.noteworthy:
            print(data_report.summary_line(), flush=True)
    if len(train_ds) == 0:
        raise SqueezeDetError(f"{data_root}: the training split has no images")
    if world > 1 and len(train_ds) < cfg.batch_size * world:
        raise SqueezeDetError(
            f"{data_root}: {len(train_ds)} training images are fewer than one global batch "
            f"({world} processes × batch_size {cfg.batch_size}); lower batch_size"
        )
    return train_ds, val_ds


def _choose_recipe(cfg: TrainConfig, train_ds: Any, given: Collection[str],
                   procs: Processes) -> TrainConfig:
    """``cfg`` with its recipe applied (:mod:`squeezedet.recipes`) to the settings and to the
    training data's augmentation, said in one line. A time-bounded run's warm-up and averaging
    follow its clock (the time agreed by all processes when there are several)."""
    from squeezedet.recipes import resolve_recipe

    cfg, line = resolve_recipe(cfg, train_ds, given)
    train_ds.set_augmentation(cfg.drift, cfg.flip_prob, cfg.crop, augment_names(cfg.augment))
    log.info("%s", line)
    if procs.main:
        print(line, flush=True)
    return cfg


def _set_up(cfg: TrainConfig, run_dir: Path, procs: Processes, device: torch.device,
            data: tuple[Any, Any], ckpt: dict[str, Any] | None, stop: StopSignals,
            progress: bool) -> Run:
    """The run ready for its next step: built, resumed from ``ckpt`` when given, the model
    wrapped for several processes, the global batch and the run's length worked out."""
    train_ds, val_ds = data
    state = TrainingState.start(cfg, tuple(train_ds.classes), device, fresh=ckpt is None)
    if procs.rank > 0:  # dropout masks of their own on the other processes
        seed_everything(cfg.seed + 1_000_003 * procs.rank)
    global_batch = cfg.batch_size * procs.world
    step_cfg = cfg
    if procs.several and cfg.lr_scaling == "linear":
        step_cfg = replace(cfg, lr=cfg.lr * procs.world)
    if procs.several and procs.main:
        print(f"distributed: {procs.world} processes ({_dist_backend()}) × batch "
              f"{cfg.batch_size} = {global_batch} images a step; lr {step_cfg.lr:g} "
              f"(lr_scaling={cfg.lr_scaling})", flush=True)
    batches_per_epoch = len(epoch_batches(len(train_ds), global_batch, cfg.seed, 0))
    if ckpt is not None:
        state.restore(ckpt, procs)
        for name in LOG_FILES if procs.main else ():
            truncate_csv(run_dir / name, state.step)
        log.info("resuming %s at step %d", run_dir, state.step)
    ddp = None
    if procs.several:  # wraps the model after loading: every process starts from the same weights
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(state.model,
                                      device_ids=[device] if device.type == "cuda" else None)
    return Run(cfg, step_cfg, run_dir, procs, device, train_ds, val_ds, state,
                loss_from_config(cfg), ddp, batches_per_epoch,
                total_steps(cfg, batches_per_epoch), stop, RunLogger(run_dir, write=procs.main),
                RunClock(float(ckpt.get("elapsed_s", 0.0)) if ckpt else 0.0,
                         cfg.time_limit_min, procs.several), progress)


def _loader(run: Run) -> DataLoader:
    """The run's batches from its step to its end (:class:`~squeezedet.engine.EpochBatchSampler`:
    the epochs' global batches of :func:`~squeezedet.engine.epoch_batches`, of each this
    process's slice, as ``(epoch, index)`` pairs), in one loader whose workers serve every
    epoch."""
    cfg = run.cfg
    sampler = EpochBatchSampler(len(run.train_ds), cfg.batch_size * run.procs.world, cfg.seed,
                                start=run.state.step,
                                stop=run.total_steps if run.total_steps < 10**9 else None,
                                part=(run.procs.rank, cfg.batch_size))
    return DataLoader(run.train_ds, batch_sampler=sampler, num_workers=cfg.workers,
                      collate_fn=collate, persistent_workers=False,
                      pin_memory=run.device.type == "cuda",
                      # its own generator: creating a loader must not draw from the global RNG
                      # (dropout), or a resumed run would diverge
                      worker_init_fn=ignore_stop_signals,  # see squeezedet.preemption
                      generator=torch.Generator().manual_seed(cfg.seed))


def _validate(run: Run) -> None:
    """Score the predicting weights (the average when EMA is on) on the validation split: a
    ``val.csv`` row, ``metrics.json``, and ``best.pt`` when the score is the best so far."""
    if run.val_ds is None or len(run.val_ds) == 0:
        return
    state, step, main = run.state, run.state.step, run.procs.main
    result = evaluate(state.ema.model if state.ema is not None else state.model, run.val_ds,
                      run.cfg, run.device, run.run_dir / "val_results", progress=run.progress)
    run.last_result = result
    run.last_metrics = {**result.to_json(), "step": step, "unit": "percent"}  # AP 0-100
    if main:
        (run.run_dir / "metrics.json").write_text(json.dumps(run.last_metrics, indent=2))
    name, score, row, detail = val_row(result, step)
    run.logger.val(row)
    if state.best is None or score > state.best:
        state.best = score
        run.save("best.pt")
    if run.progress and main:
        print(f"\nstep {step}: validation {name} {score:.2f} % ({detail}); best "
              f"{state.best:.2f} %",
              flush=True)


def _dist_backend() -> str:
    import torch.distributed as dist

    return str(dist.get_backend()) if dist.is_available() and dist.is_initialized() else "none"
