"""SqueezeDet: small, fast, fully convolutional object detection (Wu et al., CVPR-W 2017).

>>> import squeezedet
>>> model = squeezedet.create_model("squeezedet")          # raw ConvDet outputs from forward()
>>> det = squeezedet.Detector.from_checkpoint("runs/demo/train/best.pt")   # boxes
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from squeezedet.errors import SqueezeDetError
from squeezedet.models import create_model, list_models
from squeezedet.version import __version__

if TYPE_CHECKING:  # imported on first use (below); named here for type checkers and the API docs
    from squeezedet.inference import Detections, Detector

__all__ = ["Detector", "Detections", "SqueezeDetError", "__version__", "create_model",
           "list_models"]


def __getattr__(name: str) -> Any:  # lazy: inference pulls in image I/O
    if name in ("Detector", "Detections"):
        from squeezedet import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'squeezedet' has no attribute {name!r}")
