"""Evaluation: KITTI 2-D AP (R40 and R11, as the official devkit), error analysis, PR plots."""

from squeezedet.eval.error_analysis import analyze_errors, format_errors
from squeezedet.eval.kitti import (
    KittiEvalResult,
    PRCurve,
    evaluate_dirs,
    evaluate_kitti,
    read_result_file,
)

__all__ = [
    "KittiEvalResult",
    "PRCurve",
    "analyze_errors",
    "evaluate_dirs",
    "evaluate_kitti",
    "format_errors",
    "read_result_file",
]
