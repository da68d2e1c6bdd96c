"""Two-process test runs on 127.0.0.1 with gloo: the environment torchrun would set, a launcher
and the worker functions (importable by the spawned processes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_env(rank: int, world: int, port: int) -> dict[str, str]:
    """The variables torchrun gives each worker."""
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def launch(fn: Any, args: tuple, world: int = 2, timeout: float = 300) -> None:
    """Run ``fn(rank, *args)`` in ``world`` spawned processes; raise when one fails or hangs."""
    ctx = mp.start_processes(fn, args=args, nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError(f"{world} processes did not finish within {timeout} s")


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(torchrun_env(rank, world, port))
    torch.set_num_threads(1)


def train_worker(rank: int, world: int, port: int, cfg: Any, data: str, run: str) -> None:
    """One plain distributed run: ``train`` joins the process group from the environment."""
    from squeezedet.train import train

    _join(rank, world, port)
    result = train(cfg, data, run, progress=False)
    Path(run, f"rank{rank}.json").write_text(json.dumps({"step": result.step}))


def stop_resume_worker(rank: int, world: int, port: int, cfg: Any, data: str, out: str,
                       signal_at: int) -> None:
    """In one process group: an uninterrupted run ``full``; a run ``split`` that rank 0 alone
    sends SIGTERM to during the step of index ``signal_at``, then resumed; a time-bounded run."""
    import squeezedet.train as train_module
    from squeezedet import distributed
    from squeezedet.train import TrainingStopped, train

    _join(rank, world, port)
    distributed.init_from_env("cpu")
    record: dict[str, Any] = {}
    train(cfg, data, Path(out, "full"), progress=False)

    real = train_module.train_step

    def step(*args: Any, **kwargs: Any) -> Any:
        if rank == 0 and args[6] == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    train_module.train_step = step  # type: ignore[assignment]
    try:
        train(cfg, data, Path(out, "split"), progress=False)
    except TrainingStopped as stopped:
        record["stopped_at"] = stopped.step
    resumed: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        resumed.append(args[6])
        return real(*args, **kwargs)

    train_module.train_step = counted  # type: ignore[assignment]
    record["resumed_to"] = train(cfg, data, Path(out, "split"), resume=True, progress=False).step
    record["resumed_steps"] = resumed
    train_module.train_step = real

    timed = replace(cfg, steps=None, time_limit_min=0.02, val_max_images=1)
    record["timed_steps"] = train(timed, data, Path(out, "timed"), progress=False).step
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    distributed.teardown()
