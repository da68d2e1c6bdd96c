"""The KITTI evaluator's results: one class and difficulty's precision/recall curve
(:class:`PRCurve`) and the whole evaluation (:class:`KittiEvalResult`: APs, mAP, JSON, table).

The AP rules are those of :mod:`squeezedet.eval.kitti`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DIFFICULTIES = ("easy", "moderate", "hard")
N_SAMPLE_PTS = 41  # points of the precision curve: recall 0, 1/40, ..., 1


@dataclass(frozen=True)
class PRCurve:
    """Precision/recall of one class and difficulty at the devkit's score thresholds.

    ``precision`` has 41 points (after the non-increasing envelope, 0 beyond the last threshold);
    ``recall``, ``tp``, ``fp`` and ``fn`` have one entry per threshold (``thresholds``, descending
    detection scores). ``n_gt`` is the number of valid ground-truth boxes.
    """

    precision: tuple[float, ...]
    recall: tuple[float, ...]
    thresholds: tuple[float, ...]
    tp: tuple[int, ...]
    fp: tuple[int, ...]
    fn: tuple[int, ...]
    n_gt: int

    @property
    def ap_r40(self) -> float:
        """AP in percent over the 40 recall points 1/40 ... 1."""
        return _sequential_sum(self.precision[1:]) / 40 * 100

    @property
    def ap_r11(self) -> float:
        """AP in percent over the 11 recall points 0, 0.1, ..., 1 (the paper's metric)."""
        return _sequential_sum(self.precision[0::4]) / 11 * 100


def _sequential_sum(values: Sequence[float]) -> float:
    # Left-to-right double sum, as the devkit's loop (Python's sum() compensates since 3.12).
    total = 0.0
    for v in values:
        total += float(v)
    return total


@dataclass
class KittiEvalResult:
    """Result of :func:`evaluate_kitti`: APs in percent per class and difficulty, and curves."""

    classes: tuple[str, ...]
    ap_r40: dict[str, dict[str, float]]
    ap_r11: dict[str, dict[str, float]]
    evaluated: dict[str, bool]
    n_images: int
    curves: dict[str, dict[str, PRCurve]]
    warnings: list[str] = field(default_factory=list)
    devkit: str = "2017"
    errors: dict[str, dict[str, int]] | None = None
    coco: dict[str, Any] | None = None

    @property
    def map_r40(self) -> float:
        """Mean of the class x difficulty AP_R40 values (not-evaluated classes count as 0)."""
        return _mean_of(self.ap_r40)

    @property
    def map_r11(self) -> float:
        """Mean of the class x difficulty AP_R11 values (the paper's mAP)."""
        return _mean_of(self.ap_r11)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: AP_R40, AP_R11, mAP_R40, mAP_R11, evaluated, n_images, warnings,
        and errors / coco when they were computed."""
        out: dict[str, Any] = {
            "AP_R40": {c: dict(v) for c, v in self.ap_r40.items()},
            "AP_R11": {c: dict(v) for c, v in self.ap_r11.items()},
            "mAP_R40": self.map_r40,
            "mAP_R11": self.map_r11,
            "evaluated": dict(self.evaluated),
            "n_images": self.n_images,
            "warnings": list(self.warnings),
        }
        if self.errors is not None:
            out["errors"] = {c: dict(v) for c, v in self.errors.items()}
        if self.coco is not None:
            out["coco"] = self.coco
        return out

    def format_table(self) -> str:
        """A plain-text table: class x (easy, moderate, hard) for AP_R40 and AP_R11, and mAP."""
        width = max(10, *(len(c) for c in self.classes))
        head = f"{'class':<{width}} | {'AP_R40 easy':>11} {'moderate':>8} {'hard':>6} | " \
               f"{'AP_R11 easy':>11} {'moderate':>8} {'hard':>6}"
        lines = [
            f"KITTI 2-D AP in percent (devkit {self.devkit} rules), {self.n_images} images",
            head,
            "-" * len(head),
        ]
        for c in self.classes:
            r40 = [self.ap_r40[c][d] for d in DIFFICULTIES]
            r11 = [self.ap_r11[c][d] for d in DIFFICULTIES]
            note = "" if self.evaluated[c] else "  (not evaluated: no detections)"
            lines.append(
                f"{c:<{width}} | {r40[0]:11.2f} {r40[1]:8.2f} {r40[2]:6.2f} | "
                f"{r11[0]:11.2f} {r11[1]:8.2f} {r11[2]:6.2f}{note}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'mAP':<{width}} | {self.map_r40:11.2f} {'':>15} | {self.map_r11:11.2f}"
            "   (mean of the class x difficulty APs)"
        )
        return "\n".join(lines)


def _mean_of(table: Mapping[str, Mapping[str, float]]) -> float:
    values = [v for per_class in table.values() for v in per_class.values()]
    return float(sum(values) / len(values)) if values else 0.0
