"""Checkpoints: atomic writes, clear errors on load, and rebuilding a model from one.

A checkpoint is a dict with ``model`` (state dict), ``meta`` (:meth:`SqueezeDet.metadata`:
name, classes, input size, anchors and their centres, normalisation, padding), ``config`` (the
resolved training settings) and, for resuming, ``optimizer``, ``step``, ``rng`` and ``best``
(a checkpoint written by ``squeezedet import-weights`` has no optimiser state: resuming from it
starts at step 0 with a fresh optimiser). ``meta`` alone rebuilds the model
(:func:`model_settings` reads it), so prediction needs no configuration file;
:func:`config_from_checkpoint` gives the training configuration a checkpoint records,
:func:`fine_tuning_config` the settings of a new run starting from its weights.

:func:`init_from_checkpoint` is the weight surgery of fine-tuning: a checkpoint's weights into a
model of the same architecture, whose classes may be reordered or new.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from squeezedet import codec
from squeezedet.config import TrainConfig
from squeezedet.errors import SqueezeDetError
from squeezedet.models import SqueezeDet, create_model
from squeezedet.models.detector import convdet_order_from_class_order

log = logging.getLogger("squeezedet.checkpoint")

FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A crash mid-write leaves the previous checkpoint intact.
    """
    write_atomic(path, lambda f: torch.save({"format_version": FORMAT_VERSION, **state}, f))


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` with a binary file that becomes ``path`` only once it is complete and on
    disk (a temporary file in the same folder, flushed, synced, then renamed over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (CPU tensors).

    ``mmap=True`` maps the file instead of reading it: tensors not used (the optimiser state,
    the raw training weights) never take memory. Prediction loads this way.

    A compressed checkpoint (``squeezedet compress``; recognised by its magic bytes, whatever its
    suffix) loads as the same dict with its weights decoded; ``mmap`` does not apply to it.
    """
    path = Path(path)
    if not path.is_file():
        raise SqueezeDetError(f"{path}: checkpoint not found")
    if codec.is_encoded(path):
        state, header = codec.read_encoded(path)
        if "meta" not in header:
            raise SqueezeDetError(f"{path}: a compressed file without model metadata; compress "
                                  "a checkpoint with 'squeezedet compress'")
        return {"model": state, **header}
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            # files in torch's legacy (non-zip) format cannot be mapped
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        raise SqueezeDetError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
        raise SqueezeDetError(
            f"{path}: not a SqueezeDet checkpoint (no 'model'/'meta'); to start from ImageNet "
            "weights use the 'pretrained' setting instead"
        )
    return ckpt


def model_settings(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The model a checkpoint's (or an exported file's) ``meta`` describes, as
    :func:`~squeezedet.models.create_model`'s arguments (``name`` first): classes, input size
    ``(W, H)``, anchor shapes, and the normalisation, anchor centres and padding, which files
    written before those settings existed lack (their defaults then)."""
    return {
        "name": meta.get("model"),  # None in an exported file's metadata that lacks it
        "class_names": tuple(str(c) for c in meta["class_names"]),
        "input_size": (int(meta["input_size"][0]), int(meta["input_size"][1])),
        "anchor_shapes": tuple((float(w), float(h)) for w, h in meta["anchor_shapes"]),
        "normalization": meta.get("normalization", "torchvision"),
        "anchor_centers": meta.get("anchor_centers", "original"),
        "padding": meta.get("padding", "torch"),
    }


def model_from_checkpoint(ckpt: dict[str, Any] | str | Path) -> SqueezeDet:
    """Rebuild the model a checkpoint describes and load its weights (in eval mode, on CPU)."""
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt, mmap=True)
    settings = model_settings(ckpt["meta"])
    name = settings.pop("name")
    if name is None:
        raise SqueezeDetError("the checkpoint's metadata names no model ('model'); re-save it "
                              "with this version")
    model = create_model(name, **settings)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise SqueezeDetError(
            f"checkpoint weights do not fit {ckpt['meta']['model']}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected tensors"
        )
    return model.eval()


def config_from_checkpoint(ckpt: dict[str, Any] | str | Path) -> TrainConfig:
    """The training configuration a checkpoint records: what a resumed run continues with. A
    checkpoint that records none gives the defaults with its model's settings
    (:func:`fine_tuning_config` without ``weights``)."""
    source = "checkpoint configuration" if isinstance(ckpt, dict) else f"{ckpt}"
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt, mmap=True)
    if isinstance(ckpt.get("config"), dict):
        return TrainConfig.from_dict(ckpt["config"], source)
    return _model_config(ckpt, weights=None)


def validation_postprocess(path: str | Path | dict[str, Any]) -> dict[str, Any]:
    """``top_k``, ``nms_iou`` and ``tta`` as the run of checkpoint ``path`` (or a loaded one)
    validated with, for prediction to give what validation measured; ``{}`` for another file or a
    checkpoint recording no configuration."""
    if not isinstance(path, dict) and Path(path).suffix != ".pt":
        return {}
    ckpt = path if isinstance(path, dict) else load_checkpoint(path, mmap=True)
    recorded = ckpt.get("config")
    if not isinstance(recorded, dict):
        return {}
    return {k: recorded[k] for k in ("top_k", "nms_iou", "tta") if k in recorded}


def fine_tuning_config(path: str | Path) -> TrainConfig:
    """A new run starting from the checkpoint ``path``'s weights (``weights=path``): its model's
    settings (model, input size, classes, anchors, normalisation, padding) and whether its run
    kept the stem frozen; every other setting at its default."""
    return _model_config(load_checkpoint(path, mmap=True), weights=str(path))


def _model_config(ckpt: dict[str, Any], weights: str | None) -> TrainConfig:
    m = model_settings(ckpt["meta"])
    recorded = ckpt.get("config") or {}
    return TrainConfig(
        model=m["name"], input_size=m["input_size"], classes=m["class_names"],
        anchors=m["anchor_shapes"], normalization=m["normalization"],
        anchor_centers=m["anchor_centers"], padding=m["padding"],
        freeze_stem=recorded.get("freeze_stem"), weights=weights,
    )


def init_from_checkpoint(model: SqueezeDet, path: str | Path) -> None:
    """Fine-tuning: start ``model`` from the weights of a checkpoint (ours, or one written by
    ``squeezedet import-weights``) of the same architecture.

    With the same classes in another order, ConvDet's class channels are reordered; with other
    classes or another anchor count, ConvDet keeps its fresh initialisation (a warning says so).
    Backbone tensors must fit exactly.
    """
    ckpt = load_checkpoint(path, mmap=True)
    meta = ckpt["meta"]
    if meta["model"] != model.name:
        raise SqueezeDetError(f"{path}: holds {meta['model']} weights, the configuration builds "
                              f"{model.name} (set model={meta['model']})")
    state = dict(ckpt["model"])
    source = [str(c).lower() for c in meta["class_names"]]
    ours = [c.lower() for c in model.class_names]
    k = model.num_anchors
    if len(meta["anchor_shapes"]) == k and sorted(source) == sorted(ours) and source != ours:
        order = convdet_order_from_class_order(k, source, ours)
        state["convdet.weight"] = state["convdet.weight"][order]
        state["convdet.bias"] = state["convdet.bias"][order]
    elif len(meta["anchor_shapes"]) != k or sorted(source) != sorted(ours):
        log.warning("%s: its classes (%s) or anchor count (%d) differ from this run's (%s, %d); "
                    "ConvDet starts afresh", path, ", ".join(meta["class_names"]),
                    len(meta["anchor_shapes"]), ", ".join(model.class_names), k)
        state = {n: v for n, v in state.items() if not n.startswith("convdet.")}
    target = model.state_dict()
    wrong = [n for n, v in state.items() if n in target and tuple(v.shape) != tuple(target[n].shape)]
    missing = [n for n in target if n not in state and not n.startswith("convdet.")]
    if wrong or missing:
        raise SqueezeDetError(f"{path}: weights do not fit {model.name}: "
                              f"{len(missing)} missing, {len(wrong)} of another shape "
                              f"(first: {(missing + wrong)[0]})")
    model.load_state_dict(state, strict=False)
