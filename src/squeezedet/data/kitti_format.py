"""Reading and writing KITTI object label files (ground truth and result files).

A label line has 15 fields, a result line 16 (score last)::

    type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]

Boxes stay in the file's absolute pixel ``(x1, y1, x2, y2)``; no "+1" convention is applied.
Malformed lines raise :class:`~squeezedet.errors.DataError` naming the file and line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from squeezedet.errors import DataError

KITTI_TYPES = (
    "Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare",
)


@dataclass(frozen=True)
class KittiObject:
    """One object of a KITTI label or result file; ``box`` is ``(x1, y1, x2, y2)`` in pixels."""

    type: str
    box: tuple[float, float, float, float]
    truncated: float = 0.0
    occluded: int = 0
    alpha: float = -10.0
    dimensions: tuple[float, float, float] = (-1.0, -1.0, -1.0)  # h, w, l in metres
    location: tuple[float, float, float] = (-1000.0, -1000.0, -1000.0)  # x, y, z camera coords
    rotation_y: float = -10.0
    score: float | None = None

    def to_line(self) -> str:
        """Format as one KITTI line (16 fields when a score is set)."""
        x1, y1, x2, y2 = self.box
        fields = [
            self.type,
            f"{self.truncated:.2f}",
            f"{int(self.occluded)}",
            f"{self.alpha:.2f}",
            f"{x1:.2f}", f"{y1:.2f}", f"{x2:.2f}", f"{y2:.2f}",
            *(f"{v:.2f}" for v in self.dimensions),
            *(f"{v:.2f}" for v in self.location),
            f"{self.rotation_y:.2f}",
        ]
        if self.score is not None:
            fields.append(f"{self.score:.6f}")
        return " ".join(fields)


def parse_kitti_line(
    line: str, path: str | Path = "<string>", lineno: int | None = None, *, check_box: bool = True
) -> KittiObject:
    """Parse one label line of 15 or 16 whitespace-separated fields.

    Raises :class:`DataError` with the file and line when the field count is wrong, a number does
    not parse or is not finite, or (``check_box``) the box has ``x2 < x1`` or ``y2 < y1``.
    """
    parts = line.split()
    if len(parts) not in (15, 16):
        raise DataError(
            path,
            f"expected 15 fields (16 with a score) in a KITTI label line, found {len(parts)}: "
            f"{line.strip()[:80]!r}",
            lineno,
        )
    try:
        values = [float(p) for p in parts[1:]]
    except ValueError:
        bad = next(p for p in parts[1:] if not _is_float(p))
        raise DataError(path, f"field {bad!r} is not a number", lineno) from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(path, "a field is NaN or infinite", lineno)
    x1, y1, x2, y2 = values[3:7]
    if check_box and (x2 < x1 or y2 < y1):
        raise DataError(
            path,
            f"box ({x1}, {y1}, {x2}, {y2}) has x2 < x1 or y2 < y1; fix or remove the line",
            lineno,
        )
    return KittiObject(
        type=parts[0],
        truncated=values[0],
        occluded=int(values[1]),
        alpha=values[2],
        box=(x1, y1, x2, y2),
        dimensions=(values[7], values[8], values[9]),
        location=(values[10], values[11], values[12]),
        rotation_y=values[13],
        score=values[14] if len(values) == 15 else None,
    )


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_kitti_file(path: str | Path, *, check_box: bool = True) -> list[KittiObject]:
    """Read a KITTI label or result file; blank lines are skipped, an empty file has no objects."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is dropped
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the file ({exc})") from None
    return [
        parse_kitti_line(line, path, i, check_box=check_box)
        for i, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def write_kitti_file(path: str | Path, objects: Iterable[KittiObject]) -> None:
    """Write objects as a KITTI file (an empty file when there are none)."""
    lines = [obj.to_line() for obj in objects]
    Path(path).write_text("".join(line + "\n" for line in lines))


def format_detections(
    boxes: Sequence[Sequence[float]], scores: Sequence[float], class_names: Sequence[str]
) -> list[KittiObject]:
    """KITTI result objects for 2-D detections (3-D fields set to the benchmark's 'unknown')."""
    return [
        KittiObject(type=name, box=tuple(float(v) for v in box), score=float(s))  # type: ignore[arg-type]
        for box, s, name in zip(boxes, scores, class_names, strict=True)
    ]
