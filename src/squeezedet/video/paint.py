"""Tracks drawn on video frames: a stable colour per track id, the id and class, a short trail.

Drawn with OpenCV (it releases the GIL, so drawing overlaps inference in the pipeline). The colour
of id ``i`` is the hue ``frac(i × 0.618…)`` (the golden ratio spreads neighbouring ids far apart
on the colour wheel) at high saturation and value, so an id keeps its colour for the whole video
and two ids born together differ. The trail joins the bottom centres of a track's last ``trail``
boxes; ids not seen for ``trail`` frames are forgotten, so memory stays flat.
"""

from __future__ import annotations

import collections
import colorsys
from typing import Any

import numpy as np

from squeezedet.errors import require

_GOLDEN = 0.6180339887498949


def track_colour(track_id: int) -> tuple[int, int, int]:
    """The RGB colour of track id ``track_id`` (the same for the whole video)."""
    hue = (int(track_id) * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(round(255 * r)), int(round(255 * g)), int(round(255 * b))


class TrackPainter:
    """Draws one frame's tracks after another, remembering each id's recent positions.

    Args:
        class_names: the model's class names (labels index them).
        trail: how many past positions a trail shows (0: none).
    """

    def __init__(self, class_names: tuple[str, ...], trail: int = 20) -> None:
        self.class_names = class_names
        self.trail = int(trail)
        self._points: dict[int, collections.deque[tuple[int, int]]] = {}
        self._last_seen: dict[int, int] = {}
        self._frame = 0

    def _remember(self, track_ids: np.ndarray, boxes: np.ndarray) -> None:
        self._frame += 1
        for tid, (x1, _, x2, y2) in zip(track_ids.tolist(), boxes.tolist(), strict=True):
            points = self._points.setdefault(tid, collections.deque(maxlen=max(1, self.trail)))
            points.append((int(round((x1 + x2) / 2)), int(round(y2))))
            self._last_seen[tid] = self._frame
        for tid in [t for t, seen in self._last_seen.items() if self._frame - seen > self.trail]:
            del self._points[tid], self._last_seen[tid]

    def draw(self, rgb: np.ndarray, track_ids: np.ndarray, boxes: np.ndarray,
             labels: np.ndarray) -> np.ndarray:
        """A ``uint8 [H, W, 3]`` **BGR** copy of the RGB frame ``rgb`` with the tracks drawn
        (``boxes`` ``[N, 4]`` xyxy pixels), ready for the video writer."""
        cv2: Any = require("cv2", "video")
        canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        self._remember(track_ids, boxes)
        height = canvas.shape[0]
        thickness = max(2, round(height / 250))
        scale = max(0.4, height / 900)
        for tid, box, label in zip(track_ids.tolist(), boxes.tolist(), labels.tolist(), strict=True):
            r, g, b = track_colour(tid)
            colour = (b, g, r)
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            points = self._points.get(tid)
            if self.trail and points is not None and len(points) > 1:
                cv2.polylines(canvas, [np.array(points, np.int32).reshape(-1, 1, 2)], False,
                              colour, max(1, thickness - 1), cv2.LINE_AA)
            cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, thickness)
            name = self.class_names[label] if 0 <= label < len(self.class_names) else str(label)
            text = f"{tid} {name}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + 2
            cv2.rectangle(canvas, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 2), colour, -1)
            luma = 0.299 * r + 0.587 * g + 0.114 * b
            ink = (0, 0, 0) if luma > 150 else (255, 255, 255)
            cv2.putText(canvas, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1,
                        cv2.LINE_AA)
        return canvas
