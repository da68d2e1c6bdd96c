"""Reading and writing KITTI tracking label and result files (``label_02/SEQ.txt``).

A line is a frame number and a track id followed by a KITTI object line (17 fields; 18 with a
score in result files)::

    frame track_id type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]

Frames count from 0; ``DontCare`` regions have track id -1. In KITTI tracking's ground truth the
truncation is an integer level (0 not, 1 partly, 2 largely truncated), the occlusion as in KITTI
object (0 visible … 3 unknown). Boxes stay in absolute pixel ``(x1, y1, x2, y2)``. Malformed lines
raise :class:`~squeezedet.errors.DataError` naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from squeezedet.data.kitti_format import KittiObject, parse_kitti_line
from squeezedet.errors import DataError


@dataclass(frozen=True)
class TrackedObject:
    """One line of a KITTI tracking file: ``object`` seen on ``frame`` with ``track_id``."""

    frame: int
    track_id: int
    object: KittiObject

    def to_line(self) -> str:
        """Format as one KITTI tracking line (18 fields when the object has a score)."""
        return f"{self.frame} {self.track_id} {self.object.to_line()}"


def _integer(text: str, what: str, path: str | Path, lineno: int | None) -> int:
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"{what} {text!r} is not a number", lineno) from None
    if not value.is_integer():
        raise DataError(path, f"{what} {text!r} is not a whole number", lineno)
    return int(value)


def parse_tracking_line(line: str, path: str | Path = "<string>",
                        lineno: int | None = None) -> TrackedObject:
    """Parse one KITTI tracking line (17 fields, 18 with a score); a one-line :class:`DataError`
    naming ``path`` and ``lineno`` when it is malformed."""
    parts = line.split(maxsplit=2)
    n = len(line.split())
    if n not in (17, 18):
        raise DataError(path, f"expected 17 fields (18 with a score) in a KITTI tracking line "
                              f"(frame, track id, type, truncated, ..., rotation_y[, score]), found {n}: "
                              f"{line.strip()[:80]!r}", lineno)
    frame = _integer(parts[0], "frame", path, lineno)
    track_id = _integer(parts[1], "track id", path, lineno)
    if frame < 0:
        raise DataError(path, f"frame {frame} is negative; frames count from 0", lineno)
    if track_id < -1:
        raise DataError(path, f"track id {track_id} is below -1 (-1 marks DontCare regions)", lineno)
    return TrackedObject(frame, track_id, parse_kitti_line(parts[2], path, lineno))


def read_tracking_file(path: str | Path) -> list[TrackedObject]:
    """All lines of a KITTI tracking file, in file order; blank lines skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the file ({exc})") from None
    return [parse_tracking_line(line, path, i) for i, line in enumerate(text.splitlines(), start=1)
            if line.strip()]


def write_tracking_file(path: str | Path, objects: Iterable[TrackedObject]) -> None:
    """Write ``objects`` as a KITTI tracking file (an empty file when there are none)."""
    Path(path).write_text("".join(obj.to_line() + "\n" for obj in objects))
