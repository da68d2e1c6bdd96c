"""What a tracked video leaves behind: the drawn video and the tracks as text, always complete.

- :class:`TrackTextWriter` writes one frame's tracks at a time in the KITTI tracking format
  (``kitti``) or MOTChallenge's (``mot``) and flushes after each frame, so a run that stops
  (Ctrl-C, a truncated video) leaves files of whole lines, every frame processed in them:

  - KITTI tracking, one object a line: ``frame track_id type truncated occluded alpha x1 y1 x2 y2
    h w l x y z rotation_y score`` — frame from 0, the 2-D box in pixels, and what a 2-D detector
    does not know as KITTI's "unknown" values: truncated and occluded ``-1``, alpha ``-10``,
    dimensions ``-1 -1 -1``, location ``-1000 -1000 -1000``, rotation_y ``-10`` (formatted by
    :mod:`squeezedet.data.kitti_tracking`, which reads them back);
  - MOTChallenge: ``frame,id,x,y,w,h,conf,-1,-1,-1`` — frame from 1 (MOTChallenge counts from 1),
    ``x, y`` the top-left corner, ``w, h`` the size in pixels.

- :class:`VideoOut` writes frames with OpenCV (MPEG-4 Part 2 in ``.mp4``, Motion JPEG in ``.avi``),
  opened at the first frame's size; :meth:`VideoOut.close` finalises the file (its index), and
  is called on every way out.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import numpy as np

from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.kitti_tracking import TrackedObject
from squeezedet.errors import SqueezeDetError, require


def kitti_tracking_lines(frame: int, track_ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                         types: list[str]) -> list[str]:
    """KITTI tracking result lines of one frame: ``boxes`` ``[N, 4]`` xyxy pixels, ``types`` the
    class names (KITTI's ``Car``, ``Pedestrian``, ``Cyclist``)."""
    return [TrackedObject(frame, int(tid), KittiObject(kind, tuple(box), truncated=-1.0, occluded=-1,
                                                       score=float(score))).to_line()
            for tid, box, score, kind in zip(track_ids.tolist(), boxes.tolist(), scores.tolist(),
                                             types, strict=True)]


def mot_lines(frame: int, track_ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> list[str]:
    """MOTChallenge lines of one frame (``frame`` counted from 0 here, written from 1)."""
    lines = []
    for tid, (x1, y1, x2, y2), score in zip(track_ids.tolist(), boxes.tolist(), scores.tolist(),
                                            strict=True):
        lines.append(f"{frame + 1},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                     f"{score:.4f},-1,-1,-1")
    return lines


class TrackTextWriter:
    """Tracks of one sequence as text, one frame at a time (``fmt``: ``kitti`` or ``mot``)."""

    def __init__(self, path: Path, fmt: str, class_names: tuple[str, ...]) -> None:
        if fmt not in ("kitti", "mot"):
            raise ValueError(f"unknown tracking format {fmt!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fmt = fmt
        self.class_names = class_names
        self._file: TextIO | None = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open

    def write(self, frame: int, track_ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
              labels: np.ndarray) -> None:
        """One frame's tracks, written and flushed at once."""
        if self._file is None:
            raise ValueError(f"{self.path}: already closed")
        if self.fmt == "kitti":
            types = [self.class_names[int(i)] if 0 <= int(i) < len(self.class_names) else str(i)
                     for i in labels.tolist()]
            lines = kitti_tracking_lines(frame, track_ids, boxes, scores, types)
        else:
            lines = mot_lines(frame, track_ids, boxes, scores)
        if lines:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()

    def close(self) -> None:
        """Close the file (again: nothing)."""
        if self._file is not None:
            self._file.close()
            self._file = None


class VideoOut:
    """An OpenCV video writer opened at the first frame (see the module docstring)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps if fps and fps > 0 else 10.0
        self.frames = 0
        self._writer: Any = None

    def write(self, bgr: np.ndarray) -> None:
        """Append one ``uint8 [H, W, 3]`` BGR frame."""
        if self._writer is None:
            cv2: Any = require("cv2", "video")
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi"
                                              else "mp4v"))
            h, w = bgr.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise SqueezeDetError(f"{self.path}: OpenCV cannot write this video")
        self._writer.write(np.ascontiguousarray(bgr))
        self.frames += 1

    def close(self) -> None:
        """Finalise the file (again: nothing)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoOut:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
