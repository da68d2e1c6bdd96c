"""Multi-object tracking metrics of KITTI tracking result files: HOTA, MOTA, IDF1, ID switches.

The numbers come from TrackEval (Luiten et al., the HOTA paper's code, which the KITTI tracking
benchmark uses for HOTA) through its own KITTI 2-D box protocol, ``Kitti2DBox``, so they are the
benchmark's. This module reads and checks the files itself first (one-line errors naming the file
and line), then hands TrackEval a clean copy laid out as it expects and returns its figures.

KITTI's rules, as TrackEval applies them, per class (Car and Pedestrian; KITTI tracking does not
evaluate Cyclist): ground truth of the neighbour class (Van for Car, Person — sitting — for
Pedestrian) and ground truth occluded more than level 2 or truncated at all only absorb the
tracker's boxes matched to them (IoU >= 0.5), which then count neither way; an unmatched tracker
box no taller than 25 px, or lying more than half inside a DontCare region, is dropped. HOTA and
its parts are averaged over the IoU thresholds 0.05 … 0.95; MOTA, MOTP and the ID switches
(CLEAR MOT) and IDF1 (identity) match at IoU 0.5.

TrackEval is an optional dependency. Its package on PyPI declares the full ``opencv-python`` as a
requirement (for a segmentation metric this module does not use), which would overwrite the
``opencv-python-headless`` of ``squeezedet[video]``; install it with
``pip install --no-deps trackeval`` (its box metrics need only NumPy and SciPy).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from squeezedet.data.kitti_tracking import TrackedObject, read_tracking_file, write_tracking_file
from squeezedet.errors import DataError, SqueezeDetError

#: the classes KITTI tracking evaluates
TRACKING_CLASSES = ("Car", "Pedestrian")

#: the figures reported per class, in table order (HOTA's are means over its 19 IoU thresholds)
METRICS = ("HOTA", "DetA", "AssA", "LocA", "MOTA", "MOTP", "IDF1", "IDSW", "TP", "FN", "FP",
           "Frag", "MT", "ML", "GT_IDs", "IDs")

#: KITTI tracking's type names as TrackEval knows them (lower case); others become Misc
_TRACKEVAL_TYPES = {"car", "van", "truck", "pedestrian", "person", "cyclist", "tram", "misc", "dontcare"}

INSTALL_HINT = ("pip install --no-deps trackeval (--no-deps: its PyPI package asks for opencv-python, "
                "which would replace opencv-python-headless; the box metrics need only NumPy and SciPy)")


@dataclass
class TrackingEvalResult:
    """Metrics per class over all sequences (``metrics[cls][name]``), per sequence
    (``per_sequence[seq][cls][name]``); fractions in [0, 1] except the counts."""

    classes: list[str]
    sequences: list[str]
    metrics: dict[str, dict[str, float]]
    per_sequence: dict[str, dict[str, dict[str, float]]]
    warnings: list[str] = field(default_factory=list)

    def format_table(self) -> str:
        """The per-class table, percentages with two decimals, as printed by the command."""
        shown = ("HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDSW", "TP", "FN", "FP", "Frag")
        counts = {"IDSW", "TP", "FN", "FP", "Frag"}
        head = f"{'class':<12}" + "".join(f"{name:>8}" for name in shown)
        n = len(self.sequences)
        lines = [f"KITTI tracking ({n} sequence{'s' if n != 1 else ''}; TrackEval, percent)", head]
        for cls in self.classes:
            row = self.metrics[cls]
            if row["GT_IDs"] == 0 and row["IDs"] == 0:
                lines.append(f"{cls:<12}  no ground truth and no tracks")
                continue
            cells = [f"{int(row[n]):>8d}" if n in counts else f"{100 * row[n]:8.2f}" for n in shown]
            lines.append(f"{cls:<12}" + "".join(cells))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes, "sequences": self.sequences, "metrics": self.metrics,
                "per_sequence": self.per_sequence, "warnings": self.warnings}


def _label_dir(path: Path) -> Path:
    """The folder of ``SEQ.txt`` files: ``path`` itself or its ``label_02``."""
    if not path.is_dir():
        raise SqueezeDetError(f"{path}: folder not found")
    return path / "label_02" if (path / "label_02").is_dir() else path


def _check_unique_ids(rows: list[TrackedObject], path: Path) -> None:
    seen: set[tuple[int, int, str]] = set()
    for row in rows:
        key = (row.frame, row.track_id, row.object.type.lower())
        if row.track_id >= 0 and key in seen:
            raise DataError(path, f"track id {row.track_id} appears twice on frame {row.frame} "
                                  f"(class {row.object.type}); each id is one object per frame")
        seen.add(key)


def _normalised(rows: list[TrackedObject]) -> list[TrackedObject]:
    """Rows with the type names TrackEval knows (Person_sitting -> Person, unknown -> Misc)."""
    out = []
    for row in rows:
        name = row.object.type.lower()
        name = "person" if name == "person_sitting" else name
        name = name if name in _TRACKEVAL_TYPES else "misc"
        out.append(replace(row, object=replace(row.object, type=name.capitalize())))
    return out


def read_sequences(gt_dir: str | Path, result_dir: str | Path,
                   sequences: Sequence[str] | None = None
                   ) -> tuple[dict[str, list[TrackedObject]], dict[str, list[TrackedObject]], list[str]]:
    """Ground truth and results per sequence (checked), and warnings. Sequences are the ground
    truth's ``SEQ.txt`` files (or ``sequences``); a missing result file counts as no tracks."""
    gt_folder, res_folder = _label_dir(Path(gt_dir)), Path(result_dir)
    if not res_folder.is_dir():
        raise SqueezeDetError(f"{res_folder}: results folder not found")
    names = list(sequences) if sequences else sorted(p.stem for p in gt_folder.glob("*.txt"))
    if not names:
        raise SqueezeDetError(f"{gt_folder}: no ground-truth files (SEQ.txt); give KITTI tracking's "
                              "label_02 folder")
    warnings, gt, res = [], {}, {}
    for seq in names:
        gt[seq] = read_tracking_file(gt_folder / f"{seq}.txt")
        result_file = res_folder / f"{seq}.txt"
        if result_file.is_file():
            res[seq] = read_tracking_file(result_file)
            _check_unique_ids(res[seq], result_file)
        else:
            res[seq] = []
            warnings.append(f"{result_file}: no result file; sequence {seq} counted as tracking nothing")
    extra = sorted(p.stem for p in res_folder.glob("*.txt") if p.stem not in gt)
    if extra and not sequences:
        warnings.append(f"{res_folder}: result files without ground truth ignored: {', '.join(extra)}")
    return gt, res, warnings


def evaluate_tracking(gt: dict[str, list[TrackedObject]], results: dict[str, list[TrackedObject]],
                      classes: Sequence[str] = TRACKING_CLASSES) -> TrackingEvalResult:
    """TrackEval's HOTA, CLEAR MOT and identity metrics of ``results`` against ``gt`` (both per
    sequence name), per class, through its KITTI 2-D box protocol (see the module docstring)."""
    try:  # quietly: without its optional pycocotools / tabulate it prints a line on import
        with contextlib.redirect_stdout(io.StringIO()):
            import trackeval
    except ImportError:
        raise SqueezeDetError(f"evaluate --tracking needs TrackEval: {INSTALL_HINT}") from None
    bad = [c for c in classes if c.lower() not in ("car", "pedestrian")]
    if bad:
        raise SqueezeDetError(f"KITTI tracking evaluates only Car and Pedestrian, not {', '.join(bad)}")
    seqs = sorted(gt)
    with tempfile.TemporaryDirectory(prefix="squeezedet-tracking-") as tmp:
        root = Path(tmp)
        (root / "gt" / "label_02").mkdir(parents=True)
        (root / "trackers" / "squeezedet" / "data").mkdir(parents=True)
        seqmap = []
        for seq in seqs:
            frames = [r.frame for r in gt[seq] + results.get(seq, [])]
            seqmap.append(f"{seq} empty 000000 {max(frames, default=0) + 1:06d}\n")
            write_tracking_file(root / "gt" / "label_02" / f"{seq}.txt", _normalised(gt[seq]))
            write_tracking_file(root / "trackers" / "squeezedet" / "data" / f"{seq}.txt",
                                _normalised(results.get(seq, [])))
        (root / "gt" / "evaluate_tracking.seqmap.training").write_text("".join(seqmap))
        output = _run_trackeval(trackeval, root, [c.lower() for c in classes])
    names = {c.lower(): c for c in classes}
    per_seq = {seq: {names[c]: _figures(output[seq][c]) for c in names} for seq in seqs}
    combined = {names[c]: _figures(output["COMBINED_SEQ"][c]) for c in names}
    return TrackingEvalResult(list(classes), seqs, combined, per_seq)


def _run_trackeval(trackeval: Any, root: Path, classes: list[str]) -> dict[str, Any]:
    """TrackEval's result dictionary ``[seq | COMBINED_SEQ][class][metric][field]``, run quietly."""
    eval_config = {"USE_PARALLEL": False, "BREAK_ON_ERROR": True, "LOG_ON_ERROR": None,
                   "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
                   "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False}
    dataset_config = {"GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"),
                      "OUTPUT_FOLDER": str(root / "out"), "TRACKERS_TO_EVAL": ["squeezedet"],
                      "CLASSES_TO_EVAL": classes, "SPLIT_TO_EVAL": "training", "PRINT_CONFIG": False}
    metric_config = {"PRINT_CONFIG": False, "THRESHOLD": 0.5}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = trackeval.Evaluator(eval_config)
        dataset = trackeval.datasets.Kitti2DBox(dataset_config)
        metrics = [trackeval.metrics.HOTA(metric_config), trackeval.metrics.CLEAR(metric_config),
                   trackeval.metrics.Identity(metric_config)]
        output, _ = evaluator.evaluate([dataset], metrics)
    return output["Kitti2DBox"]["squeezedet"]


def _figures(res: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The :data:`METRICS` of one TrackEval result (HOTA's arrays averaged over thresholds)."""
    hota, clear, ident, count = res["HOTA"], res["CLEAR"], res["Identity"], res["Count"]
    return {
        "HOTA": float(hota["HOTA"].mean()), "DetA": float(hota["DetA"].mean()),
        "AssA": float(hota["AssA"].mean()), "LocA": float(hota["LocA"].mean()),
        "MOTA": float(clear["MOTA"]), "MOTP": float(clear["MOTP"]), "IDF1": float(ident["IDF1"]),
        "IDSW": float(clear["IDSW"]), "TP": float(clear["CLR_TP"]), "FN": float(clear["CLR_FN"]),
        "FP": float(clear["CLR_FP"]), "Frag": float(clear["Frag"]), "MT": float(clear["MT"]),
        "ML": float(clear["ML"]), "GT_IDs": float(count["GT_IDs"]), "IDs": float(count["IDs"]),
    }


def evaluate_tracking_dirs(gt_dir: str | Path, result_dir: str | Path,
                           classes: Sequence[str] = TRACKING_CLASSES,
                           sequences: Sequence[str] | None = None) -> TrackingEvalResult:
    """Evaluate the KITTI tracking result files of ``result_dir`` (``SEQ.txt``) against the ground
    truth of ``gt_dir`` (its ``label_02`` folder, or the folder of ``SEQ.txt`` itself)."""
    gt, res, warnings = read_sequences(gt_dir, result_dir, sequences)
    result = evaluate_tracking(gt, res, classes)
    result.warnings = warnings + result.warnings
    return result
