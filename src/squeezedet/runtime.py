"""Runners: one interface over the ways a trained model can be executed.

A runner takes RGB images with values 0–255, ``float32 [B, 3, H, W]`` at the network input size,
and returns the raw ConvDet output ``[B, K·(C+5), gh, gw]`` as a float32 torch tensor. It carries
``meta``, the model description of :meth:`SqueezeDet.metadata` (classes, input size, anchors,
normalisation), which is all the post-processing needs.

Backends (:data:`BACKENDS`, chosen with :func:`load_runner`):

- ``torch``: a ``.pt`` checkpoint in eager PyTorch; ``precision="bf16"`` runs under CPU/CUDA bf16
  autocast, ``channels_last`` (default on CPU) uses oneDNN's fast NHWC convolutions and
  ``compile=True`` wraps the model in :func:`torch.compile`.
- ``torchscript``: a ``.torchscript`` file written by ``squeezedet export --format torchscript``.
- ``onnxruntime``: a ``.onnx`` file (fp32 or int8 QDQ) with ONNX Runtime's CPU provider.
- ``openvino``: an OpenVINO IR ``.xml`` (or an ``.onnx``) with OpenVINO's CPU plugin; the
  precision recorded at export (fp32 → f32, bf16 → bf16 inference precision hint) is applied.

Every exported file has a metadata file next to it, ``<file>.json`` (:func:`metadata_path`),
written by :mod:`squeezedet.export`: the model's :meth:`~SqueezeDet.metadata` plus the export's
format, precision and parity figures.

``backend="auto"`` picks by file type. For an exported ``.onnx`` it takes OpenVINO when installed
(the fastest fp32 CPU runtime measured here), else ONNX Runtime. For a ``.pt`` checkpoint on the CPU
it converts the model in memory to the fastest installed runtime — OpenVINO, then ONNX Runtime —
checks the converted model against PyTorch on one image, and falls back to eager channels-last
PyTorch (with a warning) when a runtime is missing, fails, or disagrees. ``backend="torch"`` skips
the conversion (it costs about a second and some memory at start-up).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from squeezedet.errors import SqueezeDetError, installed, require

#: precisions a runner can be asked for
PRECISIONS = ("fp32", "bf16", "int8")

#: parity tolerance of the in-memory conversion of ``backend="auto"``: max abs difference
#: relative to the largest output magnitude (fp32 runtimes agree to ~1e-6 of it; see export.py).
AUTO_PARITY_RTOL = 1e-3


class Runner(Protocol):
    """Executes a model: images ``[B, 3, H, W]`` RGB 0–255 → raw head ``[B, K·(C+5), gh, gw]``."""

    meta: dict[str, Any]
    device: torch.device

    def __call__(self, images: Tensor) -> Tensor: ...


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


def _check_cpu(device: str, backend: str) -> None:
    if torch.device(device).type != "cpu":
        raise SqueezeDetError(f"the {backend} backend runs on the CPU only, not {device!r}")


def _per_image(run: Callable[[np.ndarray], np.ndarray], images: Tensor,
               dynamic_batch: bool) -> Tensor:
    """Run ``images`` as one batch, or image by image when the model has a fixed batch of 1."""
    x = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
    if dynamic_batch or x.shape[0] == 1:
        return torch.from_numpy(np.asarray(run(x), dtype=np.float32))
    return torch.from_numpy(np.concatenate([np.asarray(run(x[i:i + 1]), dtype=np.float32)
                                            for i in range(x.shape[0])]))


class TorchRunner:
    """Eager PyTorch execution of a checkpoint.

    Args:
        checkpoint: a ``.pt`` path or a loaded checkpoint dict.
        device: ``"cpu"``, ``"cuda"``, …
        precision: ``"fp32"`` or ``"bf16"`` (autocast; output returned as float32).
        channels_last: NHWC memory format (default: on for the CPU, where oneDNN is ~2–4× faster
            with it for this network).
        compile: wrap the model in :func:`torch.compile` (slow first call).
        banded: run under ``torch.inference_mode``, where SqueezeNet backbones compute their first
            stage in horizontal bands on large inputs (exact; faster and leaner, see
            :func:`~squeezedet.models.backbones.banded_forward`); ``False``: the plain layer-by-layer
            forward under ``torch.no_grad`` (the benchmark's baseline).
    """

    def __init__(self, checkpoint: str | Path | dict[str, Any], device: str = "cpu", *,
                 precision: str = "fp32", channels_last: bool | None = None,
                 compile: bool = False, banded: bool = True) -> None:
        from squeezedet.checkpoint import model_from_checkpoint
        from squeezedet.models.layers import with_memory_format

        if precision not in ("fp32", "bf16"):
            raise SqueezeDetError(
                f"the torch backend runs fp32 or bf16, not {precision!r}; for int8 export the "
                "model (squeezedet export --format onnx --precision int8)"
            )
        self.device = torch.device(device)
        self.precision = precision
        self.model = model_from_checkpoint(checkpoint).to(self.device).eval()
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        if self.channels_last:
            self.model = with_memory_format(self.model, torch.channels_last)
        self.meta = self.model.metadata()
        self.banded = banded
        self._forward: Callable[[Tensor], Tensor] = self.model
        if compile:
            self._forward = torch.compile(self.model)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, images: Tensor) -> Tensor:
        with torch.inference_mode() if self.banded else torch.no_grad():
            # uint8 pixels go to the model as they are (it converts them while normalising)
            x = images.to(self.device, None if images.dtype == torch.uint8 else torch.float32)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                out = self._forward(x)
            return out.float()


class TorchScriptRunner:
    """A TorchScript file (``.torchscript``) with its metadata file."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.meta = read_metadata(path)
        self.precision = str(self.meta.get("precision", "fp32"))
        self.module = torch.jit.load(str(path), map_location=self.device).eval()

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(self.device, torch.float32)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module(x).float()


def _threads(threads: int | None) -> int:
    return int(threads) if threads else torch.get_num_threads()


class OnnxRuntimeRunner:
    """An ONNX model (fp32, or int8 QDQ from ``--precision int8``) on ONNX Runtime's CPU provider.

    Args:
        model: a ``.onnx`` path (with its metadata file), or serialised ONNX bytes with ``meta``.
        threads: intra-op threads (default: torch's thread count).
    """

    def __init__(self, model: str | Path | bytes, device: str = "cpu", *,
                 meta: dict[str, Any] | None = None, threads: int | None = None) -> None:
        _check_cpu(device, "onnxruntime")
        ort = require("onnxruntime", "export")
        self.device = torch.device("cpu")
        self.meta = meta if meta is not None else read_metadata(model)  # type: ignore[arg-type]
        self.precision = str(self.meta.get("precision", "fp32"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = _threads(threads)
        opts.inter_op_num_threads = 1
        # idle ORT threads must not spin: they would steal the CPU from pre-/post-processing
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(
                source, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise SqueezeDetError(f"{model if not isinstance(model, bytes) else 'model'}: "
                                  f"ONNX Runtime cannot load it ({exc})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dynamic_batch = not isinstance(inp.shape[0], int)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def __call__(self, images: Tensor) -> Tensor:
        return _per_image(self._run, images, self.dynamic_batch)


class OpenVinoRunner:
    """An OpenVINO IR (``.xml`` + ``.bin``) or ONNX model on OpenVINO's CPU plugin.

    The inference precision hint follows the export (:func:`ov_precision_hint`): ``bf16`` → bf16,
    ``int8`` → int8 layers plus bf16 for the layers left in float when the CPU has bf16 (else
    f32), ``fp32`` → f32.

    Args:
        model: a model path (with its metadata file) or an ``openvino.Model`` with ``meta``.
        threads: inference threads (default: torch's thread count).
        precision: override the exported precision (``"fp32"`` or ``"bf16"``).
    """

    def __init__(self, model: str | Path | Any, device: str = "cpu", *,
                 meta: dict[str, Any] | None = None, threads: int | None = None,
                 precision: str | None = None) -> None:
        _check_cpu(device, "openvino")
        ov = require("openvino", "openvino")
        self.device = torch.device("cpu")
        self.meta = meta if meta is not None else read_metadata(model)
        self.precision = precision or str(self.meta.get("precision", "fp32"))
        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": _threads(threads),
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,  # pinned workers spin on the core the caller needs next
            "INFERENCE_PRECISION_HINT": ov_precision_hint(self.precision, core),
        }
        try:
            source = str(model) if isinstance(model, (str, Path)) else model
            ov_model = core.read_model(source) if isinstance(source, str) else source
            self.dynamic_batch = ov_model.input(0).get_partial_shape()[0].is_dynamic
            self.compiled = core.compile_model(ov_model, "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            raise SqueezeDetError(f"{model}: OpenVINO cannot load it ({exc})") from None
        self.request = self.compiled.create_infer_request()

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x})[0]

    def __call__(self, images: Tensor) -> Tensor:
        return _per_image(self._run, images, self.dynamic_batch)


def is_torch_runner(runner: Any) -> bool:
    """Whether ``runner`` runs PyTorch itself (eager or TorchScript)."""
    return isinstance(runner, (TorchRunner, TorchScriptRunner))


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


def ov_precision_hint(precision: str, core: Any) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for a model precision: fp32 → f32; bf16 → bf16;
    int8 → bf16 for the float layers (the first convolution and ConvDet) when the CPU supports it
    (AVX512-BF16/AMX; within the int8 parity tolerance, ~25 % faster here), else f32."""
    if precision == "fp32":
        return "f32"
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in caps else "f32"


def fastest_cpu_runner(checkpoint: str | Path | dict[str, Any], *, precision: str = "fp32",
                       threads: int | None = None,
                       candidates: Sequence[str] = ("openvino", "onnxruntime"),
                       fallback: bool = True) -> Runner:
    """The fastest installed CPU runner for a checkpoint, with a safe fallback.

    Tries ``candidates`` in order — by default OpenVINO then ONNX Runtime (fp32 only), the order
    measured fastest on this project's CPU by ``squeezedet benchmark`` — and then eager
    channels-last PyTorch. The model is converted in memory (no file is written); a runtime that is
    missing, fails, or whose output differs from PyTorch's fp32 by more than
    :data:`AUTO_PARITY_RTOL` (bf16: 5 %) of the output's magnitude on a test image is skipped with
    a warning. With ``fallback=False`` the first candidate must work (errors are raised).
    """
    from squeezedet.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint, mmap=True) if not isinstance(checkpoint, dict) else checkpoint
    usable = [name for name in candidates
              if installed(name) and (precision == "fp32" or name == "openvino")]
    if not fallback and not usable:
        name = candidates[0]
        if precision != "fp32" and name == "onnxruntime":
            raise SqueezeDetError(f"onnxruntime runs {precision} only from an exported model")
        require(name, "openvino" if name == "openvino" else "export")
    if not usable or os.environ.get("SQUEEZEDET_NO_CONVERT"):
        return TorchRunner(ckpt, "cpu", precision=precision)
    from squeezedet.export import onnx_bytes

    model = model_from_checkpoint(ckpt)
    meta = {**model.metadata(), "precision": precision, "outputs": "head"}
    try:
        proto = onnx_bytes(model)
    except Exception as exc:  # noqa: BLE001 - any exporter failure means: stay on torch
        if not fallback:
            raise SqueezeDetError(f"ONNX conversion failed ({exc})") from None
        warnings.warn(f"ONNX conversion failed ({exc}); running eager PyTorch", stacklevel=2)
        return TorchRunner(ckpt, "cpu", precision=precision)
    w, h = model.input_size
    gen = torch.Generator().manual_seed(0)
    # a smooth, image-like test input: low-frequency colour field plus pixel noise
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 20, generator=gen) * 255,
                                           size=(h, w), mode="bilinear", align_corners=False)
    x = (base + torch.randn(1, 3, h, w, generator=gen) * 8).clamp(0, 255)
    with torch.inference_mode():
        ref = model(x)
    del model
    for name in usable:
        try:
            runner: Runner
            if name == "openvino":
                ov = require("openvino", "openvino")
                ov_model = ov.Core().read_model(proto, b"")
                runner = OpenVinoRunner(ov_model, meta=meta, threads=threads, precision=precision)
            else:
                runner = OnnxRuntimeRunner(proto, meta=meta, threads=threads)
            err = float((runner(x) - ref).abs().max())
            tol = (AUTO_PARITY_RTOL if precision == "fp32" else 0.05) * float(ref.abs().max())
            if err <= tol:
                return runner
            message = f"{name} disagrees with PyTorch (max abs diff {err:.3g} > {tol:.3g})"
        except Exception as exc:  # noqa: BLE001 - fall back on any runtime failure
            message = f"{name} runtime unusable ({exc})"
        if not fallback:
            raise SqueezeDetError(message)
        warnings.warn(message + "; trying the next", stacklevel=2)
    return TorchRunner(ckpt, "cpu", precision=precision)


def _torch_factory(path: Path, device: str, **options: Any) -> Runner:
    options.pop("threads", None)
    return TorchRunner(path, device, **options)


def _from_checkpoint(backend: str) -> Callable[..., Runner]:
    def factory(path: Path, device: str, **options: Any) -> Runner:
        _check_cpu(device, backend)
        return fastest_cpu_runner(path, precision=options.get("precision") or "fp32",
                                  threads=options.get("threads"), candidates=(backend,),
                                  fallback=False)
    return factory


def _onnx_auto_factory(path: Path, device: str, **options: Any) -> Runner:
    if installed("openvino"):
        return OpenVinoRunner(path, device, **options)
    if installed("onnxruntime"):
        options.pop("precision", None)
        return OnnxRuntimeRunner(path, device, **options)
    raise SqueezeDetError(
        f"{path}: running an ONNX model needs ONNX Runtime or OpenVINO: "
        "pip install 'squeezedet[export]' or 'squeezedet[openvino]'"
    )


def _ort_factory(path: Path, device: str, **options: Any) -> Runner:
    options.pop("precision", None)
    return OnnxRuntimeRunner(path, device, **options)


def _ts_factory(path: Path, device: str, **options: Any) -> Runner:
    return TorchScriptRunner(path, device)


def _ov_factory(path: Path, device: str, **options: Any) -> Runner:
    return OpenVinoRunner(path, device, **options)


#: backend name → (file suffixes it opens, factory(path, device, **options) → Runner)
BACKENDS: dict[str, tuple[tuple[str, ...], Callable[..., Runner]]] = {
    "torch": ((".pt", ".pth", ".ckpt", ".sqz"), _torch_factory),
    "torchscript": ((".torchscript",), _ts_factory),
    "openvino": ((".xml", ".onnx"), _ov_factory),
    "onnxruntime": ((".onnx",), _ort_factory),
}

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".sqz")  # .sqz: `squeezedet compress`


def load_runner(weights: str | Path, backend: str = "auto", device: str = "cpu", *,
                precision: str | None = None, threads: int | None = None) -> Runner:
    """A runner for ``weights``.

    Args:
        weights: a checkpoint (``.pt``) or an exported model (``.onnx``, ``.xml``,
            ``.torchscript``) with its metadata file.
        backend: ``"auto"`` (by file type; for a checkpoint on the CPU the fastest installed
            runtime, see the module docstring) or a name of :data:`BACKENDS`. ``onnxruntime`` or
            ``openvino`` with a checkpoint convert it in memory.
        device: where to run (ONNX Runtime and OpenVINO run on the CPU).
        precision: ``"fp32"`` or ``"bf16"`` for checkpoints and OpenVINO (default: fp32, or what
            the export recorded); int8 comes from an int8 export.
        threads: CPU threads of ONNX Runtime / OpenVINO (default: torch's setting).
    """
    path = Path(weights)
    if not path.exists():
        raise SqueezeDetError(f"{path}: weights file not found")
    if precision is not None and precision not in PRECISIONS:
        raise SqueezeDetError(
            f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if backend != "auto" and backend not in BACKENDS:
        raise SqueezeDetError(
            f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
    suffix = path.suffix.lower()
    known = {s for suffixes, _ in BACKENDS.values() for s in suffixes}
    if suffix not in known:
        raise SqueezeDetError(f"{path}: unknown weights type {path.suffix!r}; known: "
                              + ", ".join(sorted(known)))
    options: dict[str, Any] = {"threads": threads}
    if precision is not None:
        options["precision"] = precision
    if suffix in _CHECKPOINT_SUFFIXES:
        if backend == "auto":
            if torch.device(device).type != "cpu":
                return TorchRunner(path, device, precision=precision or "fp32")
            return fastest_cpu_runner(path, precision=precision or "fp32", threads=threads)
        if backend in ("onnxruntime", "openvino"):
            return _from_checkpoint(backend)(path, device, **options)
        if backend != "torch":
            raise SqueezeDetError(
                f"{path}: the {backend} backend needs an exported model: run 'squeezedet export "
                f"--weights {path} --format {backend}'")
        return _torch_factory(path, device, **options)
    if backend == "auto":
        if suffix == ".onnx":
            return _onnx_auto_factory(path, device, **options)
        backend = next(n for n, (suffixes, _) in BACKENDS.items() if suffix in suffixes)
    if suffix not in BACKENDS[backend][0]:
        raise SqueezeDetError(f"{path}: the {backend} backend cannot open {suffix} files "
                              f"(it opens {', '.join(BACKENDS[backend][0])})")
    return BACKENDS[backend][1](path, device, **options)
