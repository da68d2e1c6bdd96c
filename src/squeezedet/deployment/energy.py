"""Energy per image: measured from hardware energy counters where they are readable, otherwise
estimated from a documented model — and always labelled with which of the two it is.

**Measured** (``method`` ``"nvml"`` or ``"rapl"``, ``estimated=False``):

- NVIDIA GPUs: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules
  since the driver loaded; Volta and newer), read through ``nvidia-ml-py`` (the ``energy`` extra).
  This is the paper's method in counter form: SqueezeDet's 1.4 J per image on a TITAN X is the
  GPU's power while it runs times the time per image.
- CPUs: the kernel's RAPL counters under ``/sys/class/powercap/intel-rapl:*`` (``energy_uj``, in
  microjoules, wrapping at ``max_energy_range_uj``; AMD CPUs appear there too). The package zones
  (``package-N``) and the DRAM zones (``dram``) are summed; ``psys`` only when there is no package
  zone. The counters cover the whole socket, every process on it; since 2020 most kernels let only
  root read them. Many virtual machines (this project's included) have none.

:func:`measure_energy` reads the counter over an idle wait first and subtracts that idle power
from the energy read while the batch runs repeatedly: ``joules_per_image`` is the energy the
inference adds, ``gross_joules_per_image`` what the chip drew in all, ``mean_watts`` its mean
power while running.

**Estimated** (``method`` ``"estimate"``, ``estimated=True``) where no counter exists: from the
multiply-adds and the memory traffic of one forward pass, with per-operation energies in a 45 nm
process at 0.9 V from M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014 (the table also used by Han et al., "Learning both weights and connections for
efficient neural networks", NeurIPS 2015, and "Deep Compression", ICLR 2016):

=============  ==========================================================  =========
precision      multiply-add                                                pJ
=============  ==========================================================  =========
fp32           32-bit float multiply 3.7 + 32-bit float add 0.9             4.6
bf16           16-bit float multiply 1.1 + 16-bit float add 0.4 (fp16's)   1.5
int8           8-bit integer multiply 0.2 + 32-bit integer add 0.1          0.3
=============  ==========================================================  =========

and DRAM at 640 pJ per 32-bit access (Horowitz: 1.3–2.6 nJ per 64-bit access), i.e. 160 pJ per
byte, for the bytes :func:`squeezedet.models.memory.activation_profile` counts (weights read,
activations read and written, no reuse between operations; scaled to the precision's value
width). It counts arithmetic and DRAM only — no instruction fetch and decode, caches, control,
static or idle power, and a newer process needs less per operation — so it is the energy of an
idealised 45 nm accelerator: a lower bound of what a CPU or GPU draws, for comparing models and
precisions, not a measurement of this machine. bf16 takes fp16's figures (Horowitz lists no bf16;
its narrower multiplier needs somewhat less).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from squeezedet.errors import SqueezeDetError, require
from squeezedet.models.memory import activation_profile
from squeezedet.models.profile import count_flops

#: where the kernel exposes RAPL counters
POWERCAP_ROOT = Path("/sys/class/powercap")

#: picojoules per multiply-add (multiply + add) at 45 nm, 0.9 V (Horowitz, ISSCC 2014)
MAC_PJ: dict[str, float] = {"fp32": 3.7 + 0.9, "bf16": 1.1 + 0.4, "int8": 0.2 + 0.1}
#: picojoules per byte moved to or from DRAM: 640 pJ per 32-bit access (Horowitz, ISSCC 2014, as
#: tabulated by Han et al. 2015)
DRAM_PJ_PER_BYTE = 640.0 / 4
#: bytes per stored value
BYTES_PER_VALUE: dict[str, int] = {"fp32": 4, "bf16": 2, "int8": 1}
ESTIMATE_SOURCE = ("estimate: 45 nm arithmetic + DRAM energy per operation (Horowitz, ISSCC 2014); "
                   "a lower bound, not a measurement")


class EnergyUnavailable(SqueezeDetError):
    """No energy counter can be read here (the message says why)."""


class Meter(Protocol):
    """An energy counter: :meth:`read` snapshots it, :meth:`joules` is the energy between two
    snapshots."""

    method: str
    description: str

    def read(self) -> Any: ...

    def joules(self, before: Any, after: Any) -> float: ...


# --- RAPL / powercap ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RaplZone:
    """One powercap energy counter."""

    name: str
    path: Path
    max_range_uj: int


def wrapped_delta(before: int, after: int, max_range: int) -> int:
    """Counter increase from ``before`` to ``after`` for a counter that wraps around to 0 after
    ``max_range`` (at most one wrap between the two readings).

    The kernel's exact modulus is ``max_range`` plus one counter unit (a few tens of µJ), which
    sysfs does not show; the error is at most that unit per wrap.
    """
    return after - before if after >= before else after + max_range - before


class RaplMeter:
    """The RAPL energy counters under ``root`` (default :data:`POWERCAP_ROOT`).

    Raises:
        EnergyUnavailable: when there are no zones or their counters cannot be read.
    """

    method = "rapl"

    def __init__(self, root: str | Path = POWERCAP_ROOT) -> None:
        root = Path(root)
        found: list[RaplZone] = []
        problems: list[str] = []
        for zone in sorted(root.glob("intel-rapl:*")):
            try:
                name = (zone / "name").read_text().strip()
                max_range = int((zone / "max_energy_range_uj").read_text())
                int((zone / "energy_uj").read_text())
            except PermissionError:
                problems.append(f"{zone / 'energy_uj'}: permission denied (root only on this kernel)")
                continue
            except (OSError, ValueError) as exc:
                problems.append(f"{zone}: unreadable ({exc})")
                continue
            found.append(RaplZone(name, zone, max_range))
        zones = [z for z in found if z.name.startswith("package") or z.name == "dram"]
        if not any(z.name.startswith("package") for z in zones):
            zones += [z for z in found if z.name == "psys"]
        if not zones:
            why = "; ".join(problems) if problems else f"no intel-rapl:* zones under {root}"
            raise EnergyUnavailable(f"no readable RAPL energy counter: {why}")
        self.zones: tuple[RaplZone, ...] = tuple(zones)
        self.description = "RAPL " + ", ".join(z.name for z in self.zones)

    def read(self) -> tuple[int, ...]:
        """The zones' counters, in µJ."""
        try:
            return tuple(int((z.path / "energy_uj").read_text()) for z in self.zones)
        except (OSError, ValueError) as exc:
            raise EnergyUnavailable(f"RAPL counter read failed: {exc}") from None

    def joules(self, before: Sequence[int], after: Sequence[int]) -> float:
        """Energy of all zones between two :meth:`read` snapshots, wrap-around included."""
        return sum(wrapped_delta(b, a, z.max_range_uj)
                   for z, b, a in zip(self.zones, before, after, strict=True)) / 1e6


# --- NVML --------------------------------------------------------------------------------------


class NvmlMeter:
    """NVML's total-energy counter of GPU ``index`` (mJ since the driver loaded).

    ``nvml``: the ``pynvml`` module (default: imported; the ``energy`` extra installs it), given
    explicitly in tests.

    Raises:
        EnergyUnavailable: when NVML cannot start or the GPU has no energy counter (before Volta).
    """

    method = "nvml"

    def __init__(self, index: int = 0, nvml: Any = None) -> None:
        self.nvml = nvml if nvml is not None else require("pynvml", "energy")
        try:
            self.nvml.nvmlInit()
            self.handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
            name = self.nvml.nvmlDeviceGetName(self.handle)
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as exc:  # noqa: BLE001 - NVMLError and its many subclasses
            raise EnergyUnavailable(f"NVML energy counter of GPU {index} unavailable: {exc}") from None
        name = name.decode() if isinstance(name, bytes) else str(name)
        self.description = f"NVML total energy, GPU {index} ({name})"

    def read(self) -> int:
        """The counter, in mJ."""
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def joules(self, before: int, after: int) -> float:
        return (after - before) / 1e3


def find_meter(device: str = "cpu", powercap_root: str | Path = POWERCAP_ROOT,
               nvml: Any = None) -> tuple[Meter | None, str]:
    """The energy counter for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``) and a note; ``None``
    and the reason when none is readable."""
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        try:
            return NvmlMeter(index, nvml), ""
        except SqueezeDetError as exc:  # EnergyUnavailable, or pynvml not installed
            return None, str(exc)
    try:
        return RaplMeter(powercap_root), ""
    except EnergyUnavailable as exc:
        return None, str(exc)


# --- the estimate ------------------------------------------------------------------------------


def estimate_joules(macs: float, dram_bytes: float, precision: str = "fp32") -> float:
    """Estimated joules of ``macs`` multiply-adds and ``dram_bytes`` of DRAM traffic at
    ``precision`` (``fp32``, ``bf16``, ``int8``): ``macs · MAC_PJ + dram_bytes · 160 pJ``.

    ``dram_bytes`` are the bytes actually moved at that precision (see
    :func:`estimate_joules_per_image` for fp32 counts).
    """
    if precision not in MAC_PJ:
        raise SqueezeDetError(f"no energy figures for precision {precision!r}; choose from "
                              f"{', '.join(MAC_PJ)}")
    return (macs * MAC_PJ[precision] + dram_bytes * DRAM_PJ_PER_BYTE) * 1e-12


def estimate_joules_per_image(gflops: float, dram_bytes_fp32: float,
                              precision: str = "fp32") -> float:
    """Estimated joules per image from the GFLOPs of one forward pass (a multiply-add counted as 2
    FLOPs, as :func:`squeezedet.models.profile.profile_model` counts) and its DRAM traffic counted
    at fp32 (:attr:`ActivationProfile.dram_bytes`), scaled to ``precision``'s value width."""
    if precision not in BYTES_PER_VALUE:
        raise SqueezeDetError(f"no energy figures for precision {precision!r}; choose from "
                              f"{', '.join(BYTES_PER_VALUE)}")
    macs = gflops * 1e9 / 2
    return estimate_joules(macs, dram_bytes_fp32 * BYTES_PER_VALUE[precision] / 4, precision)


@dataclass(frozen=True)
class ModelCost:
    """What the estimate needs of a model at one input size: GFLOPs of one image, its DRAM
    traffic at batch 1 counted at fp32, and the part of that which is reading the weights (read
    once per batch, so shared by the images of a batch)."""

    gflops: float
    dram_bytes_fp32: int
    weight_bytes_fp32: int = 0

    def joules_per_image(self, precision: str = "fp32", batch: int = 1) -> float:
        """Estimated joules per image at ``precision`` in batches of ``batch``."""
        shared = self.weight_bytes_fp32 * (1 - 1 / max(batch, 1))
        return estimate_joules_per_image(self.gflops, self.dram_bytes_fp32 - shared, precision)


def model_cost(model: Any, input_size: tuple[int, int] | None = None) -> ModelCost:
    """:class:`ModelCost` of a :class:`SqueezeDet` (or any module taking ``[B, 3, H, W]``)."""
    size = input_size or model.input_size
    act = activation_profile(model, size)
    return ModelCost(count_flops(model, size) / 1e9, act.dram_bytes, act.weight_read_bytes)


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyResult:
    """Energy of one configuration. ``estimated`` is True for ``method == "estimate"``: then the
    joules come from the model in the module docstring and the watts from them and the measured
    time, never from a meter."""

    joules_per_image: float
    mean_watts: float
    method: str
    estimated: bool
    gross_joules_per_image: float
    idle_watts: float | None
    seconds: float
    images: int
    source: str

    def label(self) -> str:
        """``"1.41 J (nvml)"``, ``"0.061 J (estimate)"``."""
        return f"{self.joules_per_image:.3g} J ({self.method})"

    def to_json(self) -> dict[str, object]:
        return {"joules_per_image": self.joules_per_image, "mean_watts": self.mean_watts,
                "method": self.method, "estimated": self.estimated,
                "gross_joules_per_image": self.gross_joules_per_image,
                "idle_watts": self.idle_watts, "seconds": self.seconds, "images": self.images,
                "source": self.source}


def measure_energy(
    run_once: Callable[[], object],
    batch: int,
    *,
    device: str = "cpu",
    meter: Meter | None | str = "auto",
    estimate: ModelCost | None = None,
    precision: str = "fp32",
    min_seconds: float = 3.0,
    min_runs: int = 3,
    idle_seconds: float = 2.0,
    seconds_per_batch: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> EnergyResult:
    """Joules per image and mean watts of ``run_once`` (one batch of ``batch`` images).

    Measured with ``meter`` (``"auto"``: :func:`find_meter` for ``device``): the counter over
    ``idle_seconds`` of sleep gives the idle power; after one warm-up call, ``run_once`` is
    repeated for at least ``min_runs`` calls and ``min_seconds``; the idle power times that time is
    subtracted. On a GPU, ``run_once`` must wait for its work to finish (``torch.cuda.synchronize``).

    With no counter (``meter=None``, or none found), the estimate of ``estimate`` at ``precision``
    (see the module docstring), the watts from it and ``run_once``'s measured time — or
    ``seconds_per_batch`` when given (a latency already measured; ``run_once`` is then not run);
    with neither a counter nor an estimate, :class:`EnergyUnavailable`.
    """
    if batch < 1:
        raise SqueezeDetError(f"batch must be at least 1, got {batch}")
    why = "no meter given"
    if meter == "auto":
        meter, why = find_meter(device)
    if isinstance(meter, str):
        raise SqueezeDetError(f"meter must be 'auto', None or a Meter, not {meter!r}")
    if meter is None and estimate is None:
        raise EnergyUnavailable(f"{why}; and no model cost was given to estimate from")

    if meter is None and seconds_per_batch is not None:
        assert estimate is not None
        per_image = estimate.joules_per_image(precision, batch)
        return EnergyResult(
            joules_per_image=per_image, mean_watts=per_image * batch / max(seconds_per_batch, 1e-9),
            method="estimate", estimated=True, gross_joules_per_image=per_image, idle_watts=None,
            seconds=seconds_per_batch, images=batch, source=_estimate_source(why))

    idle_watts = None
    if meter is not None and idle_seconds > 0:
        before, t0 = meter.read(), clock()
        sleep(idle_seconds)
        after, t1 = meter.read(), clock()
        idle_watts = meter.joules(before, after) / max(t1 - t0, 1e-9)

    run_once()  # warm-up: first-call allocations, kernel selection
    before = meter.read() if meter is not None else None
    runs, start = 0, clock()
    while runs < min_runs or clock() - start < min_seconds:
        run_once()
        runs += 1
    seconds = clock() - start
    after = meter.read() if meter is not None else None
    images = runs * batch

    if meter is None:
        assert estimate is not None
        per_image = estimate.joules_per_image(precision, batch)
        return EnergyResult(
            joules_per_image=per_image, mean_watts=per_image * images / max(seconds, 1e-9),
            method="estimate", estimated=True, gross_joules_per_image=per_image, idle_watts=None,
            seconds=seconds, images=images, source=_estimate_source(why),
        )
    total = meter.joules(before, after)
    net = total - (idle_watts or 0.0) * seconds
    return EnergyResult(
        joules_per_image=net / images, mean_watts=total / max(seconds, 1e-9), method=meter.method,
        estimated=False, gross_joules_per_image=total / images, idle_watts=idle_watts,
        seconds=seconds, images=images,
        source=f"{meter.description}, idle {idle_watts:.1f} W subtracted"
        if idle_watts is not None and math.isfinite(idle_watts) else meter.description,
    )


def _estimate_source(why: str) -> str:
    return f"{ESTIMATE_SOURCE} ({why})" if why else ESTIMATE_SOURCE
