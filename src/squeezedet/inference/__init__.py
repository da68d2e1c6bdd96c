"""Prediction: the :class:`Detector` for Python users, tiled prediction of large images, and the
prediction pipeline behind ``squeezedet predict`` (sources, batching, writing results)."""

from squeezedet.data.images import ChannelOrder, ImageInput, as_rgb_arrays
from squeezedet.inference.detector import Detector
from squeezedet.postprocess import Detections

__all__ = ["ChannelOrder", "Detections", "Detector", "ImageInput", "as_rgb_arrays"]
