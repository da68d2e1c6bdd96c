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
written by :mod:`squeezedet.deployment.export`: the model's :meth:`~SqueezeDet.metadata` plus the export's
format, precision and parity figures.

``backend="auto"`` measures (:mod:`squeezedet.deployment.tuning`): for a ``.pt`` checkpoint on the
CPU it times eager channels-last PyTorch and the model converted in memory to each installed
runtime (ONNX Runtime, OpenVINO; bf16 variants too when bf16 is asked for and the CPU has it
natively), each checked against PyTorch on a test image, and keeps the fastest; for an exported
``.onnx`` it times OpenVINO against ONNX Runtime. The choice is cached per model, input size,
precision, threads, CPU and runtime versions, so it is measured once. ``backend="torch"`` skips
the conversion (it costs about a second and some memory at start-up).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from squeezedet import cpu
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


def _one_line(exc: BaseException) -> str:
    """A runtime's exception text on one line (OpenVINO's span several)."""
    return " ".join(str(exc).split())


def _check_ir(path: Path) -> None:
    """An OpenVINO IR is well-formed XML with a ``<net>`` root and a ``.bin`` beside it;
    checked before OpenVINO tries its other front ends on the file (which print to stderr)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SqueezeDetError(f"{path}: not an OpenVINO IR file ({exc})") from None
    if root.tag != "net":
        raise SqueezeDetError(f"{path}: not an OpenVINO IR file (root element <{root.tag}>, "
                              "expected <net>)")
    if not path.with_suffix(".bin").is_file():
        raise SqueezeDetError(f"{path}: the weights file {path.with_suffix('.bin').name} of this "
                              "OpenVINO IR is missing; keep the .xml and .bin together")


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
        #: bf16 on a CPU that converts it to fp32 and back around fp32 arithmetic (slower)
        self.emulated = warn_if_emulated(precision, self.device)
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
        try:
            self.module = torch.jit.load(str(path), map_location=self.device).eval()
        except (RuntimeError, ValueError, OSError) as exc:
            raise SqueezeDetError(f"{path}: not a loadable TorchScript file ({_one_line(exc)})"
                                  ) from None

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(self.device, torch.float32)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module(x).float()


def threads_or_default(threads: int | None) -> int:
    """``threads``, or torch's thread count when not given."""
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
        opts.intra_op_num_threads = threads_or_default(threads)
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
                                  f"ONNX Runtime cannot load it ({_one_line(exc)})") from None
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
            "INFERENCE_NUM_THREADS": threads_or_default(threads),
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,  # pinned workers spin on the core the caller needs next
            "INFERENCE_PRECISION_HINT": ov_precision_hint(self.precision, core),
        }
        if isinstance(model, (str, Path)) and Path(model).suffix.lower() == ".xml":
            _check_ir(Path(model))
        try:
            source = str(model) if isinstance(model, (str, Path)) else model
            ov_model = core.read_model(source) if isinstance(source, str) else source
            self.dynamic_batch = ov_model.input(0).get_partial_shape()[0].is_dynamic
            self.compiled = core.compile_model(ov_model, "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            raise SqueezeDetError(f"{model}: OpenVINO cannot load it ({_one_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        #: the precision OpenVINO computes the float layers in here: ``f32`` or ``bf16``
        self.inference_precision = _ov_type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x})[0]

    def __call__(self, images: Tensor) -> Tensor:
        return _per_image(self._run, images, self.dynamic_batch)


def _ov_type_name(value: Any) -> str:
    name = getattr(value, "get_type_name", None)
    return str(name() if callable(name) else value)


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
    int8 → bf16 for the float layers (the first convolution and ConvDet) — bf16 only where the CPU
    computes it natively (AVX512-BF16/AMX: OpenVINO lists ``BF16`` and
    :func:`squeezedet.cpu.native_bf16` agrees), else f32.

    Both are asked because each honours another instruction-set limit: OpenVINO ``OV_CPU_MAX_ISA``,
    PyTorch's oneDNN ``ONEDNN_MAX_CPU_ISA``; with only the latter set to AVX2, OpenVINO 2026.4
    still lists ``BF16`` and then cannot compile a model with a bf16 hint.
    """
    if precision == "fp32":
        return "f32"
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in caps and cpu.native_bf16() else "f32"


def warn_if_emulated(precision: str, device: torch.device | str = "cpu") -> bool:
    """Warn (and return ``True``) when ``precision`` is bf16 on a CPU that only emulates it."""
    if precision == "bf16" and torch.device(device).type == "cpu" and not cpu.native_bf16():
        warnings.warn("bf16 is emulated on this CPU (no AVX512-BF16 or AMX): it runs slower than "
                      "fp32 here", stacklevel=3)
        return True
    return False


# ---------------------------------------------------------------------------------------------
# backend="auto": the fastest usable runner, measured on this machine (tuning.choose)


def _test_image(width: int, height: int) -> Tensor:
    """A smooth, image-like ``float32 [1, 3, H, W]`` 0–255 input: a low-frequency colour field
    plus pixel noise, rounded to whole grey levels (the values uint8 pixels can take)."""
    gen = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 20, generator=gen) * 255,
                                           size=(height, width), mode="bilinear",
                                           align_corners=False)
    return (base + torch.randn(1, 3, height, width, generator=gen) * 8).clamp(0, 255).round()


def _timing_input(runner: Any, x: Tensor) -> Tensor:
    """``x`` as the Detector hands it to ``runner``: uint8 channels-last for eager PyTorch (see
    :func:`~squeezedet.deployment.preprocess.runner_input`), float32 NCHW for the others."""
    if isinstance(runner, TorchRunner):
        nhwc = x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return nhwc.permute(0, 3, 1, 2)
    return x


class _Conversion:
    """A checkpoint as the candidates of ``auto`` need it, each part made on first use: its model,
    the model's fp32 output on a test image (the parity reference) and its ONNX graph (a cached
    choice of eager PyTorch needs none of them)."""

    def __init__(self, ckpt: dict[str, Any]) -> None:
        self.ckpt = ckpt
        self._model: Any = None
        self._ref: Tensor | None = None
        self._x: Tensor | None = None
        self._proto: bytes | None = None

    @property
    def model(self) -> Any:
        if self._model is None:
            from squeezedet.checkpoint import model_from_checkpoint

            self._model = model_from_checkpoint(self.ckpt).eval()
        return self._model

    @property
    def input_size(self) -> tuple[int, int]:
        size = (self.ckpt.get("meta") or {}).get("input_size")
        return (int(size[0]), int(size[1])) if size else tuple(self.model.input_size)

    @property
    def x(self) -> Tensor:
        if self._x is None:
            self._x = _test_image(*self.input_size)
        return self._x

    @property
    def ref(self) -> Tensor:
        if self._ref is None:
            with torch.inference_mode():
                self._ref = self.model(self.x)
        return self._ref

    @property
    def proto(self) -> bytes:
        if self._proto is None:
            from squeezedet.deployment.graph import onnx_bytes

            try:
                self._proto = onnx_bytes(self.model)
            except Exception as exc:  # noqa: BLE001 - any exporter failure
                raise SqueezeDetError(f"ONNX conversion failed ({exc})") from None
        return self._proto

    def meta(self, precision: str) -> dict[str, Any]:
        return {**self.model.metadata(), "precision": precision, "outputs": "head"}

    def check(self, runner: Runner, name: str, precision: str) -> str | None:
        """``None`` when ``runner`` reproduces the fp32 model on the test image within
        :data:`AUTO_PARITY_RTOL` (bf16: 5 %) of the output's magnitude, else why not."""
        err = float((runner(self.x) - self.ref).abs().max())
        tol = (AUTO_PARITY_RTOL if precision == "fp32" else 0.05) * float(self.ref.abs().max())
        if err <= tol:
            return None
        return f"{name} disagrees with PyTorch (max abs diff {err:.3g} > {tol:.3g})"


def _build_torch(conv: _Conversion, precision: str, threads: int | None) -> Runner:
    return TorchRunner(conv.ckpt, "cpu", precision=precision)


def _build_onnxruntime(conv: _Conversion, precision: str, threads: int | None) -> Runner:
    return OnnxRuntimeRunner(conv.proto, meta=conv.meta(precision), threads=threads)


def _build_openvino(conv: _Conversion, precision: str, threads: int | None) -> Runner:
    ov = require("openvino", "openvino")
    ov_model = ov.Core().read_model(conv.proto, b"")  # fp32/bf16: the ReLU order does not matter
    return OpenVinoRunner(ov_model, meta=conv.meta(precision), threads=threads, precision=precision)


#: backend → builder(conversion, precision, threads) of the runners ``auto`` compares
CANDIDATE_BUILDERS: dict[str, Callable[[_Conversion, str, int | None], Runner]] = {
    "torch": _build_torch,
    "onnxruntime": _build_onnxruntime,
    "openvino": _build_openvino,
}


def auto_candidates(precision: str = "fp32") -> list[tuple[str, str]]:
    """The ``(backend, precision)`` pairs ``auto`` times for a checkpoint on the CPU: fp32 in eager
    channels-last PyTorch and in each installed runtime (ONNX Runtime, OpenVINO); for
    ``precision="bf16"`` (bf16 allowed) also PyTorch and OpenVINO in bf16 — only where the CPU
    computes bf16 natively (:func:`squeezedet.cpu.native_bf16`); elsewhere a warning, and fp32."""
    if precision not in ("fp32", "bf16"):
        raise SqueezeDetError(f"auto runs a checkpoint in fp32 or bf16, not {precision!r}; int8 "
                              "comes from an int8 export (squeezedet export --precision int8)")
    backends = ["torch"] + [b for b in ("onnxruntime", "openvino") if installed(b)]
    pairs = [(b, "fp32") for b in backends]
    if precision == "bf16":
        if cpu.native_bf16():
            pairs += [(b, "bf16") for b in ("torch", "openvino") if b in backends]
        else:
            warnings.warn("bf16 is emulated on this CPU (no AVX512-BF16 or AMX) and slower than "
                          "fp32: auto runs fp32", stacklevel=3)
    return pairs


def _checkpoint_identity(checkpoint: str | Path | dict[str, Any], ckpt: dict[str, Any]) -> str:
    from squeezedet.deployment.tuning import file_identity, weights_identity

    if isinstance(checkpoint, (str, Path)):
        return file_identity(checkpoint)
    return weights_identity(ckpt["model"], ckpt.get("meta") or {})


def fastest_cpu_runner(checkpoint: str | Path | dict[str, Any], *, precision: str = "fp32",
                       threads: int | None = None, cache: Any = None,
                       clock: Callable[[], float] | None = None) -> Runner:
    """The fastest usable CPU runner for a checkpoint, measured here (``backend="auto"``).

    Candidates: :func:`auto_candidates`. Each converted candidate is built in memory (no file is
    written) and checked on a test image against the PyTorch fp32 output (within
    :data:`AUTO_PARITY_RTOL`, bf16: 5 % of the output's magnitude); one that is missing, fails or
    disagrees is left out with a warning. The usable ones are timed (a few warm runs each,
    median; :func:`squeezedet.deployment.tuning.choose`) and the fastest returned; the choice is
    cached per model, input size, precision, thread count, CPU and runtime versions, so the next
    call times nothing. Eager channels-last PyTorch is always a candidate and the fallback.
    ``SQUEEZEDET_NO_CONVERT=1``: eager PyTorch without converting or timing anything. ``cache``:
    a :class:`~squeezedet.deployment.tuning.ChoiceCache` (default: the user's); ``clock``: the
    timer's clock (default :func:`time.perf_counter`).
    """
    from squeezedet.checkpoint import load_checkpoint
    from squeezedet.deployment import tuning

    ckpt = load_checkpoint(checkpoint, mmap=True) if not isinstance(checkpoint, dict) else checkpoint
    pairs = auto_candidates(precision)
    if os.environ.get("SQUEEZEDET_NO_CONVERT") or pairs == [("torch", "fp32")]:
        return TorchRunner(ckpt, "cpu", precision="fp32")
    conv = _Conversion(ckpt)
    x = conv.x

    def candidate(backend: str, prec: str) -> tuning.Candidate:
        name = f"{backend}:{prec}"
        reference = backend == "torch" and prec == "fp32"  # the reference itself
        return tuning.Candidate(
            name=name,
            build=lambda: CANDIDATE_BUILDERS[backend](conv, prec, threads),
            check=(lambda r: None) if reference else (lambda r: conv.check(r, name, prec)),
            call=lambda r: r(_timing_input(r, x)),
            context=light_torch_threads,
        )

    candidates = [candidate(b, p) for b, p in pairs]
    key = {"kind": "checkpoint", "model": _checkpoint_identity(checkpoint, ckpt),
           "input_size": list(conv.input_size), "precision": precision,
           "threads": threads_or_default(threads), "cpu": cpu.cpu_identity(),
           "versions": tuning.runtime_versions()}
    choice = tuning.choose(candidates, key, cache=cache, clock=clock, fallback=candidates[0])
    runner = choice.runner
    runner.auto_choice = {"choice": choice.name, "cached": choice.cached,  # type: ignore[union-attr]
                          "median_ms": choice.median_ms}
    return runner


def convert_checkpoint(checkpoint: str | Path | dict[str, Any], backend: str, *,
                       precision: str = "fp32", threads: int | None = None) -> Runner:
    """A checkpoint converted in memory to ``backend`` (``onnxruntime`` or ``openvino``) and
    checked against PyTorch as ``auto`` checks it; errors are raised, nothing is timed."""
    from squeezedet.checkpoint import load_checkpoint

    if backend == "onnxruntime" and precision != "fp32":
        raise SqueezeDetError(f"onnxruntime runs {precision} only from an exported model")
    if precision not in ("fp32", "bf16"):
        raise SqueezeDetError(f"a checkpoint runs in fp32 or bf16, not {precision!r}; int8 comes "
                              "from an int8 export (squeezedet export --precision int8)")
    require(backend, "openvino" if backend == "openvino" else "export")
    warn_if_emulated(precision)
    ckpt = load_checkpoint(checkpoint, mmap=True) if not isinstance(checkpoint, dict) else checkpoint
    conv = _Conversion(ckpt)
    try:
        runner = CANDIDATE_BUILDERS[backend](conv, precision, threads)
    except SqueezeDetError:
        raise
    except Exception as exc:  # noqa: BLE001 - runtime failures become one clear line
        raise SqueezeDetError(f"{backend} runtime unusable ({exc})") from None
    problem = conv.check(runner, backend, precision)
    if problem is not None:
        raise SqueezeDetError(problem)
    return runner


def _torch_factory(path: Path, device: str, **options: Any) -> Runner:
    options.pop("threads", None)
    return TorchRunner(path, device, **options)


def _from_checkpoint(backend: str) -> Callable[..., Runner]:
    def factory(path: Path, device: str, **options: Any) -> Runner:
        _check_cpu(device, backend)
        return convert_checkpoint(path, backend, precision=options.get("precision") or "fp32",
                                  threads=options.get("threads"))
    return factory


def _onnx_auto_factory(path: Path, device: str, **options: Any) -> Runner:
    """An exported ``.onnx``: OpenVINO or ONNX Runtime, whichever is faster here (measured and
    cached like a checkpoint's choice; both run the same file, whose parity the export checked)."""
    from squeezedet.deployment import tuning

    backends = [b for b in ("openvino", "onnxruntime") if installed(b)]
    if not backends:
        raise SqueezeDetError(
            f"{path}: running an ONNX model needs ONNX Runtime or OpenVINO: "
            "pip install 'squeezedet[export]' or 'squeezedet[openvino]'"
        )
    factories = {"openvino": _ov_factory, "onnxruntime": _ort_factory}
    if len(backends) == 1 or os.environ.get("SQUEEZEDET_NO_CONVERT"):
        return factories[backends[0]](path, device, **options)
    meta = read_metadata(path)
    x = _test_image(int(meta["input_size"][0]), int(meta["input_size"][1]))

    def candidate(backend: str) -> tuning.Candidate:
        return tuning.Candidate(
            name=backend, build=lambda: factories[backend](path, device, **dict(options)),
            check=lambda r: None if r(x).shape[0] == 1 else "wrong batch size",
            call=lambda r: r(x), context=light_torch_threads)

    key = {"kind": "onnx", "model": tuning.file_identity(path), "input_size": meta["input_size"],
           "precision": options.get("precision") or meta.get("precision", "fp32"),
           "threads": threads_or_default(options.get("threads")), "cpu": cpu.cpu_identity(),
           "versions": tuning.runtime_versions()}
    choice = tuning.choose([candidate(b) for b in backends], key)
    runner = choice.runner
    runner.auto_choice = {"choice": choice.name, "cached": choice.cached,  # type: ignore[union-attr]
                          "median_ms": choice.median_ms}
    return runner


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
