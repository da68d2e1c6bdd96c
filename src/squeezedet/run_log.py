"""A training run's logs: ``metrics.csv`` (a row every ``log_every`` steps), ``val.csv`` (a row
every validation), TensorBoard's ``tb/`` when it is installed, ``training_curves.png`` drawn
from the two CSV files when matplotlib is installed, and the progress bar."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("squeezedet.train")

LOSS_KEYS = ("loss_total", "loss_bbox", "loss_conf", "loss_class")

#: the CSV logs, which a resumed run cuts back to the step it resumes from
LOG_FILES = ("metrics.csv", "val.csv")


class RunLogger:
    """CSV files plus TensorBoard (when installed)."""

    def __init__(self, run_dir: Path, enable_tb: bool = True, write: bool = True) -> None:
        self.run_dir = run_dir
        self.write = write  # False: a process other than rank 0, which writes nothing
        self._since, self._images = time.monotonic(), 0  # images trained since the last row
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

    def start_timing(self) -> None:
        """Count the images a second from now on (the first row's throughput)."""
        self._since, self._images = time.monotonic(), 0

    def step(self, step: int, epoch: int, stats: dict[str, float], images: int,
             write: bool) -> None:
        """A step of ``images`` (all processes together) done; with ``write`` a ``metrics.csv``
        row: the step's ``stats`` and the images a second since the previous row."""
        self._images += images
        if write:
            now = time.monotonic()
            self.train({"step": step, "epoch": epoch, **stats,
                        "images_per_s": self._images / max(now - self._since, 1e-9)})
            self._since, self._images = now, 0

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


def val_row(result: Any, step: int) -> tuple[str, float, dict[str, Any], str]:
    """A validation result's headline name and score, its ``val.csv`` row and a second figure
    for the progress line: COCO-style AP for data without KITTI difficulties, else KITTI's
    mAP_R40 with mAP_R11 and the moderate AP of each class."""
    if hasattr(result, "headline"):
        _, score = result.headline
        return ("mAP@[.5:.95]", score, {"step": step, **result.csv_row()},
                f"mAP@0.5 {result.map50:.2f} %")
    row = {"step": step, "mAP_R40": result.map_r40, "mAP_R11": result.map_r11}
    for c in result.classes:
        row[f"{c}_moderate_R40"] = result.ap_r40[c]["moderate"]
    return "mAP_R40", result.map_r40, row, f"mAP_R11 {result.map_r11:.2f} %"


class StepBar:
    """The progress bar of the training steps (tqdm), from ``initial``; ``total`` ``None`` for a
    run only its time limit ends."""

    def __init__(self, total: int | None, initial: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc="training", unit="step",
                        dynamic_ncols=True)

    def update(self, stats: dict[str, float], left_s: float | None) -> None:
        """One step more, with its loss, its learning rate and the time left (time-bounded runs:
        the ETA is the clock)."""
        self.bar.update(1)
        extra = {} if left_s is None else {"left": f"{left_s / 60:.1f}min"}
        self.bar.set_postfix(loss=f"{stats['loss_total']:.3f}", lr=f"{stats['lr']:.2g}", **extra)

    def close(self) -> None:
        self.bar.close()


def truncate_csv(path: Path, max_step: int) -> None:
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
    axes[1].set_ylabel("AP (percent, 0-100)")
    kitti = bool(val_rows) and "mAP_R40" in val_rows[0]
    axes[1].set_title("validation AP, KITTI (R40, R11)" if kitti else
                      "validation AP, COCO-style (mAP@[.5:.95], mAP@0.5)" if val_rows else
                      "validation AP")
    fig.tight_layout()
    out = run_dir / "training_curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
