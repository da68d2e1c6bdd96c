"""Detector models and their registry."""

from squeezedet.models.detector import HeadOutput, SqueezeDet
from squeezedet.models.registry import KITTI_CLASSES, create_model, list_models, model_info

__all__ = ["KITTI_CLASSES", "HeadOutput", "SqueezeDet", "create_model", "list_models", "model_info"]
