"""``load_runner``: a runner for a weights file, by backend name or automatically;
``recorded_postprocess``: the post-processing its training run validated with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from squeezedet.checkpoint import validation_postprocess
from squeezedet.deployment.runners.auto import (
    convert_checkpoint,
    fastest_cpu_runner,
    fastest_file_runner,
)
from squeezedet.deployment.runners.protocol import PRECISIONS, Runner, check_cpu, metadata_path
from squeezedet.deployment.runners.registry import BACKENDS, CHECKPOINT_SUFFIXES, suffixes
from squeezedet.deployment.runners.torch_runner import TorchRunner
from squeezedet.errors import SqueezeDetError


def _checked(weights: str | Path, backend: str, precision: str | None) -> Path:
    """``weights`` as a path, after the checks that need no backend: it exists, its type is one
    some backend opens, the backend and precision are known."""
    path = Path(weights)
    if not path.exists():
        raise SqueezeDetError(f"{path}: weights file not found")
    if precision is not None and precision not in PRECISIONS:
        raise SqueezeDetError(
            f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if backend != "auto" and backend not in BACKENDS:
        raise SqueezeDetError(
            f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
    known = suffixes()
    if path.suffix.lower() not in known:
        raise SqueezeDetError(f"{path}: unknown weights type {path.suffix!r}; known: "
                              + ", ".join(sorted(known)))
    return path


def load_runner(weights: str | Path, backend: str = "auto", device: str = "cpu", *,
                precision: str | None = None, threads: int | None = None) -> Runner:
    """A runner for ``weights``.

    Args:
        weights: a checkpoint (``.pt``) or an exported model (``.onnx``, ``.xml``,
            ``.torchscript``, …) with its metadata file.
        backend: ``"auto"`` (by file type; for a checkpoint on the CPU the fastest installed
            runtime, see :mod:`~squeezedet.deployment.runners.auto`) or a name of
            :data:`~squeezedet.deployment.runners.registry.BACKENDS`. A backend that converts
            checkpoints (``onnxruntime``, ``openvino``) given a checkpoint converts it in memory.
        device: where to run (ONNX Runtime and OpenVINO run on the CPU).
        precision: ``"fp32"`` or ``"bf16"`` for checkpoints and OpenVINO (default: fp32, or what
            the export recorded); int8 comes from an int8 export.
        threads: CPU threads of ONNX Runtime / OpenVINO (default: torch's setting).
    """
    path = _checked(weights, backend, precision)
    suffix = path.suffix.lower()
    checkpoint = suffix in CHECKPOINT_SUFFIXES
    if backend == "auto":
        if not checkpoint:
            return fastest_file_runner(path, device, precision=precision, threads=threads)
        if torch.device(device).type != "cpu":
            return TorchRunner(path, device, precision=precision or "fp32")
        return fastest_cpu_runner(path, precision=precision or "fp32", threads=threads)
    spec = BACKENDS[backend]
    if suffix in spec.suffixes:
        return spec.open(path, device, precision=precision, threads=threads)
    if checkpoint and spec.convert is not None:
        check_cpu(device, backend)
        return convert_checkpoint(path, backend, precision=precision or "fp32", threads=threads)
    if checkpoint:
        raise SqueezeDetError(
            f"{path}: the {backend} backend needs an exported model: run 'squeezedet export "
            f"--weights {path} --format {backend}'")
    raise SqueezeDetError(f"{path}: the {backend} backend cannot open {suffix} files "
                          f"(it opens {', '.join(spec.suffixes)})")


def recorded_postprocess(weights: str | Path) -> dict[str, Any]:
    """``top_k``, ``nms_iou`` and ``tta`` as the training run of ``weights`` validated with: from a
    ``.pt`` checkpoint's configuration, or the ``postprocess`` an export recorded in its metadata
    file; ``{}`` when neither says (a model exported before they were recorded, a checkpoint
    without its configuration), so that the caller's defaults apply."""
    path = Path(weights)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return validation_postprocess(path)
    try:
        recorded = json.loads(metadata_path(path).read_text()).get("postprocess")
    except (OSError, ValueError, AttributeError):  # the runner reports a bad metadata file
        return {}
    return dict(recorded) if isinstance(recorded, dict) else {}
