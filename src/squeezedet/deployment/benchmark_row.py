"""One row of the benchmark (:mod:`squeezedet.deployment.benchmark`): a backend and precision
timed in its stages — pre-processing, forward, post-processing — with its memory and, when asked,
its energy. :func:`measure_row` runs it here; :func:`run_row` in a fresh process
(``python -m squeezedet.deployment.benchmark_row --worker SPEC``) so that its peak memory is its own.

A row's ``spec`` (a JSON-able dict) holds: ``backend``, ``precision``, ``weights`` (a checkpoint),
``file`` (the exported model of the ``onnxruntime``/``openvino`` rows), ``image`` (a ``.npy`` RGB
uint8 image), ``batch``, ``threads``, ``runs``, ``warmup``, ``device``, ``energy``,
``energy_seconds`` and ``cost`` (the energy estimate's model cost).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, which starts afresh at ``exec`` (``ru_maxrss`` does
    not: it keeps the parent's peak at the time of the fork).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _stats(values_s: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values_s)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return {"median": statistics.median(ms), "p90": p90, "min": ms[0]}


# ---------------------------------------------------------------------------------------------
# the runner of each row


def _torch_nchw(spec: dict[str, Any], device: str) -> Any:
    """The baseline: the plain layer-by-layer eager forward, NCHW."""
    from squeezedet.deployment.runners import TorchRunner

    return TorchRunner(spec["weights"], device, channels_last=False, banded=False)


def _torch(spec: dict[str, Any], device: str) -> Any:
    """What ``predict --backend torch`` runs: channels-last on the CPU, first stage in bands."""
    from squeezedet.deployment.runners import TorchRunner

    return TorchRunner(spec["weights"], device, precision=spec["precision"],
                       channels_last=None if device == "cpu" else False,
                       compile=spec["backend"] == "torch-compile")


def _auto(spec: dict[str, Any], device: str) -> Any:
    """What ``predict --backend auto`` picks for a checkpoint on the CPU."""
    from squeezedet.deployment.runners import load_runner

    return load_runner(spec["weights"], "auto", "cpu", precision=spec["precision"],
                       threads=spec.get("threads"))


def _exported(spec: dict[str, Any], device: str) -> Any:
    """The row's exported model file in its runtime."""
    from squeezedet.deployment.runners import load_runner

    return load_runner(spec["file"], spec["backend"], "cpu", threads=spec.get("threads"))


#: row backend → runner(spec, device)
ROW_RUNNERS: dict[str, Callable[[dict[str, Any], str], Any]] = {
    "torch-nchw": _torch_nchw,
    "torch": _torch,
    "torch-compile": _torch,
    "auto": _auto,
    "onnxruntime": _exported,
    "openvino": _exported,
    "executorch": _exported,
}


# ---------------------------------------------------------------------------------------------
# timing


def _stage_timer(runner: Any, spec: dict[str, Any],
                 device: str) -> Callable[[], tuple[float, float, float]]:
    """One call of the row as ``predict`` makes it, timed per stage (seconds): pre-processing
    (the baseline with the fastest resize, OpenCV, so that no ratio gains from a slower baseline
    pre-processing), forward, post-processing (``split_head``, top-64, decode, NMS, boxes to the
    original pixels)."""
    import numpy as np
    import torch

    from squeezedet.deployment.preprocess import network_batch, runner_input
    from squeezedet.models.detector import split_head
    from squeezedet.ops.anchors import make_anchors
    from squeezedet.postprocess import PostProcess, to_original_pixels

    meta = runner.meta
    size = (int(meta["input_size"][0]), int(meta["input_size"][1]))
    k, c = len(meta["anchor_shapes"]), len(meta["class_names"])
    image = np.load(spec["image"])
    arrays = [image] * int(spec["batch"])
    orig = (int(image.shape[0]), int(image.shape[1]))
    post = PostProcess()
    anchors: dict[tuple[int, int], torch.Tensor] = {}
    baseline = spec["backend"] == "torch-nchw"

    def once() -> tuple[float, float, float]:
        t = time.perf_counter()
        x = network_batch(arrays, size) if baseline else runner_input(runner, arrays, size)
        t1 = time.perf_counter()
        out = runner(x)
        if device != "cpu":
            out = out.cpu()  # the detections are wanted on the host; this also waits for the GPU
        t2 = time.perf_counter()
        grid = (int(out.shape[-1]), int(out.shape[-2]))
        if grid not in anchors:
            anchors[grid] = make_anchors(grid, size, meta["anchor_shapes"],
                                         centers=meta.get("anchor_centers", "original"))
        for d in post(split_head(out.float(), k, c), anchors[grid], size):
            to_original_pixels(d["boxes"], size, orig)
        t3 = time.perf_counter()
        return t1 - t, t2 - t1, t3 - t2

    return once


def _precision_facts(runner: Any, precision: str, device: str) -> dict[str, Any]:
    """What the row's runner computes in: its precision, OpenVINO's inference precision, and
    whether bf16 is emulated (converted to fp32 and back: slower than fp32)."""
    from squeezedet import cpu

    runs_prec = str(getattr(runner, "precision", precision))
    ov_prec = getattr(runner, "inference_precision", None)  # OpenVINO: what it computes in
    emulated = runs_prec == "bf16" and ov_prec is None and device == "cpu" and not cpu.native_bf16()
    return {"runner_precision": runs_prec, "inference_precision": ov_prec, "emulated": emulated}


def measure_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one backend/precision (``spec``: the module docstring); the row's figures."""
    import torch

    from squeezedet.deployment.runners import light_torch_threads

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    backend, precision = spec["backend"], spec["precision"]
    device = str(spec.get("device") or "cpu")
    t0 = time.perf_counter()
    runner = ROW_RUNNERS[backend](spec, device)
    load_s = time.perf_counter() - t0
    once = _stage_timer(runner, spec, device)
    facts = _precision_facts(runner, precision, device)
    with light_torch_threads(runner):  # as Detector does for non-torch runners
        for _ in range(int(spec["warmup"])):
            once()
        times = [once() for _ in range(int(spec["runs"]))]
        pre, fwd, pst = (_stats([t[i] for t in times]) for i in range(3))
        total = _stats([sum(t) for t in times])
        energy = None
        if spec.get("energy"):
            computes = computes_in(precision, facts["inference_precision"], facts["emulated"])
            energy = row_energy(once, spec, computes, total["median"] / 1000, device).to_json()
    return {
        "backend": backend, "precision": precision, "runner": type(runner).__name__,
        **facts, "device": device, "energy": energy,
        "auto_choice": getattr(runner, "auto_choice", None),
        "load_s": load_s,
        **{f"pre_ms_{s}": v for s, v in pre.items()},
        **{f"forward_ms_{s}": v for s, v in fwd.items()},
        **{f"post_ms_{s}": v for s, v in pst.items()},
        **{f"total_ms_{s}": v for s, v in total.items()},
        "fps": int(spec["batch"]) * 1000 / total["median"],
        "peak_rss_mib": peak_rss_mib(),
        "threads": torch.get_num_threads(),
    }


def computes_in(precision: str, inference_precision: str | None, emulated: bool) -> str:
    """The precision a row's arithmetic runs in, for the energy estimate: ``int8`` for int8
    models; what OpenVINO reports it computes in (its fp32 models run bf16 on CPUs with AMX);
    ``fp32`` for emulated bf16."""
    if precision == "int8":
        return "int8"
    if inference_precision in ("bf16", "f16"):
        return "bf16"
    if inference_precision == "f32" or emulated:
        return "fp32"
    return precision


def row_energy(once: Callable[[], object], spec: dict[str, Any], precision: str,
               seconds_per_batch: float, device: str) -> Any:
    """Joules per image and mean watts of one row's whole call (pre-processing, forward,
    post-processing): read from the hardware counter of ``device`` (RAPL for the CPU, NVML for a
    GPU) while ``once`` repeats for ``spec["energy_seconds"]``, idle power subtracted; where no
    counter is readable, the documented estimate of the network's forward at ``precision``
    (:mod:`squeezedet.deployment.energy`; labelled, never passed off as a measurement) with the
    watts from the row's measured median time."""
    from squeezedet.deployment.energy import ModelCost, measure_energy

    cost = ModelCost(**spec["cost"]) if spec.get("cost") else None
    seconds = float(spec.get("energy_seconds", 3.0))
    return measure_energy(once, int(spec["batch"]), device=device, estimate=cost,
                          precision=precision, min_seconds=seconds, idle_seconds=min(2.0, seconds),
                          seconds_per_batch=seconds_per_batch)


def run_row(spec: dict[str, Any], in_process: bool) -> dict[str, Any]:
    """:func:`measure_row` here (``in_process``) or in a fresh Python process; a row that fails
    there comes back as ``{"backend", "precision", "error"}`` (its last line of stderr)."""
    if in_process:
        return measure_row(spec)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    proc = subprocess.run([sys.executable, "-m", "squeezedet.deployment.benchmark_row", "--worker",
                           json.dumps(spec)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"backend": spec["backend"], "precision": spec["precision"], "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(argv: list[str]) -> int:
    """Entry point of the per-row process: ``--worker SPEC_JSON`` → one JSON line on stdout."""
    import warnings

    warnings.simplefilter("ignore")
    spec = json.loads(argv[argv.index("--worker") + 1])
    print(json.dumps(measure_row(spec)))
    return 0


if __name__ == "__main__":  # the per-row worker process
    sys.exit(_worker(sys.argv))
