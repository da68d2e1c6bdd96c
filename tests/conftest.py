"""Shared test settings: small thread count so tests share the 2-core CI machine well."""

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one of several test processes (pyproject's -n 2): one thread each, in this process and in
    # the processes its tests start, so that the processes do not fight over the cores (OpenMP's
    # spin-waiting made oversubscribed runs several times slower)
    os.environ["OMP_NUM_THREADS"] = "1"
import torch  # noqa: E402

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

# Narrowing this CPU to another's instruction sets (README, "Tests on any CPU"):
# ONEDNN_MAX_CPU_ISA limits PyTorch's oneDNN and the oneDNN inside OpenVINO, but not OpenVINO's own
# kernels, which read OV_CPU_MAX_ISA. With only the first set, OpenVINO 2026.4 mixes both views
# and cannot compile SqueezeDet ("Supported primitive descriptors list is empty for node ...
# MaxPool"), a state no real CPU is in: give OpenVINO the same limit (read when its CPU plugin
# loads, i.e. after this).
if os.environ.get("ONEDNN_MAX_CPU_ISA") and not os.environ.get("OV_CPU_MAX_ISA"):
    os.environ["OV_CPU_MAX_ISA"] = os.environ["ONEDNN_MAX_CPU_ISA"]

from squeezedet.deployment.signal_stack import current_signal_stack  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "kitti"


@pytest.fixture(autouse=True)
def _private_choice_cache(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """backend="auto" caches what it measured (squeezedet.deployment.tuning): in a fresh folder
    per test, never in the user's cache."""
    monkeypatch.setenv("SQUEEZEDET_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _signal_stack_unchanged() -> object:
    """No test leaves its process's alternate signal stack replaced (squeezedet.deployment.
    signal_stack): a stack unmapped later turns the next handled signal into a crash of the test
    process, in whichever test happens to run then."""
    before = current_signal_stack()
    yield
    assert current_signal_stack() == before, "this test left the alternate signal stack replaced"


@pytest.fixture
def one_thread():
    """In-process training runs on one thread, as the CLI's tiny test runs (faster so); the
    thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def kitti_samples() -> Path:
    """The real KITTI photographs of ../shared/samples; skips when this checkout has none."""
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples/kitti is not present (only in the development workspace)")
    return SAMPLES

