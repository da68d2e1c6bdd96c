"""Activation memory and memory traffic of one forward pass, counted on a real forward.

:func:`activation_profile` runs the model on meta tensors (shapes only: no memory, no compute)
under ``torch.inference_mode`` — the code path prediction takes — and watches every ATen operation
through a dispatch mode:

- **written**: the bytes of every operation's result (in-place results and ``out=`` results
  included; view operations, which move no data, and allocations of empty tensors excluded);
- **read**: the bytes of every tensor operand, activations and weights counted apart;
- **peak live**: the largest total size of the activation storages alive at once (the input
  image included, the weights not), freed when the last tensor using a storage is dropped.

So the figures are those of this implementation's eager forward (its in-place ReLUs, the Fire
modules' ``out=`` writes), batch 1, fp32. One difference from a CPU run: on the CPU, SqueezeNet's
first stage runs in horizontal bands at large inputs, which lowers the peak (not the traffic).

The memory-traffic estimate :attr:`ActivationProfile.dram_bytes` assumes no reuse between
operations: every operation reads its operands from DRAM and writes its result back, and every
weight is read once. Caches and fused kernels keep part of this on chip, so it is an upper-end
estimate of the traffic, and labelled an estimate wherever it is shown.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

_ALLOCATIONS = {
    torch.ops.aten.empty.memory_format,
    torch.ops.aten.empty_strided.default,
    torch.ops.aten.empty_like.default,
}


@dataclass(frozen=True)
class ActivationProfile:
    """Memory figures of one forward pass (bytes, fp32, batch 1)."""

    input_size: tuple[int, int]
    input_bytes: int
    peak_bytes: int
    written_bytes: int
    read_bytes: int
    weight_read_bytes: int
    weight_bytes: int
    ops: int

    @property
    def dram_bytes(self) -> int:
        """Estimated DRAM traffic with no reuse between operations: weights read + activations
        read + activations written."""
        return self.weight_read_bytes + self.read_bytes + self.written_bytes

    def to_json(self) -> dict[str, object]:
        return {"input_size": list(self.input_size), "input_bytes": self.input_bytes,
                "peak_bytes": self.peak_bytes, "written_bytes": self.written_bytes,
                "read_bytes": self.read_bytes, "weight_read_bytes": self.weight_read_bytes,
                "weight_bytes": self.weight_bytes, "dram_bytes_estimate": self.dram_bytes,
                "ops": self.ops}


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _key(t: torch.Tensor) -> int:
    return int(t.untyped_storage()._cdata)


class _Tracker(TorchDispatchMode):
    """Counts bytes read and written per operation and the live activation storages."""

    def __init__(self, weight_keys: set[int]) -> None:
        super().__init__()
        self.weight_keys = weight_keys
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.seen: set[int] = set()  # ids of tensor objects already tracked
        self.live = self.peak = 0
        self.written = self.read = self.weight_read = self.ops = 0

    def track(self, t: torch.Tensor) -> None:
        """Hold ``t``'s storage alive in the count until ``t`` (and every other tracked tensor on
        that storage) is garbage."""
        if id(t) in self.seen:
            return
        key = _key(t)
        if key in self.weight_keys:
            return
        self.seen.add(id(t))
        if key not in self.refs:
            self.refs[key] = 0
            self.sizes[key] = t.untyped_storage().nbytes()
            self.live += self.sizes[key]
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1
        weakref.finalize(t, self._release, key, id(t))

    def _release(self, key: int, obj_id: int) -> None:
        self.seen.discard(obj_id)
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.live -= self.sizes.pop(key)
            del self.refs[key]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not func.is_view and func not in _ALLOCATIONS:
            self.ops += 1
            operands = {k: v for k, v in kwargs.items() if k != "out"}
            for t in tree_flatten((args, operands))[0]:
                if isinstance(t, torch.Tensor):
                    if _key(t) in self.weight_keys:
                        self.weight_read += _nbytes(t)
                    else:
                        self.read += _nbytes(t)
            self.written += sum(_nbytes(t) for t in outputs)
        for t in outputs:
            self.track(t)
        return out


def activation_profile(model: nn.Module, input_size: tuple[int, int]) -> ActivationProfile:
    """:class:`ActivationProfile` of one forward pass of ``model`` on a ``(W, H)`` fp32 image.

    See the module docstring for what is counted.
    """
    meta = copy.deepcopy(model).to("meta").eval()
    weights = {_key(t) for t in [*meta.parameters(), *meta.buffers()]}
    weight_bytes = sum(_nbytes(p) for p in meta.parameters())
    w, h = int(input_size[0]), int(input_size[1])
    tracker = _Tracker(weights)
    with torch.inference_mode():
        x = torch.empty(1, 3, h, w, device="meta")
        tracker.track(x)
        with tracker:
            y = meta(x)
        del y
    return ActivationProfile(
        input_size=(w, h), input_bytes=_nbytes(x), peak_bytes=tracker.peak,
        written_bytes=tracker.written, read_bytes=tracker.read,
        weight_read_bytes=tracker.weight_read, weight_bytes=weight_bytes, ops=tracker.ops,
    )
