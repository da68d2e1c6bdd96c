"""The ``executorch`` backend: a ``.pte`` ExecuTorch program (fp32 or int8, lowered to the XNNPACK
delegate by ``squeezedet export --format executorch``) in ExecuTorch's runtime; a checkpoint is
lowered in memory (fp32; a few seconds at 1248×384)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from squeezedet.deployment.executorch_export import program_bytes, quiet, require_executorch
from squeezedet.deployment.runners.conversion import Conversion
from squeezedet.deployment.runners.protocol import (
    Backend,
    Runner,
    check_cpu,
    one_line,
    per_image,
    read_metadata,
    threads_or_default,
)
from squeezedet.errors import SqueezeDetError


class ExecuTorchRunner:
    """An ExecuTorch program on the CPU (its XNNPACK delegate runs the layers).

    Args:
        program: a ``.pte`` path (with its metadata file), or the program's bytes with ``meta``.
        threads: XNNPACK's threads (default: torch's thread count). ExecuTorch has one thread
            pool per process: the last runner built or called sets its size.
    """

    def __init__(self, program: str | Path | bytes, device: str = "cpu", *,
                 meta: dict[str, Any] | None = None, threads: int | None = None) -> None:
        check_cpu(device, "executorch")
        require_executorch()
        self.device = torch.device("cpu")
        self.meta = meta if meta is not None else read_metadata(program)  # type: ignore[arg-type]
        self.precision = str(self.meta.get("precision", "fp32"))
        self.threads = threads_or_default(threads)
        name = "program" if isinstance(program, bytes) else str(program)
        with quiet():
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

            self._pool = portable_lib
            self._set_threads()
            try:
                source = program if isinstance(program, bytes) else Path(program)
                self.program = Runtime.get().load_program(source)
                self.method = self.program.load_method("forward")
            except Exception as exc:  # noqa: BLE001 - the runtime raises RuntimeError/ValueError
                raise SqueezeDetError(f"{name}: ExecuTorch cannot load it ({one_line(exc)})"
                                      ) from None
        if self.method is None:
            raise SqueezeDetError(f"{name}: the ExecuTorch program has no 'forward' method")

    def _set_threads(self) -> None:
        if self._pool._threadpool_get_thread_count() != self.threads:
            self._pool._unsafe_reset_threadpool(self.threads)

    def _run(self, x: np.ndarray) -> np.ndarray:
        self._set_threads()
        out = self.method.execute([torch.from_numpy(x)])[0]
        return out.numpy().copy()  # the program's output buffer is reused by the next call

    def __call__(self, images: Tensor) -> Tensor:
        return per_image(self._run, images, dynamic_batch=False)


def _open(path: Path, device: str, *, precision: str | None = None,
          threads: int | None = None) -> Runner:
    return ExecuTorchRunner(path, device, threads=threads)


def _convert(conv: Conversion, precision: str, threads: int | None) -> Runner:
    return ExecuTorchRunner(program_bytes(conv.model, "fp32"), meta=conv.meta(precision),
                            threads=threads)


BACKEND = Backend("executorch", (".pte",), _open, module="executorch", extra="executorch",
                  convert=_convert, convert_precisions=("fp32",), title="ExecuTorch")
