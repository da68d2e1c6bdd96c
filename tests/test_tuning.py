"""backend="auto" chooses by measuring: fake runners on a fake clock (no real timings asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import squeezedet.cpu
import squeezedet.deployment.runners as runners
import squeezedet.deployment.runners.auto as runners_auto
import squeezedet.deployment.tuning as tuning
from squeezedet.checkpoint import save_checkpoint
from squeezedet.deployment.runners import TorchRunner, auto_candidates, fastest_cpu_runner
from squeezedet.deployment.tuning import Candidate, ChoiceCache, choose
from squeezedet.models import create_model

SIZE = (96, 32)


class FakeClock:
    """A clock that moves only when a fake runner works."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeRunner:
    """Costs ``cost`` seconds of the fake clock per call; returns ``output`` (or runs ``inner``)."""

    def __init__(self, name: str, cost: float, clock: FakeClock, inner: Any = None) -> None:
        self.name, self.cost, self.clock, self.inner = name, cost, clock, inner
        self.calls = 0
        self.meta = inner.meta if inner is not None else {}
        self.device = torch.device("cpu")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.clock.now += self.cost
        return self.inner(images) if self.inner is not None else torch.zeros(1)


def _candidates(costs: dict[str, float], clock: FakeClock,
                built: list[str]) -> list[Candidate]:
    def make(name: str) -> Candidate:
        def build() -> FakeRunner:
            built.append(name)
            return FakeRunner(name, costs[name], clock)
        return Candidate(name, build, check=lambda r: None, call=lambda r: r(torch.zeros(1)))
    return [make(n) for n in costs]


@pytest.mark.parametrize("costs, fastest", [
    ({"slow": 0.30, "fast": 0.10}, "fast"),
    ({"fast": 0.10, "slow": 0.30}, "fast"),   # not the first listed: the measured one
    ({"a": 0.20, "b": 0.25, "c": 0.15}, "c"),
])
def test_choose_takes_the_fastest(costs: dict[str, float], fastest: str, tmp_path: Path) -> None:
    clock = FakeClock()
    choice = choose(_candidates(costs, clock, []), {"model": "m"}, cache=ChoiceCache(tmp_path),
                    clock=clock)
    assert choice.name == fastest and choice.runner.name == fastest and not choice.cached
    # every candidate timed: one median per candidate, equal to its fake cost
    assert choice.median_ms == pytest.approx({n: 1000 * c for n, c in costs.items()})


def test_second_call_is_a_cache_hit(tmp_path: Path) -> None:
    clock = FakeClock()
    costs = {"slow": 0.3, "fast": 0.1}
    timed: list[int] = []

    def counting_timer(*args: Any, **kwargs: Any) -> dict[str, float]:
        timed.append(1)
        return tuning.time_candidates(*args, **kwargs)

    key = {"model": "m", "input_size": [96, 32], "threads": 2}
    built: list[str] = []
    first = choose(_candidates(costs, clock, built), key, cache=ChoiceCache(tmp_path), clock=clock,
                   timer=counting_timer)
    assert first.name == "fast" and timed == [1] and sorted(built) == ["fast", "slow"]
    entry = next(iter(json.loads((tmp_path / "choices.json").read_text()).values()))
    assert entry["choice"] == "fast" and entry["key"] == key

    built.clear()
    second = choose(_candidates(costs, clock, built), key, cache=ChoiceCache(tmp_path),
                    clock=clock, timer=counting_timer)
    assert second.name == "fast" and second.cached
    assert timed == [1]              # the timing function was not called again
    assert built == ["fast"]         # only the cached choice was built
    assert second.median_ms == {}

    # another key (say, another thread count) is measured afresh
    other = choose(_candidates(costs, clock, []), {**key, "threads": 1}, cache=ChoiceCache(tmp_path),
                   clock=clock, timer=counting_timer)
    assert not other.cached and timed == [1, 1]


def test_cache_off_measures_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUEEZEDET_CACHE_DIR", "off")
    assert tuning.cache_dir() is None
    clock = FakeClock()
    for _ in range(2):
        choice = choose(_candidates({"a": 0.2, "b": 0.1}, clock, []), {"m": 1}, clock=clock)
        assert choice.name == "b" and not choice.cached
    monkeypatch.setenv("SQUEEZEDET_CACHE_DIR", str(tmp_path / "c"))
    assert tuning.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SQUEEZEDET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tuning.cache_dir() == tmp_path / "xdg" / "squeezedet"


def test_failing_and_disagreeing_candidates_are_left_out(tmp_path: Path) -> None:
    clock = FakeClock()

    def broken() -> Any:
        raise RuntimeError("runtime exploded")

    good = Candidate("good", lambda: FakeRunner("good", 0.3, clock), check=lambda r: None,
                     call=lambda r: r(torch.zeros(1)))
    wrong = Candidate("wrong", lambda: FakeRunner("wrong", 0.01, clock),
                      check=lambda r: "disagrees with PyTorch", call=lambda r: r(torch.zeros(1)))
    crash = Candidate("crash", broken, check=lambda r: None, call=lambda r: r(torch.zeros(1)))
    with pytest.warns(UserWarning) as caught:
        choice = choose([crash, wrong, good], {"m": 2}, cache=ChoiceCache(tmp_path), clock=clock)
    messages = " | ".join(str(w.message) for w in caught)
    assert "crash: unusable (runtime exploded)" in messages and "wrong: disagrees" in messages
    assert choice.name == "good"  # the faster "wrong" never counts


def test_a_corrupt_cache_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "choices.json").write_text("{not json")
    clock = FakeClock()
    choice = choose(_candidates({"a": 0.2, "b": 0.1}, clock, []), {"m": 3},
                    cache=ChoiceCache(tmp_path), clock=clock)
    assert choice.name == "b"
    assert json.loads((tmp_path / "choices.json").read_text())  # rewritten as valid JSON


# --- through fastest_cpu_runner: the candidates auto builds for a checkpoint ------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("squeezedet", input_size=SIZE, anchor_shapes=[(10, 20)]).eval()
    torch.nn.init.normal_(model.convdet.weight, std=0.01)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, path)
    return path


def _fake_builders(monkeypatch: pytest.MonkeyPatch, clock: FakeClock,
                   costs: dict[str, float], built: list[str]) -> None:
    """Every backend "installed", each built as a fake runner wrapping eager PyTorch (so the
    parity check passes) that costs ``costs[backend:precision]`` on the fake clock."""
    monkeypatch.setattr(runners_auto, "installed", lambda module: True)

    def builder(backend: str) -> Any:
        def build(conv: Any, precision: str, threads: int | None) -> FakeRunner:
            name = f"{backend}:{precision}"
            built.append(name)
            return FakeRunner(name, costs[name], clock, TorchRunner(conv.ckpt))
        return build

    for backend in ("torch", "onnxruntime", "openvino", "executorch"):
        monkeypatch.setitem(runners.CANDIDATE_BUILDERS, backend, builder(backend))


COSTS = {"torch:fp32": 0.30, "onnxruntime:fp32": 0.10, "openvino:fp32": 0.20, "executorch:fp32": 0.15,
         "torch:bf16": 0.05, "openvino:bf16": 0.04}


def test_auto_measures_and_caches_for_a_checkpoint(checkpoint: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    clock, built = FakeClock(), []
    _fake_builders(monkeypatch, clock, COSTS, built)
    runner = fastest_cpu_runner(checkpoint, clock=clock)
    assert runner.name == "onnxruntime:fp32"   # fastest fp32, although not OpenVINO
    assert sorted(built) == ["executorch:fp32", "onnxruntime:fp32", "openvino:fp32", "torch:fp32"]
    assert runner.auto_choice["cached"] is False
    timed = clock.now

    built.clear()
    again = fastest_cpu_runner(checkpoint, clock=clock)
    assert again.name == "onnxruntime:fp32" and again.auto_choice["cached"] is True
    assert built == ["onnxruntime:fp32"]
    assert again.calls == 1                      # the parity check only: nothing timed
    assert clock.now == pytest.approx(timed + COSTS["onnxruntime:fp32"])


def test_auto_never_takes_emulated_bf16(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, built = FakeClock(), []
    _fake_builders(monkeypatch, clock, COSTS, built)
    monkeypatch.setattr(squeezedet.cpu, "native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="bf16 is emulated"):
        assert auto_candidates("bf16") == [("torch", "fp32"), ("openvino", "fp32"),
                                           ("onnxruntime", "fp32"), ("executorch", "fp32")]
    with pytest.warns(UserWarning, match="bf16 is emulated"):
        runner = fastest_cpu_runner(checkpoint, precision="bf16", clock=clock)
    assert runner.name == "onnxruntime:fp32"
    assert not any(name.endswith("bf16") for name in built)  # never built, never timed

    # where the CPU has bf16 natively the (here faster) bf16 variants compete
    monkeypatch.setattr(squeezedet.cpu, "native_bf16", lambda: True)
    assert ("torch", "bf16") in auto_candidates("bf16")
    built.clear()
    runner = fastest_cpu_runner(checkpoint, precision="bf16", clock=clock)
    assert runner.name == "openvino:bf16"
    assert "torch:bf16" in built
    # fp32 asked: bf16 is never a candidate, native or not
    assert all(p == "fp32" for _, p in auto_candidates("fp32"))


def test_auto_rejects_int8_for_a_checkpoint() -> None:
    from squeezedet.errors import SqueezeDetError

    with pytest.raises(SqueezeDetError, match="int8 export"):
        auto_candidates("int8")


def test_native_bf16_follows_the_onednn_isa_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe says no under an ISA limit below AVX512_CORE_BF16, whatever the hardware."""
    cpu = squeezedet.cpu
    monkeypatch.setattr(cpu, "_hardware_bf16", lambda: True)
    for limit, allowed in [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_VNNI", False),
                           ("AVX512_CORE_BF16", True), ("AVX512_CORE_AMX", True), ("", True)]:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
        assert cpu._onednn_limit_allows_bf16() is allowed, limit


def test_training_autocast_and_openvino_hint_follow_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 is defaulted nowhere on a CPU that emulates it: not for training steps, not as
    OpenVINO's precision hint (even when OpenVINO itself lists BF16)."""
    from squeezedet.deployment.runners import ov_precision_hint
    from squeezedet.engine import mixed_precision

    class Core:  # OpenVINO's answer, as under ONEDNN_MAX_CPU_ISA=AVX2 without OV_CPU_MAX_ISA
        def get_property(self, device: str, name: str) -> list[str]:
            return ["BF16", "FP32", "INT8"]

    cpu_dev = torch.device("cpu")
    monkeypatch.setattr(squeezedet.cpu, "native_bf16", lambda: False)
    assert mixed_precision(cpu_dev, True, training=True) is None
    assert ov_precision_hint("int8", Core()) == "f32" and ov_precision_hint("bf16", Core()) == "f32"
    monkeypatch.setattr(squeezedet.cpu, "native_bf16", lambda: True)
    assert mixed_precision(cpu_dev, True, training=True) == "bfloat16"
    assert mixed_precision(cpu_dev, True, training=False) is None  # evaluation stays fp32
    assert ov_precision_hint("int8", Core()) == "bf16"
    assert ov_precision_hint("fp32", Core()) == "f32"
