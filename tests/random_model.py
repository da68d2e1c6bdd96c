"""A SqueezeDet with random weights saved as a checkpoint, for the export and runtime tests."""

from __future__ import annotations

from pathlib import Path

import torch

from squeezedet.checkpoint import save_checkpoint
from squeezedet.models import create_model


def random_checkpoint(folder: Path, size: tuple[int, int], seed: int = 0,
                      convdet_std: float | None = 0.01) -> Path:
    """``folder/model.pt``: SqueezeDet at ``size`` (W, H) from ``torch.manual_seed(seed)``, with
    ConvDet's weights drawn from N(0, ``convdet_std``) (small: boxes stay near their anchors while
    the scores still vary); ``None`` keeps the model's own initialisation."""
    torch.manual_seed(seed)
    model = create_model("squeezedet", input_size=size).eval()
    if convdet_std is not None:
        torch.nn.init.normal_(model.convdet.weight, std=convdet_std)
    path = folder / "model.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, path)
    return path
