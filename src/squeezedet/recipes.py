"""Training recipes, and the choice of one from a look at the data.

Two recipes:

- ``paper``: the original KITTI recipe (SGD, lr 0.01 halved every 10,000 steps, batch 20, drift and
  horizontal flips) — :class:`~squeezedet.config.TrainConfig`'s defaults. Right for KITTI-sized data
  and for fine-tuning from ImageNet or a checkpoint.
- ``small``: for a small data set trained from scratch (a few photographs, a few hundred boxes): it
  has to learn in minutes from few objects, so every step must count and see many different views.
  Squeeze batch norm, AdamW at 1e-3 (for a batch of 8, scaled with the square root of the batch)
  with a linear warm-up over 5 % of the run and a cosine to zero, a moving average of the weights
  whose horizon is 5 % of the run, dropout 0.2, the images kept in memory, no drift (and no
  other augmentation than the horizontal flip unless asked: ``augment=``), a batch of at most 8
  and at most half the samples, room in ``top_k`` for 8 candidates for every object of the
  densest sample, and ten minutes when the run's length is not given. When the objects are small
  against the input (median box at most an eighth of its shorter side), training windows of half
  its width and height (``crop``) with a batch of up to 16: a step then costs about half the time
  of a step of 8 whole inputs. Validation detects each image in the views it was trained in
  (``tta``): mirrored too, and upside down and both when trained with vertical flips or quarter
  turns (top-down imagery).

``recipe=auto`` (the default) picks ``small`` for a data set of at most :data:`SMALL_SAMPLES`
training samples (images, or tiles with ``tile``) trained from scratch, else ``paper``;
:func:`choose_recipe` says in one line what it chose and why. A setting given on the command line
or in a configuration file, or with a value other than its default, keeps its value;
``augment=+rot90`` adds to the recipe's augmentation instead of replacing it.

The warm-up and the averaging horizon follow the run's length: ``steps``, ``epochs`` times the
batches of an epoch, or for a time-bounded run (``time_limit_min``, ``train --minutes``) the clock:
the warm-up lasts 5 % of the time and the averaging horizon is 5 % of the steps the run is on
course for, so that a machine whose load changes during the run still gets the schedule fitted to
the steps it does.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from squeezedet.config import TrainConfig, augment_names

#: at most this many training samples (images or tiles) trained from scratch: the small recipe.
SMALL_SAMPLES = 1000
#: the small recipe's run when neither steps, epochs nor a time limit is given, minutes
SMALL_DEFAULT_MINUTES = 10.0
#: the small recipe's augmentation beyond the horizontal flip: none. In runs of minutes every extra
#: transform slowed learning more than it helped (docs/small-data.md: on drawn crowns, 150 steps,
#: AP@0.5 on the training tiles 97.9 without, 71.0 with mosaic, 57.7 with colour jitter, 11.1
#: with zoom); ``rot90`` and ``vflip``, exact symmetries of top-down imagery, are added with
#: ``augment=+rot90,vflip``
SMALL_AUGMENT = ""

#: the small recipe's ``top_k``: room for this many candidates an object of the densest sample
#: before NMS (a power of 2, 64 to 1024)
ROOM_PER_BOX = 8

RECIPES = ("auto", "paper", "small")


@dataclass(frozen=True)
class DataSummary:
    """What the recipe choice looks at: counts and the boxes' sizes at the network input."""

    images: int  # whole images of the training split
    samples: int  # what an epoch draws: images, or tiles when tiling
    boxes: int  # training boxes over all samples (a box in two tiles counts twice)
    max_boxes: int  # the most boxes of one sample
    classes: int
    median_box: tuple[float, float] | None  # (w, h) at the network input, pixels (None: not looked)

    def describe(self) -> str:
        tiles = f" in {self.samples} tiles" if self.samples != self.images else ""
        text = (f"{self.images} images{tiles}, {self.boxes} boxes (at most {self.max_boxes} in "
                f"one), {self.classes} class{'es' if self.classes != 1 else ''}")
        if self.median_box is not None:
            text += f", median box {self.median_box[0]:.0f}x{self.median_box[1]:.0f} px"
        return text


def summarize(boxes_per_sample: list[np.ndarray], images: int, classes: int,
              sizes: bool = True) -> DataSummary:
    """A :class:`DataSummary` from each training sample's boxes (``[N, 4]`` xyxy at the network
    input) and the number of whole images and classes (``sizes=False``: no median box)."""
    counts = [len(b) for b in boxes_per_sample]
    every = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes_per_sample if len(b)]
    median: tuple[float, float] | None = None
    if sizes and every:
        boxes = np.concatenate(every)
        wh = boxes[:, 2:] - boxes[:, :2]
        median = (float(np.median(wh[:, 0])), float(np.median(wh[:, 1])))
    return DataSummary(images=images, samples=len(boxes_per_sample), boxes=int(sum(counts)),
                       max_boxes=max(counts, default=0), classes=classes, median_box=median)


def summarize_dataset(ds: Any) -> DataSummary:
    """The :class:`DataSummary` of a training data set (a
    :class:`~squeezedet.data.dataset.SampleSet`): boxes scaled to its ``input_size``; the image
    sizes are read from the files' headers only for a small data set."""
    from squeezedet.data.files import image_size
    from squeezedet.errors import DataError

    small = len(ds) <= SMALL_SAMPLES
    scaled = []
    for i in range(len(ds)):
        boxes = ds.target_boxes(i)
        if not small:
            scaled.append(boxes)
            continue
        window = ds.window(i)
        try:
            w, h = ((window[2] - window[0], window[3] - window[1]) if window is not None
                    else image_size(ds.image_path(i)))
        except DataError:  # unreadable and skipped (skip_bad): the data check said so
            continue
        sx, sy = ds.input_size[0] / w, ds.input_size[1] / h
        scaled.append(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * [sx, sy, sx, sy])
    images = len({str(ds.image_path(i)) for i in range(len(ds))})
    return summarize(scaled, images, len(ds.classes), sizes=small)


def from_scratch(cfg: TrainConfig) -> bool:
    """No ImageNet backbone and no checkpoint to start from."""
    return not cfg.pretrained and not cfg.weights


def run_steps(cfg: TrainConfig, samples: int, batch: int) -> tuple[int | None, str]:
    """The run's length in steps for fitting the schedule (``None``: time-bounded, the schedule
    follows the clock), and how it was found."""
    if cfg.steps is not None:
        return cfg.steps, f"{cfg.steps} steps"
    if cfg.epochs is not None:
        per_epoch = max(1, samples // batch)
        return cfg.epochs * per_epoch, f"{cfg.epochs} epochs of {per_epoch} steps"
    return None, f"{cfg.time_limit_min or SMALL_DEFAULT_MINUTES:g} min"


def half_crop(summary: DataSummary, input_size: tuple[int, int]) -> tuple[int, int] | None:
    """Training windows of half the input's width and height (multiples of 16) when the median
    box is at most a quarter of such a window's shorter side (objects keep their size at the
    network input, a step costs a quarter of the pixels); else ``None``."""
    if summary.median_box is None or min(input_size) < 256:
        return None
    crop = (input_size[0] // 32 * 16, input_size[1] // 32 * 16)
    return crop if 4 * max(summary.median_box) <= min(crop) else None


def small_recipe(summary: DataSummary, input_size: tuple[int, int]) -> dict[str, Any]:
    """The ``small`` recipe's settings that do not depend on the run's length (``input_size``:
    the network's ``(W, H)``)."""
    batch = int(min(8, max(2, summary.samples // 2)))
    # a crown scores high on several anchors (neighbouring cells, similar shapes), so NMS needs
    # several candidates an object: 2 an object capped recall (AP@0.5 29.8 % against 32.2 % with
    # 8 on a held-out photo of 280 crowns in 28 tiles, docs/small-data.md)
    room = min(1024, 2 ** math.ceil(math.log2(max(1, ROOM_PER_BOX * summary.max_boxes))))
    settings: dict[str, Any] = {}
    crop = half_crop(summary, input_size)
    if crop is not None:  # a quarter of the pixels a step: more steps in the time, batch doubled
        settings["crop"] = crop
        batch = int(min(16, max(2, summary.samples // 2)))
    return {
        **settings,
        "squeeze_bn": True, "optimizer": "adamw", "lr": round(1e-3 * math.sqrt(batch / 8), 6),
        "lr_schedule": "cosine", "dropout": 0.2, "cache_images": True, "batch_size": batch,
        "drift": (0, 0), "augment": SMALL_AUGMENT, "top_k": int(max(64, room)),
    }


def fitted_to_length(steps: int | None) -> dict[str, Any]:
    """Warm-up over 5 % of a run of ``steps`` (at least 5, at most 300 steps) and an averaging
    horizon ``1 / (1 - ema_decay)`` of 5 % of it (at least 5 steps); for a time-bounded run
    (``steps`` ``None``) the same fractions of its time and of the steps it is on course for, as
    the clock tells while it trains (``warmup_fraction``, ``ema_fraction``): an estimate of the
    steps from a few timed ones was off by ten times and more on a loaded machine."""
    if steps is None:
        return {"warmup_fraction": 0.05, "ema_fraction": 0.05}
    return {"warmup_steps": int(min(300, max(5, round(0.05 * steps)))),
            "ema_decay": round(1 - 1 / max(5.0, 0.05 * steps), 5)}


def choose_recipe(cfg: TrainConfig, summary: DataSummary,
                  given: Collection[str] = ()) -> tuple[TrainConfig, str]:
    """The configuration with the recipe applied (``recipe`` set to the one used), and one line
    saying what was chosen and why.

    The settings named in ``given`` (those the user set, e.g. ``squeeze_bn=false``:
    :func:`~squeezedet.config.given_settings`) and those whose value differs from
    :class:`TrainConfig`'s default are the user's and are kept; a warm-up or averaging given in
    steps (``warmup_steps``, ``ema_decay``) is not joined by one fitted to the time.
    """
    name = cfg.recipe
    if name == "auto":
        small = summary.samples <= SMALL_SAMPLES and from_scratch(cfg)
        name = "small" if small else "paper"
        why = (f"{summary.samples} training samples <= {SMALL_SAMPLES}, from scratch" if small else
               f"{summary.samples} training samples > {SMALL_SAMPLES}" if from_scratch(cfg) else
               "starting from pretrained weights")
    else:
        why = "recipe=" + name
    if name == "paper":
        return replace(cfg, recipe="paper"), f"recipe: paper ({why}; {summary.describe()})"
    default = TrainConfig()
    given = set(given) | {f.name for f in fields(TrainConfig)
                          if getattr(cfg, f.name) != getattr(default, f.name)}
    from squeezedet.models.registry import network_input_size

    settings = small_recipe(summary, network_input_size(cfg.model, cfg.input_size))
    if cfg.augment.startswith("+"):
        mine = augment_names(settings["augment"])
        settings["augment"] = ",".join([*mine, *(n for n in augment_names(cfg.augment)
                                                 if n not in mine)])
        given.discard("augment")
    augment = settings["augment"] if "augment" not in given else cfg.augment
    settings["tta"] = ("flips" if {"vflip", "rot90"} & set(augment_names(augment))
                       else "hflip" if cfg.flip_prob > 0 else "none")
    if not ({"steps", "epochs", "time_limit_min"} & given):
        settings["time_limit_min"] = SMALL_DEFAULT_MINUTES
    chosen = {k: v for k, v in settings.items() if k not in given and getattr(cfg, k) != v}
    fitted = replace(cfg, **chosen)
    steps, length = run_steps(fitted, summary.samples, fitted.batch_size)
    settings.update(fitted_to_length(steps))
    by_steps = {"warmup_fraction": "warmup_steps", "ema_fraction": "ema_decay"}
    chosen.update({k: v for k, v in settings.items() if k not in given and k not in chosen
                   and by_steps.get(k) not in given and getattr(cfg, k) != v})
    shown = ", ".join(f"{k}={_show(v)}" for k, v in chosen.items())
    kept = sorted(given & (set(settings) | {by_steps[k] for k in settings if k in by_steps}))
    line = (f"recipe: small ({why}; {summary.describe()}); for {length}: {shown}"
            + ("; kept as given: " + ", ".join(kept) if kept else ""))
    return replace(cfg, recipe="small", **chosen), line


def resolve_recipe(cfg: TrainConfig, train_ds: Any,
                   given: Collection[str] = ()) -> tuple[TrainConfig, str]:
    """:func:`choose_recipe` for a training data set (checked: its bad samples left out)."""
    return choose_recipe(cfg, summarize_dataset(train_ds), given)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)
