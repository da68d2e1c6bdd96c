"""Multi-object tracking by detection, ByteTrack-style (Zhang et al., ECCV 2022).

Each frame, :meth:`Tracker.update` takes that frame's detections — any detector's — and returns the
confirmed tracks seen in it, each with an id that stays with its object:

1. every track's box is moved one frame ahead by its Kalman filter (:mod:`.kalman`);
2. **first pass**: the confirmed tracks (followed and lost ones) are matched to the detections
   scoring at least ``high_threshold`` by IoU with the predicted boxes (optimal assignment, pairs
   below ``match_iou`` refused);
3. **second pass**: the followed tracks left over are matched to the low-score detections
   (``low_threshold`` <= score < ``high_threshold``) with the stricter ``low_match_iou`` — an
   object partly hidden keeps its track although its score dropped, while low-score clutter starts
   nothing;
4. tracks still unmatched become *lost*; a lost track comes back, with its id, when a detection
   matches its predicted box within ``max_lost_seconds``, and is dropped after that (**death**);
5. tentative tracks (born last frame) are matched to the high-score detections left (``birth_iou``);
   one matched on ``min_hits`` frames in a row is confirmed and gets the next id (**birth**); one
   that misses a frame is dropped;
6. high-score detections left that score at least ``new_track_threshold`` start tentative tracks.
   On the first frame (after construction or :meth:`Tracker.reset`) they are confirmed at once,
   as ByteTrack does, so that a sequence starts with its objects.

With ``class_aware`` (the default) a track is only matched to detections of its own class.

Why written here instead of taken from a library: ``supervision``'s ``ByteTrack`` (MIT) is the
well-kept packaged one, but it depends on the full ``opencv-python`` (which overwrites the
``opencv-python-headless`` of ``squeezedet[video]``) and on PyAV, matplotlib and requests; it
matches class-agnostically and numbers tracks from the first sighting. The filter and the two
passes are a few dozen lines of NumPy; the assignment itself is SciPy's
``linear_sum_assignment`` (the Hungarian / Jonker-Volgenant solver), not written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from squeezedet.errors import SqueezeDetError, require
from squeezedet.tracking import kalman


@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds of :class:`Tracker` (ByteTrack's defaults where it has one).

    - ``high_threshold``: detections scoring at least this are matched in the first pass (0.5).
    - ``low_threshold``: detections scoring below this are ignored; those between the two are used
      only in the second pass, to keep existing tracks alive (0.1).
    - ``new_track_threshold``: an unmatched detection needs at least this score to start a track
      (0.6).
    - ``match_iou``: least IoU of a first-pass match between a predicted track box and a detection
      (0.2; ByteTrack's cost limit 0.8 = 1 − IoU).
    - ``low_match_iou``: least IoU of a second-pass match (0.5).
    - ``birth_iou``: least IoU between a tentative track and its next detection (0.3).
    - ``min_hits``: frames in a row with a detection before a track is confirmed and reported (2).
    - ``max_lost_seconds``: how long a lost track can come back before it is dropped (1.0 s, i.e.
      ByteTrack's 30-frame buffer at 30 FPS; ``Tracker.max_lost_frames`` in frames).
    - ``class_aware``: match a track only to detections of its own label (True).
    """

    high_threshold: float = 0.5
    low_threshold: float = 0.1
    new_track_threshold: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    birth_iou: float = 0.3
    min_hits: int = 2
    max_lost_seconds: float = 1.0
    class_aware: bool = True

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("min_hits", "class_aware"):
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
                problems.append(f"{f.name} must be a finite number, got {value!r}")
            elif f.name != "max_lost_seconds" and not 0.0 <= value <= 1.0:
                problems.append(f"{f.name} must be between 0 and 1, got {value}")
            elif value < 0:
                problems.append(f"{f.name} must be >= 0, got {value}")
        if not isinstance(self.min_hits, int) or isinstance(self.min_hits, bool) or self.min_hits < 1:
            problems.append(f"min_hits must be an integer >= 1, got {self.min_hits!r}")
        if not problems and self.low_threshold > self.high_threshold:
            problems.append(f"low_threshold ({self.low_threshold}) must not exceed high_threshold "
                            f"({self.high_threshold})")
        if problems:
            raise SqueezeDetError("invalid tracker configuration: " + "; ".join(problems))


@dataclass
class Tracks:
    """The confirmed tracks matched in one frame (M of them), in increasing ``track_ids``.

    ``boxes (M, 4)`` float32 x1y1x2y2 pixels (the matched detection's box), ``scores (M,)``
    float32 and ``labels (M,)`` int64 of that detection, ``track_ids (M,)`` int64 (from 1, one per
    object for as long as it is tracked), ``detection_index (M,)`` int64: the row of the input
    detection each track matched.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray
    detection_index: np.ndarray

    def __len__(self) -> int:
        return len(self.track_ids)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between ``a (N, 4)`` and ``b (M, 4)`` x1y1x2y2 boxes -> ``(N, M)``; 0 for empty boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Pairs (row, column) of the assignment maximising the summed IoU among pairs with
    ``iou >= min_iou`` (pairs below it are never made)."""
    if iou.size == 0:
        return []
    optimize = require("scipy.optimize", "tracking")
    allowed = iou >= min_iou
    cost = np.where(allowed, 1.0 - iou, 1e6)
    rows, cols = optimize.linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]


FOLLOWED, LOST, TENTATIVE = 0, 1, 2


class Tracker:
    """ByteTrack-style multi-object tracker (see the module docstring).

    ``frame_rate`` (frames per second of the input) turns ``max_lost_seconds`` into frames.
    """

    def __init__(self, config: TrackerConfig | None = None, frame_rate: float = 10.0) -> None:
        self.config = config if config is not None else TrackerConfig()
        if not np.isfinite(frame_rate) or frame_rate <= 0:
            raise SqueezeDetError(f"frame_rate must be a positive number of frames per second, "
                                  f"got {frame_rate}")
        self.frame_rate = float(frame_rate)
        # SciPy's import takes about half a second: paid here, not as a stall on the second frame
        # of a live stream; a missing SciPy is an error now rather than then
        require("scipy.optimize", "tracking")
        self.max_lost_frames = max(1, int(round(self.config.max_lost_seconds * self.frame_rate)))
        self.reset()

    def reset(self) -> None:
        """Forget every track and start ids from 1 again (a new sequence)."""
        self.frame = 0
        self._next_id = 1
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 8, 8))
        self._state = np.zeros(0, dtype=np.int64)
        self._ids = np.zeros(0, dtype=np.int64)  # 0 while tentative
        self._labels = np.zeros(0, dtype=np.int64)
        self._hits = np.zeros(0, dtype=np.int64)
        self._last_seen = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        """Number of tracks held (followed, lost and tentative)."""
        return len(self._state)

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> Tracks:
        """Feed one frame's detections: ``boxes (N, 4)`` x1y1x2y2 pixels, ``scores (N,)``,
        ``labels (N,)`` integer classes; returns the confirmed tracks matched in this frame."""
        boxes, scores, labels = _check_detections(boxes, scores, labels)
        cfg = self.config
        self.frame += 1
        if len(self._state):
            self._mean, self._cov = kalman.predict(self._mean, self._cov)
        keep = scores >= cfg.low_threshold
        high = np.flatnonzero(keep & (scores >= cfg.high_threshold))
        low = np.flatnonzero(keep & (scores < cfg.high_threshold))
        matched: dict[int, int] = {}  # track -> detection
        confirmed = np.flatnonzero(self._state != TENTATIVE)
        high = self._associate(confirmed, high, boxes, labels, cfg.match_iou, matched)
        followed = [t for t in np.flatnonzero(self._state == FOLLOWED) if t not in matched]
        self._associate(np.asarray(followed, dtype=np.int64), low, boxes, labels, cfg.low_match_iou, matched)
        tentative = np.flatnonzero(self._state == TENTATIVE)
        high = self._associate(tentative, high, boxes, labels, cfg.birth_iou, matched)
        seen = self._apply(matched, boxes, labels)
        births = high[scores[high] >= cfg.new_track_threshold]
        seen += self._start(births, boxes, labels, confirm=self.frame == 1 or cfg.min_hits <= 1)
        return _report(seen, boxes, scores, labels)

    # ------------------------------------------------------------------ steps of update

    def _associate(self, tracks: np.ndarray, dets: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                   min_iou: float, matched: dict[int, int]) -> np.ndarray:
        """Match ``tracks`` (indices) to detections ``dets`` (rows), record the pairs in
        ``matched``; return the detections left over."""
        if len(tracks) == 0 or len(dets) == 0:
            return dets
        predicted = kalman.xyah_to_xyxy(self._mean[tracks, :4])
        iou = iou_matrix(predicted, boxes[dets])
        if self.config.class_aware:
            iou = np.where(self._labels[tracks][:, None] == labels[dets][None, :], iou, 0.0)
        used = set()
        for r, c in match(iou, min_iou):
            matched[int(tracks[r])] = int(dets[c])
            used.add(c)
        return np.asarray([d for i, d in enumerate(dets) if i not in used], dtype=np.int64)

    def _apply(self, matched: dict[int, int], boxes: np.ndarray,
               labels: np.ndarray) -> list[tuple[int, int]]:
        """Kalman-update the matched tracks, confirm or drop tentative ones, lose and drop others;
        return (track id, detection row) of the confirmed tracks matched."""
        cfg = self.config
        tracks = np.asarray(sorted(matched), dtype=np.int64)
        if len(tracks):
            dets = np.asarray([matched[t] for t in tracks], dtype=np.int64)
            measurement = kalman.xyxy_to_xyah(boxes[dets])
            self._mean[tracks], self._cov[tracks] = kalman.update(self._mean[tracks], self._cov[tracks],
                                                                  measurement)
            self._labels[tracks] = labels[dets]
            self._hits[tracks] += 1
            self._last_seen[tracks] = self.frame
            was_tentative = self._state[tracks] == TENTATIVE
            self._state[tracks] = FOLLOWED
            born = tracks[was_tentative & (self._hits[tracks] < cfg.min_hits)]
            self._state[born] = TENTATIVE
            for t in tracks[was_tentative & (self._hits[tracks] >= cfg.min_hits)]:
                self._ids[t] = self._next_id
                self._next_id += 1
        unmatched = np.ones(len(self._state), dtype=bool)
        unmatched[tracks] = False
        self._hits[unmatched] = 0
        self._state[unmatched & (self._state == FOLLOWED)] = LOST
        # ByteTrack stops a lost track's height from drifting while it is unseen
        self._mean[unmatched & (self._state == LOST), 7] = 0.0
        expired = (self._state == LOST) & (self.frame - self._last_seen > self.max_lost_frames)
        drop = expired | (unmatched & (self._state == TENTATIVE))
        seen = [(int(self._ids[t]), matched[t]) for t in tracks if self._state[t] == FOLLOWED]
        self._remove(drop)
        return seen

    def _start(self, dets: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
               confirm: bool) -> list[tuple[int, int]]:
        """New tracks for detections ``dets``: tentative, or confirmed with new ids; return
        (track id, detection row) of the confirmed ones."""
        mean, cov = kalman.initiate(kalman.xyxy_to_xyah(boxes[dets]))
        n = len(dets)
        ids = np.zeros(n, dtype=np.int64)
        if confirm:
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            self._next_id += n
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        self._state = np.concatenate([self._state, np.full(n, FOLLOWED if confirm else TENTATIVE)])
        self._ids = np.concatenate([self._ids, ids])
        self._labels = np.concatenate([self._labels, labels[dets]])
        self._hits = np.concatenate([self._hits, np.ones(n, dtype=np.int64)])
        self._last_seen = np.concatenate([self._last_seen, np.full(n, self.frame, dtype=np.int64)])
        return [(int(i), int(d)) for i, d in zip(ids, dets, strict=True)] if confirm else []

    def _remove(self, drop: np.ndarray) -> None:
        keep = ~drop
        for name in ("_mean", "_cov", "_state", "_ids", "_labels", "_hits", "_last_seen"):
            setattr(self, name, getattr(self, name)[keep])

def _report(seen: list[tuple[int, int]], boxes: np.ndarray, scores: np.ndarray,
            labels: np.ndarray) -> Tracks:
    """:class:`Tracks` of the (track id, detection row) pairs, in increasing id."""
    seen = sorted(seen)
    ids = np.asarray([p[0] for p in seen], dtype=np.int64)
    dets = np.asarray([p[1] for p in seen], dtype=np.int64)
    return Tracks(boxes=boxes[dets].astype(np.float32).reshape(-1, 4),
                  scores=scores[dets].astype(np.float32), labels=labels[dets].astype(np.int64),
                  track_ids=ids, detection_index=dets)


def _check_detections(boxes: np.ndarray, scores: np.ndarray,
                      labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detections as float64 (N, 4), float64 (N,), int64 (N,), or a one-line error."""
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise SqueezeDetError(f"Tracker.update: boxes must have shape (N, 4), got {boxes.shape}")
    if not len(boxes) == len(scores) == len(labels):
        raise SqueezeDetError(f"Tracker.update: {len(boxes)} boxes, {len(scores)} scores and "
                              f"{len(labels)} labels; give one score and one label per box")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise SqueezeDetError("Tracker.update: boxes and scores must be finite (found NaN or inf)")
    return boxes, scores, labels.astype(np.int64)
