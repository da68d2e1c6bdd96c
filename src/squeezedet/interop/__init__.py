"""Weights trained elsewhere, as ordinary checkpoints of this project.

>>> from squeezedet.interop import import_weights
>>> ckpt = import_weights("original", "model.ckpt-87000", model_name="squeezedet", out="kitti.pt")

Sources (one module each, with its variable-name map, layout conversions and the facts they rest
on): ``original`` (:mod:`~squeezedet.interop.original`, TensorFlow checkpoints of the original
SqueezeDet, read by :mod:`~squeezedet.interop.tf_bundle` without TensorFlow), ``pytorch-port``
(:mod:`~squeezedet.interop.pytorch_port`, ``.pth``) and ``keras-port``
(:mod:`~squeezedet.interop.keras_port`, ``.h5`` through h5py).

The checkpoint written holds the weights in our layout and the settings that make the model give
the source's detections — normalisation, anchor shapes and centres, padding, class order — in
``meta`` and ``config``, so ``predict``, ``evaluate``, ``export``, ``Detector`` and
``train --weights`` (fine-tuning) use it as they use our own; ``imported`` records where it came
from.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from squeezedet.errors import SqueezeDetError

SOURCES = ("original", "pytorch-port", "keras-port")


def source_module(source: str) -> ModuleType:
    """The module that knows ``source``."""
    import importlib

    modules = {"original": "original", "pytorch-port": "pytorch_port", "keras-port": "keras_port"}
    if source not in modules:
        raise SqueezeDetError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
    return importlib.import_module(f"squeezedet.interop.{modules[source]}")


def import_weights(source: str, path: str | Path, model_name: str = "squeezedet",
                   out: str | Path | None = None,
                   input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Convert the weights file ``path`` of ``source`` into a checkpoint (returned; also written
    to ``out`` when given).

    ``input_size`` ``(W, H)``: run the model at another size than the source did (the network is
    fully convolutional; anchor shapes are scaled along). Unknown, missing or mis-shaped tensors
    raise one :class:`SqueezeDetError` that names them.
    """
    from squeezedet.checkpoint import save_checkpoint
    from squeezedet.config import TrainConfig
    from squeezedet.models import create_model
    from squeezedet.ops.anchors import scale_anchor_shapes

    mod = source_module(source)
    spec = mod.source_model(model_name)
    size = tuple(input_size) if input_size is not None else spec.input_size
    shapes = scale_anchor_shapes(spec.anchor_shapes, spec.input_size, size)  # type: ignore[arg-type]
    model = create_model(spec.model, class_names=spec.class_names, input_size=size,
                         anchor_shapes=shapes, normalization=spec.normalization,
                         anchor_centers=spec.anchor_centers, padding=spec.padding)
    tensors = mod.read(path)
    state = mod.convert(tensors, model, str(path))
    model.load_state_dict(state, strict=True)
    model.eval()
    config = TrainConfig(model=spec.model, input_size=size,  # type: ignore[arg-type]
                         classes=tuple(spec.class_names), anchors=tuple(shapes),
                         normalization=spec.normalization, anchor_centers=spec.anchor_centers,
                         padding=spec.padding, freeze_stem=spec.freeze_stem)
    ckpt: dict[str, Any] = {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "meta": model.metadata(),
        "config": config.to_dict(),
        "step": 0,
        "imported": {"source": source, "file": str(Path(path)), "trained_on": spec.trained_on,
                     "tensors": len(state)},
    }
    if out is not None:
        save_checkpoint(ckpt, out)
    return ckpt


__all__ = ["SOURCES", "import_weights", "source_module"]
