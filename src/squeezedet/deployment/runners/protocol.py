"""The runner protocol, the backend registration record and what every backend shares.

A runner takes RGB images with values 0–255, ``float32 [B, 3, H, W]`` at the network input size,
and returns the raw ConvDet output ``[B, K·(C+5), gh, gw]`` as a float32 torch tensor. It carries
``meta``, the model description of :meth:`SqueezeDet.metadata` (classes, input size, anchors,
normalisation), which is all the post-processing needs.

Every exported file has a metadata file next to it, ``<file>.json`` (:func:`metadata_path`),
written by :mod:`squeezedet.deployment.export`: the model's :meth:`~SqueezeDet.metadata` plus the
export's format, precision and parity figures.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from squeezedet import cpu
from squeezedet.errors import SqueezeDetError

#: precisions a runner can be asked for
PRECISIONS = ("fp32", "bf16", "int8")


class Runner(Protocol):
    """Executes a model: images ``[B, 3, H, W]`` RGB 0–255 → raw head ``[B, K·(C+5), gh, gw]``."""

    meta: dict[str, Any]
    device: torch.device

    def __call__(self, images: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Backend:
    """A way to run a model, as :mod:`~squeezedet.deployment.runners.registry` lists it.

    Attributes:
        name: the ``backend=`` name (``--backend`` on the command line).
        suffixes: the file types it opens (lower case, with the dot).
        open: ``open(path, device, *, precision=None, threads=None) → Runner`` for such a file;
            ``precision`` ``None`` means the file's own (or fp32).
        module: the Python module it needs (``None``: PyTorch itself) and ``extra``, the
            ``squeezedet[extra]`` that installs it.
        convert: ``convert(conversion, precision, threads) → Runner``: a checkpoint converted in
            memory (:class:`~squeezedet.deployment.runners.conversion.Conversion`); such a
            backend runs checkpoints and is a candidate of ``backend="auto"``. ``None``: it
            needs an exported file.
        convert_precisions: the precisions ``convert`` builds.
        title: its name in messages (default: ``name``).
    """

    name: str
    suffixes: tuple[str, ...]
    open: Callable[..., Runner]
    module: str | None = None
    extra: str | None = None
    convert: Callable[[Any, str, int | None], Runner] | None = None
    convert_precisions: tuple[str, ...] = ("fp32",)
    title: str = ""

    @property
    def label(self) -> str:
        return self.title or self.name


def metadata_path(model_path: str | Path) -> Path:
    """The metadata file of an exported model: ``model.onnx`` → ``model.onnx.json``."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def read_metadata(model_path: str | Path) -> dict[str, Any]:
    """Read the metadata file written next to an exported model (clear error when missing)."""
    path = metadata_path(model_path)
    if not path.is_file():
        raise SqueezeDetError(
            f"{path}: metadata file not found; exported models need the .json written next to "
            "them by 'squeezedet export' (classes, input size, anchors, normalisation)"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SqueezeDetError(f"{path}: unreadable metadata file ({exc})") from None
    for key in ("class_names", "input_size", "anchor_shapes"):
        if key not in meta:
            raise SqueezeDetError(f"{path}: metadata has no {key!r}; re-export the model")
    if meta.get("outputs", "head") != "head":
        raise SqueezeDetError(
            f"{path}: this model was exported with --with-postprocess (it outputs boxes, scores "
            "and labels); runners need the raw head: re-export without --with-postprocess"
        )
    return meta


def one_line(exc: BaseException) -> str:
    """A runtime's exception text on one line (OpenVINO's span several)."""
    return " ".join(str(exc).split())


def check_cpu(device: str, backend: str) -> None:
    """Refuse a device other than the CPU for a backend that runs there only."""
    if torch.device(device).type != "cpu":
        raise SqueezeDetError(f"the {backend} backend runs on the CPU only, not {device!r}")


def per_image(run: Callable[[np.ndarray], np.ndarray], images: Tensor,
              dynamic_batch: bool) -> Tensor:
    """Run ``images`` as one batch, or image by image when the model has a fixed batch of 1."""
    x = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
    if dynamic_batch or x.shape[0] == 1:
        return torch.from_numpy(np.asarray(run(x), dtype=np.float32))
    return torch.from_numpy(np.concatenate([np.asarray(run(x[i:i + 1]), dtype=np.float32)
                                            for i in range(x.shape[0])]))


def threads_or_default(threads: int | None) -> int:
    """``threads``, or torch's thread count when not given."""
    return int(threads) if threads else torch.get_num_threads()


def warn_if_emulated(precision: str, device: torch.device | str = "cpu") -> bool:
    """Warn (and return ``True``) when ``precision`` is bf16 on a CPU that only emulates it."""
    if precision == "bf16" and torch.device(device).type == "cpu" and not cpu.native_bf16():
        warnings.warn("bf16 is emulated on this CPU (no AVX512-BF16 or AMX): it runs slower than "
                      "fp32 here", stacklevel=3)
        return True
    return False


def is_torch_runner(runner: Any) -> bool:
    """Whether ``runner`` runs PyTorch itself (eager or TorchScript): its class says
    ``runs_torch = True``."""
    return bool(getattr(runner, "runs_torch", False))


@contextlib.contextmanager
def light_torch_threads(runner: Runner) -> Iterator[None]:
    """Run torch on one thread around a runner that is not torch (ONNX Runtime, OpenVINO).

    Torch's part of such a pipeline — pre- and post-processing — is light, and its idle OpenMP
    workers spin for a while after each parallel op, taking the cores the runtime's own threads
    need: on 2 cores the OpenVINO int8 forward measured 11.5 ms after torch ran on two threads
    and 8.2 ms after one. Torch runners keep their threads (a no-op then).
    """
    n = torch.get_num_threads()
    if is_torch_runner(runner) or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
