"""Shared test settings: small thread count so tests share the 2-core CI machine well."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "kitti"


@pytest.fixture
def kitti_samples() -> Path:
    """The real KITTI photographs of ../shared/samples; skips when this checkout has none."""
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples/kitti is not present (only in the development workspace)")
    return SAMPLES
