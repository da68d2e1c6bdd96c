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

The folder is never deleted. ``resume=True`` continues from ``last.pt`` exactly: same data order,
same augmentation and dropout draws, same learning-rate schedule; on CPU an interrupted and resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
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

from squeezedet.checkpoint import load_checkpoint, save_checkpoint
from squeezedet.config import TrainConfig, save_config
from squeezedet.engine import (
    configure_cuda,
    evaluate,
    loss_from_config,
    make_optimizer,
    resolve_device,
    train_step,
)
from squeezedet.errors import NonFiniteLossError, SqueezeDetError
from squeezedet.models import SqueezeDet, create_model
from squeezedet.models.layers import with_memory_format
from squeezedet.models.registry import network_input_size

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


def build_datasets(cfg: TrainConfig, root: str | Path, need_val: bool = True) -> tuple[Any, Any]:
    """Training (augmented) and validation data sets of ``root`` in ``cfg.data_format``."""
    from squeezedet.data.kitti import DEFAULT_CLASSES, KittiDataset

    if cfg.data_format != "kitti" or cfg.tile is not None:
        from squeezedet.data.formats import open_dataset  # other formats (COCO, VOC, YOLO)

        return open_dataset(cfg, root, need_val)
    size = network_input_size(cfg.model, cfg.input_size)
    classes = cfg.classes or DEFAULT_CLASSES
    train = KittiDataset(root, cfg.train_split, classes, size, train=True,
                         skip_bad=cfg.skip_bad, drift=cfg.drift, flip_prob=cfg.flip_prob,
                         seed=cfg.seed)
    val = None
    if need_val:
        val = KittiDataset(root, cfg.val_split, classes, size, train=False,
                           skip_bad=cfg.skip_bad)
    return train, val


def build_model(cfg: TrainConfig, class_names: tuple[str, ...]) -> SqueezeDet:
    pretrained: str | bool = False
    if cfg.pretrained:
        pretrained = True if cfg.pretrained == "download" else cfg.pretrained
    return create_model(cfg.model, class_names=class_names,
                        input_size=network_input_size(cfg.model, cfg.input_size),
                        anchor_shapes=cfg.anchors, pretrained=pretrained,
                        freeze_stem=cfg.freeze_stem, dropout=cfg.dropout,
                        normalization=cfg.normalization)


def measure_step_seconds(cfg: TrainConfig, data_root: str | Path, steps: int = 3,
                         warmup: int = 1) -> float:
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
        from squeezedet.data.kitti import collate

        images, targets = collate([train_ds[i % len(train_ds)] for i in range(cfg.batch_size)])
        # random weights (speed does not depend on them; nothing is read or downloaded), the
        # stem frozen as the run will have it (a frozen conv1 computes no weight gradient)
        freeze = cfg.freeze_stem if cfg.freeze_stem is not None else bool(cfg.pretrained)
        model = build_model(replace(cfg, pretrained=None, freeze_stem=freeze),
                            tuple(train_ds.classes)).to(device)
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


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a permutation fixed by (seed, epoch), last partial batch dropped."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    bs = min(batch_size, n)
    return [perm[i : i + bs] for i in range(0, n - bs + 1, bs)]


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


class WeightEMA:
    """Exponential moving average of the weights, for steadier results from short runs.

    ``ema = d·ema + (1 − d)·w`` after every step, with ``d = min(decay, (1 + t) / (10 + t))`` so
    early steps are not dominated by the random initialisation.
    """

    def __init__(self, model: SqueezeDet, decay: float) -> None:
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: SqueezeDet, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        src = [t for t in model.state_dict().values() if t.is_floating_point()]
        dst = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        torch._foreach_lerp_(dst, src, 1.0 - d)


class _Logger:
    """CSV files plus TensorBoard (when installed)."""

    def __init__(self, run_dir: Path, enable_tb: bool = True) -> None:
        self.run_dir = run_dir
        self.tb = None
        if enable_tb:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                log.info("tensorboard is not installed: logging to CSV only")

    def _append(self, name: str, row: dict[str, Any]) -> None:
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
) -> TrainResult:
    """Train ``cfg.model`` on ``data_root`` into ``run_dir``; see the module docstring."""
    run_dir = Path(run_dir)
    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt = load_checkpoint(run_dir / "last.pt")
    elif (run_dir / "last.pt").exists():
        raise SqueezeDetError(
            f"{run_dir} already holds a run (last.pt); continue it with --resume {run_dir} "
            "or choose another --out folder"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        configure_cuda(cfg.deterministic)
    train_ds, val_ds = build_datasets(cfg, data_root)
    if len(train_ds) == 0:
        raise SqueezeDetError(f"{data_root}: the training split has no images")
    if cfg.cache_images:
        held = train_ds.cache_images(progress=progress)
        log.info("training images cached in memory: %.0f MiB", held / 2**20)
    skipped = len(getattr(train_ds, "skipped", [])) + len(getattr(val_ds, "skipped", []) or [])
    if skipped:
        log.warning("skipped %d bad samples (skip_bad=true)", skipped)

    model = build_model(cfg, tuple(train_ds.classes)).to(device)
    if device.type == "cpu":
        model = with_memory_format(model, torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    loss_fn = loss_from_config(cfg)
    scaler = None
    if device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported():
        scaler = torch.amp.GradScaler("cuda")

    batches_per_epoch = len(_epoch_batches(len(train_ds), cfg.batch_size, cfg.seed, 0))
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
            ema.model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        step, best = int(ckpt["step"]), ckpt.get("best")
        _set_rng_state(ckpt["rng"])
        for name in ("metrics.csv", "val.csv"):
            _truncate_csv(run_dir / name, step)
        log.info("resuming %s at step %d", run_dir, step)

    logger = _Logger(run_dir)
    elapsed_before = float(ckpt.get("elapsed_s", 0.0)) if ckpt else 0.0
    start = time.monotonic()

    def snapshot() -> dict[str, Any]:
        return {
            # "model" holds the weights to predict with (the average when EMA is on); the raw
            # weights the optimiser works on are kept under "train_model" for resuming
            "model": _cpu_state(ema.model if ema is not None else model),
            "train_model": _cpu_state(model) if ema is not None else None,
            "meta": model.metadata(),
            "config": cfg.to_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "step": step,
            "best": best,
            "rng": _rng_state(),
            "elapsed_s": elapsed_before + time.monotonic() - start,
            "finished": finished,
        }

    def validate() -> None:
        nonlocal best, last_metrics, last_result
        if val_ds is None or len(val_ds) == 0:
            return
        result = evaluate(ema.model if ema is not None else model, val_ds, cfg, device,
                          run_dir / "val_results", progress=progress)
        last_result = result
        last_metrics = result.to_json()
        last_metrics["step"] = step
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
            save_checkpoint(snapshot(), run_dir / "best.pt")
        if progress:
            print(f"\nstep {step}: validation {name} {score:.2f} ({detail}); best {best:.2f}",
                  flush=True)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps if total_steps < 10**9 else None, initial=step,
                   desc="training", unit="step", dynamic_ncols=True)
    stopped_early = False
    t_log, n_log = time.monotonic(), 0
    try:
        while step < total_steps:
            epoch, offset = divmod(step, batches_per_epoch)
            train_ds.set_epoch(epoch)
            batches = _epoch_batches(len(train_ds), cfg.batch_size, cfg.seed, epoch)[offset:]
            from squeezedet.data.kitti import collate

            loader = DataLoader(train_ds, batch_sampler=batches, num_workers=cfg.workers,
                                collate_fn=collate, persistent_workers=False,
                                pin_memory=device.type == "cuda",
                                # its own generator: creating a loader must not draw from the
                                # global RNG (dropout), or a resumed run would diverge
                                generator=torch.Generator().manual_seed(cfg.seed + epoch))
            for images, targets in loader:
                done = step / total_steps
                if cfg.time_limit_min is not None:  # time-bounded: the clock decides the schedule
                    spent = elapsed_before + time.monotonic() - start
                    done = max(done, spent / (cfg.time_limit_min * 60))
                try:
                    stats = train_step(model, images, targets, loss_fn, optimizer, cfg, step,
                                       device, scaler, progress=done)
                except NonFiniteLossError:
                    logger.close()
                    raise
                step += 1
                if ema is not None:
                    ema.update(model, step)
                n_log += images.shape[0]
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
                if cfg.val_every and step % cfg.val_every == 0 and step < total_steps:
                    validate()
                if step % cfg.checkpoint_every == 0:
                    save_checkpoint(snapshot(), run_dir / "last.pt")
                out_of_time = (cfg.time_limit_min is not None
                               and elapsed_before + time.monotonic() - start
                               > cfg.time_limit_min * 60)
                if step >= total_steps or out_of_time:
                    stopped_early = out_of_time and step < total_steps
                    break
            if stopped_early:
                break
    finally:
        if bar is not None:
            bar.close()
    finished = True  # reached the step or time limit (an interruption raises before this)
    save_checkpoint(snapshot(), run_dir / "last.pt")
    validate()
    logger.close()
    plot_training_curves(run_dir)
    return TrainResult(run_dir, step, best, last_metrics, stopped_early, last_result)


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
