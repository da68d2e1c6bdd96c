"""Runners: one interface over the ways a trained model can be executed.

A runner takes RGB images with values 0–255, ``float32 [B, 3, H, W]`` at the network input size,
and returns the raw ConvDet output ``[B, K·(C+5), gh, gw]`` as a float32 torch tensor, with
``meta``, the model description post-processing needs (:mod:`.protocol`).

Backends (:data:`BACKENDS` in :mod:`.registry`, chosen with :func:`load_runner`), one module each:

- ``torch`` (:mod:`.torch_runner`): a ``.pt`` checkpoint in eager PyTorch; ``precision="bf16"``
  runs under bf16 autocast, ``channels_last`` (default on CPU) uses oneDNN's fast NHWC
  convolutions and ``compile=True`` wraps the model in :func:`torch.compile`.
- ``torchscript`` (:mod:`.torchscript_runner`): a ``.torchscript`` file written by
  ``squeezedet export --format torchscript``.
- ``onnxruntime`` (:mod:`.onnxruntime_runner`): a ``.onnx`` file (fp32 or int8 QDQ) with ONNX
  Runtime's CPU provider.
- ``executorch`` (:mod:`.executorch_runner`): a ``.pte`` ExecuTorch program (fp32 or int8)
  lowered to the XNNPACK delegate.
- ``openvino`` (:mod:`.openvino_runner`): an OpenVINO IR ``.xml`` (or an ``.onnx``) with
  OpenVINO's CPU plugin; the precision recorded at export is applied.

A new backend is a module defining its runner class and ``BACKEND``
(:class:`~.protocol.Backend`: name, file suffixes, opener, optional in-memory conversion of a
checkpoint), plus one line in :data:`~.registry.BACKENDS`.

``backend="auto"`` (:mod:`.auto`) measures: for a ``.pt`` checkpoint on the CPU it times eager
channels-last PyTorch and the model converted in memory (:mod:`.conversion`) to each installed
runtime, each checked against PyTorch, and keeps the fastest; for an exported ``.onnx`` it times
OpenVINO against ONNX Runtime. The choice is cached (:mod:`squeezedet.deployment.tuning`).
Every exported file has a metadata file next to it, ``<file>.json`` (:func:`metadata_path`).
"""

from squeezedet.deployment.runners.auto import (
    auto_candidates,
    convert_checkpoint,
    fastest_cpu_runner,
    fastest_file_runner,
)
from squeezedet.deployment.runners.conversion import AUTO_PARITY_RTOL, Conversion
from squeezedet.deployment.runners.executorch_runner import ExecuTorchRunner
from squeezedet.deployment.runners.load import load_runner, recorded_postprocess
from squeezedet.deployment.runners.onnxruntime_runner import OnnxRuntimeRunner
from squeezedet.deployment.runners.openvino_runner import OpenVinoRunner, ov_precision_hint
from squeezedet.deployment.runners.protocol import (
    PRECISIONS,
    Backend,
    Runner,
    is_torch_runner,
    light_torch_threads,
    metadata_path,
    read_metadata,
    threads_or_default,
    warn_if_emulated,
)
from squeezedet.deployment.runners.registry import BACKENDS, CANDIDATE_BUILDERS, CHECKPOINT_SUFFIXES
from squeezedet.deployment.runners.torch_runner import TorchRunner
from squeezedet.deployment.runners.torchscript_runner import TorchScriptRunner

__all__ = [
    "AUTO_PARITY_RTOL", "BACKENDS", "CANDIDATE_BUILDERS", "CHECKPOINT_SUFFIXES", "PRECISIONS",
    "Backend", "Conversion", "ExecuTorchRunner", "OnnxRuntimeRunner", "OpenVinoRunner", "Runner",
    "TorchRunner", "TorchScriptRunner", "auto_candidates", "convert_checkpoint", "fastest_cpu_runner",
    "fastest_file_runner", "is_torch_runner", "light_torch_threads", "load_runner",
    "metadata_path", "ov_precision_hint", "read_metadata", "recorded_postprocess", "threads_or_default",
    "warn_if_emulated",
]
