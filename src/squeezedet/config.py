"""Training configuration: one frozen dataclass, loaded from YAML and ``key=value`` overrides.

Defaults are the original SqueezeDet KITTI recipe. Derived values (grid, anchors) are computed
from the model and input size and never stored here. Unknown keys are an error that suggests the
closest known key. The resolved configuration is written into every run folder and checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from squeezedet.errors import SqueezeDetError


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (see ``squeezedet train --help``)."""

    # "auto": look at the data before training and use "small" for a small data set trained from
    # scratch, else "paper" (squeezedet.recipes); "paper": these defaults, the original's recipe;
    # "small": squeeze batch norm, AdamW, warm-up, cosine, weight averaging, augmentation for few
    # objects. Settings given explicitly win over the recipe's.
    recipe: str = "auto"
    # model
    model: str = "squeezedet"
    input_size: tuple[int, int] | None = None  # (W, H); None: the model's default
    # classes to train on, in label order; None: from the data (KITTI: Car, Pedestrian, Cyclist)
    classes: tuple[str, ...] | None = None
    anchors: tuple[tuple[float, float], ...] | None = None  # (w, h) input pixels; None: default
    # ImageNet backbone: a state dict (torchvision layout), "download", or the original's .pkl
    pretrained: str | None = None
    freeze_stem: bool | None = None  # None: frozen iff pretrained
    dropout: float = 0.5
    # training only: batch norm between each Fire module's squeeze convolution and its ReLU,
    # folded into the convolution in every saved model (which stays SqueezeDet's architecture);
    # from scratch it learns much more per step for ~3 % more time (the demo's recipe)
    squeeze_bn: bool = False
    # or "caffe" (the original's BGR mean subtraction), "kitti" (the PyTorch port's), "per_image"
    # (the Keras port's per-image standardisation)
    normalization: str = "torchvision"
    anchor_centers: str = "original"  # or "cell": (j + 1/2)·W/gw (the PyTorch port's)
    padding: str = "torch"  # SqueezeNet models: or "tf", the original TensorFlow graph's conv1/pools
    # a checkpoint to start from (fine-tuning; ours, or one written by `squeezedet import-weights`)
    weights: str | None = None
    # data
    data_format: str = "auto"  # auto (detected from the folder), kitti, coco, voc, yolo
    train_split: str = "train"
    val_split: str = "val"
    skip_bad: bool = False
    drift: tuple[int, int] = (150, 100)  # max shift (x, y), original-image pixels
    flip_prob: float = 0.5
    workers: int = 2
    # extra training augmentation, comma-separated (squeezedet.data.augment): zoom (random scale
    # and crop, in and out), vflip (vertical flip), rot90 (quarter turns: top-down imagery only),
    # jitter (colour), mosaic (four samples in one); "" or "none": only drift and flip_prob.
    # "+name,...": added to what the recipe chooses
    augment: str = ""
    cache_images: bool = False  # decode each training image once and keep it in RAM (H·W·3 bytes each)
    tile: tuple[int, int] | None = None  # (W, H): train on overlapping windows of large images
    tile_overlap: float = 0.2  # fraction of a tile shared with its neighbour
    # (W, H) <= input_size: train on random windows of the images resized to input_size (objects
    # keep their scale, a step costs fewer pixels); validation and the model stay at input_size
    crop: tuple[int, int] | None = None
    # optimisation (the original KITTI recipe)
    optimizer: str = "sgd"  # "sgd" (original) or "adamw"
    lr: float = 0.01
    lr_decay_steps: int = 10_000
    lr_decay: float = 0.5
    # "step": lr·lr_decay every lr_decay_steps (original); "cosine": from lr down to 0 over the
    # run's steps, epochs or time_limit_min
    lr_schedule: str = "step"
    warmup_steps: int = 0
    # >0: a linear warm-up over this fraction of the run instead (of its time limit when the run
    # is time-bounded, so it lasts as long whatever the machine's load)
    warmup_fraction: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 1e-4  # on convolution kernels only
    grad_clip: float = 1.0  # per-tensor gradient norm
    batch_size: int = 20  # per process: with torchrun a step takes batch_size × processes images
    # with torchrun: "none" keeps lr; "linear" multiplies it by the number of processes (Goyal et
    # al. 2017: lr proportional to the global batch; pair it with warmup_steps)
    lr_scaling: str = "none"
    ema_decay: float = 0.0  # >0: predict and validate with an exponential moving average of weights
    # >0: that average, with its horizon 1/(1 - decay) this fraction of the run's steps (for a
    # time-bounded run, the steps it is on course for: steps done / fraction of the time spent)
    ema_fraction: float = 0.0
    steps: int | None = None
    epochs: int | None = None
    time_limit_min: float | None = None  # stop (and save) after this many minutes
    # loss
    loss_bbox: float = 5.0
    loss_conf_pos: float = 75.0
    loss_conf_neg: float = 100.0
    loss_class: float = 1.0
    # post-processing
    top_k: int = 64
    nms_iou: float = 0.4
    # validation also on the flipped images, merged by one NMS (postprocess.TTA_VIEWS):
    # none, hflip (mirrored too) or flips (mirrored, upside down and both: top-down imagery)
    tta: str = "none"
    # run
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    amp: bool = True  # mixed precision: CUDA bf16/fp16; CPU bf16 training where native
    deterministic: bool = False  # bit-exact reruns and resumes on a GPU (slower cuDNN kernels)
    log_every: int = 10
    val_every: int = 0  # steps; 0: only at the end
    checkpoint_every: int = 500
    val_max_images: int | None = None

    def __post_init__(self) -> None:
        problems = []
        positive = ("batch_size", "lr", "lr_decay_steps", "log_every", "checkpoint_every", "top_k")
        for name in positive:
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive (got {getattr(self, name)})")
        for name in ("steps", "epochs", "time_limit_min", "val_max_images"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                problems.append(f"{name} must be positive (got {v})")
        for name in ("ema_decay", "warmup_fraction", "ema_fraction"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1) (got {getattr(self, name)})")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if not 0 <= self.flip_prob <= 1:
            problems.append(f"flip_prob must be in [0, 1] (got {self.flip_prob})")
        if not 0 < self.nms_iou <= 1:
            problems.append(f"nms_iou must be in (0, 1] (got {self.nms_iou})")
        if self.tta not in ("none", "hflip", "flips"):
            problems.append(f"tta must be none, hflip or flips (got {self.tta!r})")
        if self.lr_schedule not in ("step", "cosine"):
            problems.append(f"lr_schedule must be 'step' or 'cosine' (got {self.lr_schedule!r})")
        if self.lr_scaling not in ("none", "linear"):
            problems.append(f"lr_scaling must be 'none' or 'linear' (got {self.lr_scaling!r})")
        if self.recipe not in ("auto", "paper", "small"):
            problems.append(f"recipe must be auto, paper or small (got {self.recipe!r})")
        problems += _augment_problems(self.augment)
        if self.optimizer not in ("sgd", "adamw"):
            problems.append(f"optimizer must be 'sgd' or 'adamw' (got {self.optimizer!r})")
        if self.classes is not None and not self.classes:
            problems.append("classes must name at least one class")
        if self.data_format not in ("auto", "kitti", "coco", "voc", "yolo"):
            problems.append(f"data_format must be auto, kitti, coco, voc or yolo "
                            f"(got {self.data_format!r})")
        choices = {"normalization": ("torchvision", "caffe", "kitti", "per_image"),
                   "anchor_centers": ("original", "cell"), "padding": ("torch", "tf")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)} "
                                f"(got {getattr(self, name)!r})")
        if self.weights is not None and self.pretrained is not None:
            problems.append("weights (a checkpoint to fine-tune) and pretrained (ImageNet "
                            "backbone weights) cannot both be set")
        if self.tile is not None and (len(self.tile) != 2 or min(self.tile) < 16):
            problems.append(f"tile must be (W, H), each at least 16 (got {self.tile})")
        if self.crop is not None:
            if len(self.crop) != 2 or min(self.crop) < 16:
                problems.append(f"crop must be (W, H), each at least 16 (got {self.crop})")
            elif self.input_size is not None and len(self.input_size) == 2 and (
                    self.crop[0] > self.input_size[0] or self.crop[1] > self.input_size[1]):
                problems.append(f"crop {self.crop[0]}x{self.crop[1]} must fit in input_size "
                                f"{self.input_size[0]}x{self.input_size[1]} (the windows are cut "
                                "from the images resized to it)")
        if not 0 <= self.tile_overlap < 1:
            problems.append(f"tile_overlap must be in [0, 1) (got {self.tile_overlap})")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 16):
            problems.append(f"input_size must be (W, H), each at least 16 (got {self.input_size})")
        if self.workers < 0 or self.val_every < 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            problems.append("workers, val_every, warmup_steps and grad_clip cannot be negative")
        problems += _value_problems(self)
        if problems:
            raise SqueezeDetError("invalid configuration: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples), ready for YAML or a checkpoint."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "configuration") -> TrainConfig:
        """Build from a mapping, converting lists to tuples; unknown keys are an error."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in fields:
                raise SqueezeDetError(f"{source}: unknown setting {key!r}{_suggest(key, fields)}")
            kwargs[key] = _coerce(value, hints[key], key, source)
        return cls(**kwargs)

    def with_overrides(self, values: Mapping[str, Any], source: str = "override") -> TrainConfig:
        """A copy with some settings replaced (validated like :meth:`from_dict`)."""
        merged = {**self.to_dict(), **values}
        return TrainConfig.from_dict(merged, source)


#: Names other detection projects (and the original SqueezeDet's config) give to settings, and the
#: setting that means the same here; an unknown key found here gets that name as its suggestion.
ALIASES = {
    "learning_rate": "lr", "base_lr": "lr", "lr0": "lr", "initial_lr": "lr",
    "batch": "batch_size", "bs": "batch_size", "num_workers": "workers",
    "imgsz": "input_size", "img_size": "input_size", "image_size": "input_size",
    "max_steps": "steps", "max_iter": "steps", "max_iters": "steps", "iterations": "steps",
    "iters": "steps", "num_steps": "steps", "epoch": "epochs", "num_epochs": "epochs",
    "max_epochs": "epochs", "wd": "weight_decay", "optim": "optimizer",
    "nms_thresh": "nms_iou", "nms_threshold": "nms_iou", "iou_threshold": "nms_iou",
    "iou_thres": "nms_iou", "top_n_detection": "top_k", "topk": "top_k",
    "max_grad_norm": "grad_clip", "clip_grad": "grad_clip", "clip_grad_norm": "grad_clip",
    "gradient_clip": "grad_clip", "names": "classes", "class_names": "classes",
    "format": "data_format", "dataset_format": "data_format",
    "eval_every": "val_every", "val_interval": "val_every", "eval_interval": "val_every",
    "save_every": "checkpoint_every", "save_period": "checkpoint_every", "ema": "ema_decay",
    "warmup": "warmup_steps", "warmup_iters": "warmup_steps", "scheduler": "lr_schedule",
    "augmentation": "augment", "aug": "augment", "augmentations": "augment",
    "lr_scheduler": "lr_schedule", "gamma": "lr_decay", "lr_gamma": "lr_decay",
    "lr_decay_factor": "lr_decay", "step_size": "lr_decay_steps", "decay_steps": "lr_decay_steps",
    "cache": "cache_images", "anchor_shapes": "anchors", "pretrained_weights": "pretrained",
    "backbone_weights": "pretrained", "dropout_rate": "dropout", "fliplr": "flip_prob",
    "flip": "flip_prob", "time_limit": "time_limit_min", "max_time": "time_limit_min",
    "loss_coef_bbox": "loss_bbox", "loss_coef_conf_pos": "loss_conf_pos",
    "loss_coef_conf_neg": "loss_conf_neg", "loss_coef_class": "loss_class",
}


def _suggest(key: str, fields: Mapping[str, Any] | Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for an unknown setting (an alias, another case, a near miss)."""
    lowered = key.strip().lower().replace("-", "_")
    if lowered in ("keep_prob", "keep_probability"):
        return "; use dropout = 1 - keep_prob (e.g. dropout=0.5 for keep_prob 0.5)"
    if lowered in fields:
        return f"; did you mean {lowered!r}?"
    if lowered in ALIASES:
        return f"; did you mean {ALIASES[lowered]!r}? ({key} is called {ALIASES[lowered]} here)"
    close = difflib.get_close_matches(lowered, list(fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _value_problems(cfg: TrainConfig) -> list[str]:
    """What :meth:`TrainConfig.__post_init__` checks beyond its own list: every number finite
    (a setting added later included), the ranges and choices of the remaining settings."""
    import math

    problems = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        numbers = _numbers(value)
        if any(not math.isfinite(v) for v in numbers):
            problems.append(f"{f.name} must be a finite number (got {value})")
    if problems:  # the range checks below would only repeat them
        return problems
    if not 0 < cfg.lr_decay <= 1:
        problems.append(f"lr_decay must be in (0, 1] (got {cfg.lr_decay})")
    if not 0 <= cfg.momentum < 1:
        problems.append(f"momentum must be in [0, 1) (got {cfg.momentum})")
    for name in ("weight_decay", "loss_bbox", "loss_conf_pos", "loss_conf_neg", "loss_class"):
        if getattr(cfg, name) < 0:
            problems.append(f"{name} cannot be negative (got {getattr(cfg, name)})")
    if len(cfg.drift) != 2 or min(cfg.drift) < 0:
        problems.append(f"drift must be (max_dx, max_dy), each >= 0 (got {cfg.drift})")
    if cfg.seed < 0:
        problems.append(f"seed must be >= 0 (got {cfg.seed})")
    if cfg.anchors is not None:
        if not cfg.anchors:
            problems.append("anchors must list at least one (w, h) shape")
        elif any(len(a) != 2 or min(a) <= 0 for a in cfg.anchors):
            problems.append(f"anchors must be (w, h) shapes with w, h > 0 (got {cfg.anchors})")
    if cfg.classes:
        if any(not c.strip() for c in cfg.classes):
            problems.append(f"classes has a blank name: {list(cfg.classes)}")
        lowered = [c.strip().lower() for c in cfg.classes]
        if len(set(lowered)) != len(lowered):
            problems.append(f"classes are listed twice (case-insensitively): {list(cfg.classes)}")
    for name in ("train_split", "val_split", "model", "device"):
        if not str(getattr(cfg, name)).strip():
            problems.append(f"{name} cannot be empty")
    return problems


#: the names ``augment`` takes (see squeezedet.data.augment)
AUGMENTATIONS = ("zoom", "vflip", "rot90", "jitter", "mosaic")


def augment_names(value: str) -> tuple[str, ...]:
    """The augmentation names of an ``augment`` setting (``"+"`` and ``"none"`` left out)."""
    names = [n.strip().lower() for n in value.removeprefix("+").split(",")]
    return tuple(n for n in names if n and n != "none")


def _augment_problems(value: str) -> list[str]:
    unknown = [n for n in augment_names(str(value)) if n not in AUGMENTATIONS]
    if unknown:
        return [f"augment: unknown {', '.join(map(repr, unknown))}; choose from "
                f"{', '.join(AUGMENTATIONS)} (comma-separated), or none"]
    return []


def _numbers(value: Any) -> list[float]:
    """The floats in a setting's value (nested tuples included); ints and strings are skipped."""
    if isinstance(value, float):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _numbers(item)]
    return []


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Convert YAML/CLI values to the field's type (strings from the command line included)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise SqueezeDetError(f"{source}: {key} cannot be empty")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        if isinstance(value, str) and value.lower() in ("none", "null", ""):
            return None
        return _coerce(value, inner[0], key, source)
    try:
        if origin is tuple:
            if isinstance(value, str):
                value = _parse_sequence(value)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(v, args[0], key, source) for v in value)
            if len(value) != len(args):
                raise ValueError(f"expected {len(args)} values")
            return tuple(_coerce(v, a, key, source) for v, a in zip(value, args, strict=True))
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError("expected true or false")
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
    except (ValueError, TypeError) as exc:
        raise SqueezeDetError(f"{source}: bad value {value!r} for {key} ({exc})") from None
    return value


_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


def parse_size(text: str, what: str = "size", minimum: int = 1) -> tuple[int, int]:
    """``"WxH"`` (e.g. ``"1248x384"`` or ``"1248X384"``) as ``(W, H)``, each at least ``minimum``.

    The one parser of sizes written as text (command-line options, settings); a bad one is a
    one-line :class:`SqueezeDetError` naming ``what`` (e.g. ``"--input-size"``).
    """
    m = _SIZE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise SqueezeDetError(f"{what} must be WIDTHxHEIGHT, e.g. 1248x384 (got {text!r})")
    w, h = int(m.group(1)), int(m.group(2))
    if min(w, h) < minimum:
        raise SqueezeDetError(f"{what} must be at least {minimum}x{minimum} (got {text!r})")
    return w, h


def _parse_sequence(text: str) -> Sequence[Any]:
    """``"624x192"``, ``"a,b,c"`` or a YAML list ``"[[1, 2], [3, 4]]"``."""
    text = text.strip()
    if text.startswith("["):
        return yaml.safe_load(text)
    if _SIZE.fullmatch(text):  # a pair (size, drift): zeros are the settings' own checks
        return list(parse_size(text, minimum=0))
    return [p.strip() for p in text.split(",") if p.strip()]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                base: TrainConfig | None = None) -> TrainConfig:
    """A configuration from a YAML file and ``key=value`` strings, over ``base`` or the defaults."""
    cfg = base or TrainConfig()
    if path is not None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise SqueezeDetError(f"{p}: configuration file not found") from None
        except yaml.YAMLError as exc:
            raise SqueezeDetError(f"{p}: not valid YAML ({exc})".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise SqueezeDetError(f"{p}: expected a mapping of settings at the top level")
        cfg = cfg.with_overrides(data, str(p))
    values: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise SqueezeDetError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        values[key.strip()] = value.strip()
    if values:
        cfg = cfg.with_overrides(values, "command line")
    return cfg


def given_settings(path: str | Path | None = None, overrides: Sequence[str] = ()) -> set[str]:
    """The setting names a configuration file and ``key=value`` strings set (what
    :func:`load_config` read them from), whatever their values: a recipe keeps those."""
    names = {item.split("=", 1)[0].strip() for item in overrides if "=" in item}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        names |= set(data) if isinstance(data, dict) else set()
    return names


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (atomically: a killed process leaves the old file
    or the new one, never half of one)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    os.replace(tmp, path)


__all__ = ["AUGMENTATIONS", "TrainConfig", "augment_names", "given_settings", "load_config",
           "parse_size", "save_config"]
