"""Several processes, one job: PyTorch's process group as ``torchrun`` sets it up.

``torchrun --nproc-per-node N squeezedet train ...`` starts N processes and gives each the
environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. :func:`init_from_env` joins the process group they describe (NCCL when the
process works on a CUDA GPU, gloo on CPUs); without these variables, or with ``WORLD_SIZE=1``,
nothing happens and every helper here behaves as for a single process (rank 0 of 1), so code that
uses them runs unchanged in one process.

Helpers: :func:`rank`, :func:`world_size`, :func:`is_main` (rank 0 writes files and prints),
:func:`shard` (each item to exactly one rank), :func:`barrier`, :func:`all_gather_object`,
:func:`gather_object`, :func:`broadcast_object`, :func:`all_reduce` of a few floats.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def active() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: from the process group, else ``RANK`` (torchrun), else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes: from the process group, else ``WORLD_SIZE`` (torchrun), else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the process that writes shared outputs and prints summaries."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """``cuda`` without an index becomes this process's GPU (``cuda:LOCAL_RANK``) under torchrun;
    anything else is returned as is."""
    if device.type == "cuda" and device.index is None and world_size() > 1:
        return torch.device("cuda", local_rank() % max(torch.cuda.device_count(), 1))
    return device


def init_from_env(device: str | torch.device = "auto") -> bool:
    """Join the process group torchrun describes, when ``WORLD_SIZE`` > 1 and none exists yet.

    ``device`` is what the process will compute on (``"auto"``: CUDA when available): NCCL for
    CUDA, gloo otherwise. Returns whether a group was created here (then call :func:`teardown`).
    """
    if not dist.is_available() or dist.is_initialized():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    name = str(device)
    use_cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_device(torch.device("cuda")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return True


def teardown() -> None:
    """Leave the process group (if one is initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str | torch.device = "auto") -> Iterator[bool]:
    """:func:`init_from_env` on entering; on leaving, :func:`teardown` of a group created here
    (a group that already existed is left alone). Yields whether a group of > 1 process is active."""
    created = init_from_env(device)
    try:
        yield active()
    finally:
        if created:
            teardown()


def shard(items: Sequence[T], rank_: int | None = None, world_size_: int | None = None) -> list[T]:
    """This rank's share of ``items``: every ``world``-th item from position ``rank``, so each item
    goes to exactly one rank and the shares differ in length by at most one. By default the rank
    and size of the process group; without one (no torchrun), all of ``items``."""
    r = (rank() if active() else 0) if rank_ is None else rank_
    w = (world_size() if active() else 1) if world_size_ is None else world_size_
    if not 0 <= r < w:
        raise ValueError(f"rank {r} is outside a world of {w} processes")
    return list(items[r::w])


def _tensor_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every process (nothing to wait for in a single process)."""
    if active():
        dist.barrier()


def all_reduce(values: Sequence[float], op: str = "sum") -> list[float]:
    """``values`` combined over all processes elementwise (``op``: ``"sum"`` or ``"max"``)."""
    if not active():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_tensor_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def all_gather_object(obj: T) -> list[T]:
    """Every process's ``obj``, in rank order, on every process (``[obj]`` in a single one)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_object(obj: T, dst: int = 0) -> list[T] | None:
    """Every process's ``obj`` in rank order on ``dst``; ``None`` on the others."""
    if not active():
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size() if rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """``src``'s ``obj`` on every process."""
    if not active():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


__all__ = [
    "active", "all_gather_object", "all_reduce", "barrier", "broadcast_object", "gather_object",
    "init_from_env", "is_main", "local_device", "local_rank", "process_group", "rank", "shard",
    "teardown", "world_size",
]
