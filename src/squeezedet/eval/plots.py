"""Precision-recall plots of a KITTI evaluation (needs the optional extra ``plot``: matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from squeezedet.errors import require
from squeezedet.eval.kitti import DIFFICULTIES, N_SAMPLE_PTS, KittiEvalResult


def plot_pr_curves(result: KittiEvalResult, out_dir: str | Path) -> list[Path]:
    """Write one PNG per class, ``<class>_pr.png``, with the easy, moderate and hard curves.

    As the devkit's plots, the curve is the 41-point precision envelope against the recall sample
    points 0, 1/40, ..., 1 (the points AP averages); the legend gives AP_R40 and AP_R11 in percent.
    Classes that were not evaluated get no plot. Returns the written paths.
    """
    matplotlib: Any = require("matplotlib", "plot")
    matplotlib.use("Agg")
    plt: Any = require("matplotlib.pyplot", "plot")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recall = [i / (N_SAMPLE_PTS - 1) for i in range(N_SAMPLE_PTS)]
    written = []
    for cls in result.classes:
        if not result.evaluated[cls]:
            continue
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        for diff in DIFFICULTIES:
            curve = result.curves[cls][diff]
            ax.plot(
                recall,
                curve.precision,
                linewidth=2,
                label=f"{diff}: R40 {curve.ap_r40:.2f}, R11 {curve.ap_r11:.2f}",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{cls} (KITTI devkit {result.devkit}, {result.n_images} images)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left")
        fig.tight_layout()
        path = out_dir / f"{cls.lower()}_pr.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
