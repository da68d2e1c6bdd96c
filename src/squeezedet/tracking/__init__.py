"""Multi-object tracking by detection: :class:`Tracker` (ByteTrack-style, any detector's boxes),
its thresholds :class:`TrackerConfig`, and the per-frame result :class:`Tracks`."""

from squeezedet.tracking.tracker import Tracker, TrackerConfig, Tracks

__all__ = ["Tracker", "TrackerConfig", "Tracks"]
