"""Energy: RAPL counters on a fake powercap tree (wrap-around included), a mocked NVML, the
idle subtraction, and the estimate's arithmetic on a hand-computed tiny network."""

from pathlib import Path

import pytest
from torch import nn

from squeezedet.deployment.energy import (
    EnergyUnavailable,
    ModelCost,
    NvmlMeter,
    RaplMeter,
    estimate_joules,
    estimate_joules_per_image,
    find_meter,
    measure_energy,
    wrapped_delta,
)
from squeezedet.errors import SqueezeDetError
from squeezedet.models.memory import activation_profile
from squeezedet.models.profile import count_flops


def _zone(root: Path, name: str, label: str, energy: int, max_range: int) -> Path:
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{energy}\n")
    (z / "max_energy_range_uj").write_text(f"{max_range}\n")
    return z


def _fake_powercap(root: Path) -> dict[str, Path]:
    # the kernel's layout: every zone appears as intel-rapl:* directly under the class folder
    return {
        "pkg": _zone(root, "intel-rapl:0", "package-0", 999_000, 1_000_000),
        "core": _zone(root, "intel-rapl:0:0", "core", 5, 1_000_000),      # inside the package
        "dram": _zone(root, "intel-rapl:0:1", "dram", 100, 500_000),
        "psys": _zone(root, "intel-rapl:1", "psys", 7, 1_000_000),        # would double-count
    }


def test_wrapped_delta_by_hand():
    assert wrapped_delta(100, 250, 1000) == 150
    assert wrapped_delta(900, 50, 1000) == 150  # 100 to the top, 50 after the wrap
    assert wrapped_delta(7, 7, 1000) == 0


def test_rapl_reads_package_and_dram_across_a_wrap(tmp_path):
    zones = _fake_powercap(tmp_path)
    meter = RaplMeter(tmp_path)
    assert [z.name for z in meter.zones] == ["package-0", "dram"]
    before = meter.read()
    assert before == (999_000, 100)
    (zones["pkg"] / "energy_uj").write_text("500\n")      # wrapped: 1,000 + 500 µJ
    (zones["dram"] / "energy_uj").write_text("2100\n")    # 2,000 µJ
    (zones["core"] / "energy_uj").write_text("900000\n")  # ignored: part of the package
    (zones["psys"] / "energy_uj").write_text("900000\n")  # ignored when a package zone exists
    assert meter.joules(before, meter.read()) == pytest.approx(3_500e-6)


def test_rapl_psys_only_when_no_package(tmp_path):
    _zone(tmp_path, "intel-rapl:1", "psys", 10, 1_000_000)
    meter = RaplMeter(tmp_path)
    assert [z.name for z in meter.zones] == ["psys"]


def test_rapl_unavailable_says_why(tmp_path):
    with pytest.raises(EnergyUnavailable, match="no intel-rapl"):
        RaplMeter(tmp_path)
    meter, why = find_meter("cpu", powercap_root=tmp_path)
    assert meter is None and "no readable RAPL" in why


class _Sim:
    """A simulated machine: a clock, and a RAPL counter file that integrates the power drawn
    (idle_w while sleeping, busy_w while a batch runs for run_s)."""

    def __init__(self, zone: Path, idle_w: float, busy_w: float, run_s: float) -> None:
        self.zone, self.t, self.uj = zone, 0.0, 999_000_000.0
        self.idle_w, self.busy_w, self.run_s = idle_w, busy_w, run_s
        self.runs = 0
        self._write()

    def _advance(self, seconds: float, watts: float) -> None:
        self.t += seconds
        self.uj = (self.uj + watts * seconds * 1e6) % 1_000_000_000  # wraps at 1,000 J
        self._write()

    def _write(self) -> None:
        (self.zone / "energy_uj").write_text(f"{round(self.uj)}\n")

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self._advance(seconds, self.idle_w)

    def run_once(self) -> None:
        self.runs += 1
        self._advance(self.run_s, self.busy_w)


def test_measure_energy_subtracts_idle_power_with_rapl(tmp_path):
    zone = _zone(tmp_path, "intel-rapl:0", "package-0", 0, 1_000_000_000)
    sim = _Sim(zone, idle_w=10.0, busy_w=30.0, run_s=0.5)
    r = measure_energy(sim.run_once, batch=4, meter=RaplMeter(tmp_path), min_seconds=2.0,
                       min_runs=3, idle_seconds=1.0, clock=sim.clock, sleep=sim.sleep)
    # 1 warm-up + 4 measured runs (2 s at 0.5 s each); the counter wrapped at 1,000 J on the way
    assert sim.runs == 5 and r.images == 16 and r.seconds == pytest.approx(2.0)
    assert r.method == "rapl" and not r.estimated
    assert r.idle_watts == pytest.approx(10.0)
    assert r.mean_watts == pytest.approx(30.0)
    # gross: 30 W * 2 s / 16 images; net of idle: (30 - 10) W * 2 s / 16
    assert r.gross_joules_per_image == pytest.approx(3.75)
    assert r.joules_per_image == pytest.approx(2.5)
    assert r.to_json()["method"] == "rapl" and "idle 10.0 W" in r.source


class _FakeNvml:
    """The pynvml calls the meter uses; the counter is in millijoules."""

    def __init__(self, readings, supported=True):
        self.readings = list(readings)
        self.supported = supported
        self.inits = 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA TITAN X (Pascal)"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.supported:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return self.readings.pop(0)


def test_nvml_meter_reads_millijoules():
    fake = _FakeNvml([0, 1_000, 6_000])  # the first reading is the support check
    meter = NvmlMeter(1, nvml=fake)
    assert fake.inits == 1 and "GPU 1 (NVIDIA TITAN X (Pascal))" in meter.description
    a, b = meter.read(), meter.read()
    assert meter.joules(a, b) == pytest.approx(5.0)


def test_measure_energy_with_mocked_nvml():
    t = [0.0]

    def clock():
        return t[0]

    def sleep(s):
        t[0] += s

    def run_once():
        t[0] += 0.25

    # support check, idle start, idle end (2 s: 60 J → 30 W), run start, run end (8 runs, 2 s)
    fake = _FakeNvml([0, 10_000, 70_000, 80_000, 380_000])
    r = measure_energy(run_once, batch=1, device="cuda:0", meter=NvmlMeter(0, nvml=fake),
                       min_seconds=2.0, idle_seconds=2.0, clock=clock, sleep=sleep)
    assert r.method == "nvml" and r.images == 8
    assert r.idle_watts == pytest.approx(30.0)
    assert r.mean_watts == pytest.approx(150.0)            # 300 J over 2 s
    assert r.gross_joules_per_image == pytest.approx(37.5)  # 300 J / 8
    assert r.joules_per_image == pytest.approx(30.0)        # (300 - 30 W * 2 s) / 8


def test_unsupported_nvml_falls_back_to_a_labelled_estimate():
    with pytest.raises(EnergyUnavailable, match="GPU 0"):
        NvmlMeter(0, nvml=_FakeNvml([], supported=False))
    meter, why = find_meter("cuda", nvml=_FakeNvml([], supported=False))
    assert meter is None and "NOT_SUPPORTED" in why
    t = [0.0]

    def run_once():
        t[0] += 0.5

    cost = ModelCost(gflops=2.0, dram_bytes_fp32=1_000_000)  # 1e9 MACs, 1 MB
    r = measure_energy(run_once, batch=2, meter=None, estimate=cost, min_seconds=1.0,
                       min_runs=2, clock=lambda: t[0])
    # 1e9 * 4.6 pJ + 1e6 B * 160 pJ = 4.6 mJ + 0.16 mJ per image; 2 runs of 2 images in 1 s
    assert r.method == "estimate" and r.estimated and r.idle_watts is None
    assert r.joules_per_image == pytest.approx(4.76e-3)
    assert r.mean_watts == pytest.approx(4.76e-3 * 4 / 1.0)
    assert "estimate" in r.label() and "Horowitz" in r.source
    with pytest.raises(EnergyUnavailable, match="no model cost"):
        measure_energy(run_once, batch=1, meter=None)
    with pytest.raises(SqueezeDetError, match="batch"):
        measure_energy(run_once, batch=0, meter=None, estimate=cost)


def test_estimate_on_a_hand_computed_tiny_network():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))
    # input 1x3x4x5 (W=5, H=4): 20 positions
    # MACs: conv1 4*3*9*20 = 2160, conv2 2*4*20 = 160 -> 2320 MACs = 4640 FLOPs
    assert count_flops(net, (5, 4)) == 4640
    act = activation_profile(net, (5, 4))
    # fp32 bytes: input 3*20*4 = 240; conv1 out 4*20*4 = 320; conv2 out 2*20*4 = 160
    assert act.input_bytes == 240
    assert act.written_bytes == 320 + 320 + 160      # conv1, ReLU in place, conv2
    assert act.read_bytes == 240 + 320 + 320         # conv1 reads x, ReLU and conv2 read conv1's out
    assert act.weight_bytes == act.weight_read_bytes == (4 * 27 + 4 + 2 * 4 + 2) * 4  # 488
    assert act.peak_bytes == 240 + 320 + 160         # Sequential holds all three at the end
    assert act.dram_bytes == 488 + 880 + 800         # 2168
    # fp32: 2320 * 4.6 pJ + 2168 B * 160 pJ = 10,672 + 346,880 pJ
    assert estimate_joules_per_image(4640 / 1e9, 2168, "fp32") == pytest.approx(357_552e-12)
    # int8: 2320 * 0.3 pJ + 542 B * 160 pJ = 696 + 86,720 pJ
    assert estimate_joules_per_image(4640 / 1e9, 2168, "int8") == pytest.approx(87_416e-12)
    # bf16: 2320 * 1.5 pJ + 1084 B * 160 pJ = 3,480 + 173,440 pJ
    assert estimate_joules_per_image(4640 / 1e9, 2168, "bf16") == pytest.approx(176_920e-12)
    assert estimate_joules(1e12, 0, "fp32") == pytest.approx(4.6)
    with pytest.raises(SqueezeDetError, match="fp16"):
        estimate_joules(1, 1, "fp16")


def test_activation_peak_frees_dead_tensors():
    class Chain(nn.Module):
        def forward(self, x):
            for _ in range(5):
                x = x * 2  # each result replaces the last; only two are alive at once
            return x

    act = activation_profile(Chain(), (10, 10))
    one = 3 * 100 * 4
    assert act.written_bytes == 5 * one and act.read_bytes == 5 * one
    # the caller's input stays alive; inside, at most the previous result and the new one
    assert act.peak_bytes == 3 * one


def test_design_point_figures_agree_with_their_sources():
    from squeezedet.design_space import design_point, format_table

    p = design_point("squeezedet", input_size=(128, 64), compressed=False)
    assert p.params == 2_082_120 and p.fp32_bytes == 4 * p.params and p.int8_bytes == p.params
    assert p.compressed_bytes is None
    # activations: the first conv writes 64 channels at 64x32, then ReLUs it in place
    assert p.activation_written_bytes > 2 * 64 * 32 * 64 * 4
    assert p.activation_peak_bytes >= 3 * 64 * 128 * 4 + 64 * 32 * 64 * 4
    assert p.dram_bytes_estimate > p.fp32_bytes + p.activation_written_bytes
    assert p.energy_fp32_estimate == pytest.approx(
        estimate_joules_per_image(p.gflops, p.dram_bytes_estimate, "fp32"))
    assert p.energy_int8_estimate < p.energy_fp32_estimate / 4
    text = format_table([p])
    assert "(est.)" in text and "Horowitz" in text and "squeezedet" in text
    js = p.to_json()
    assert js["energy_j_per_image"]["estimated"] is True
    assert js["energy_j_per_image"]["method"] == "estimate"


def test_estimate_with_a_known_latency_runs_nothing():
    def run_once():
        raise AssertionError("not run: the latency is given")

    cost = ModelCost(gflops=10.0, dram_bytes_fp32=400_000_000)
    r = measure_energy(run_once, batch=8, meter=None, estimate=cost, precision="int8",
                       seconds_per_batch=0.5)
    # 5e9 MACs * 0.3 pJ + 1e8 B * 160 pJ = 1.5 mJ + 16 mJ per image; 8 images per 0.5 s
    assert r.joules_per_image == pytest.approx(17.5e-3)
    assert r.mean_watts == pytest.approx(17.5e-3 * 16)
    assert r.estimated and r.method == "estimate" and r.images == 8


@pytest.mark.slow  # ~35 s of CPU: builds and compresses all four models
def test_info_all_json(capsys):
    import json

    from squeezedet.cli import main

    assert main(["info", "--all", "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["squeezedet"]["params"] == 2_082_120          # the paper's counts
    assert rows["squeezedet_plus"]["params"] == 7_021_640
    assert rows["vgg16_convdet"]["params"] == 15_046_536
    for r in rows.values():
        assert r["size_mb"]["compressed"] < r["size_mb"]["int8"] < r["size_mb"]["fp32"]
        assert r["energy_j_per_image"]["estimated"] is True


def test_weights_are_read_once_per_batch_in_the_estimate():
    from squeezedet.deployment.energy import model_cost

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))
    cost = model_cost(net, (5, 4))
    assert (cost.gflops, cost.dram_bytes_fp32, cost.weight_bytes_fp32) == (4640e-9, 2168, 488)
    # batch 4: the 488 weight bytes are shared by 4 images: 2168 - 488 + 122 = 1802 B per image
    assert cost.joules_per_image("fp32", batch=4) == pytest.approx((2320 * 4.6 + 1802 * 160) * 1e-12)
    assert cost.joules_per_image("fp32", batch=1) == pytest.approx(357_552e-12)
