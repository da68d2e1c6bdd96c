"""Video in: frame sources (files, image sequences, cameras, network streams) with time-outs, the
threaded stage pipeline that overlaps decoding, inference and drawing, and video out (the drawn
video, KITTI-tracking and MOTChallenge text files, tracks drawn with a colour per id)."""

from squeezedet.video.pipeline import StageTimes, run_stages
from squeezedet.video.sources import Frame, FrameSource, SourceOptions, open_source

__all__ = ["Frame", "FrameSource", "SourceOptions", "StageTimes", "open_source", "run_stages"]
