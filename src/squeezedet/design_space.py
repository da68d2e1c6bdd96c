"""The paper's design-space table: accuracy aside, what each model costs in size, memory, compute
and energy, at its default input size.

Per model (batch 1, one forward pass):

- parameters; model size in MB (2^20 bytes): fp32, int8 (one byte per weight, biases included),
  and **compressed**: the actual size of a ``.sqz`` file (:mod:`squeezedet.codec`) of the model's
  weights as ``squeezedet compress`` stores them by default (no pruning, k-means sharing at
  ``bits`` bits with :data:`~squeezedet.compress.SENSITIVE_LAYER_BITS` for the sensitive
  layers; ``sparsity`` prunes first) — measured on randomly initialised weights (no trained
  weights exist for every model; random weights fill every shared value about equally often,
  trained ones are peaked and pack smaller: the trained demo SqueezeDet by ~10 %, see the
  README);
- activation memory of one forward (:func:`squeezedet.models.memory.activation_profile`): the
  peak of the live activations, and the total bytes written;
- GFLOPs (:func:`squeezedet.models.profile.profile_model`, multiply-add = 2);
- the DRAM traffic estimate (no reuse between operations) and the energy estimate per image at
  fp32 and int8 (:mod:`squeezedet.deployment.energy`: 45 nm per-operation energies, Horowitz
  2014) — both **estimates**, labelled so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from squeezedet import codec
from squeezedet.compress import SENSITIVE_LAYER_BITS, prune_state_dict
from squeezedet.deployment.energy import ESTIMATE_SOURCE, estimate_joules_per_image
from squeezedet.models import create_model, list_models
from squeezedet.models.memory import activation_profile
from squeezedet.models.profile import profile_model

MB = 2**20


@dataclass(frozen=True)
class DesignPoint:
    """One row of the table (sizes in bytes, energy in joules per image)."""

    model: str
    input_size: tuple[int, int]
    params: int
    fp32_bytes: int
    int8_bytes: int
    compressed_bytes: int | None
    compressed_setting: str
    activation_peak_bytes: int
    activation_written_bytes: int
    gflops: float
    dram_bytes_estimate: int
    energy_fp32_estimate: float
    energy_int8_estimate: float

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model, "input_size": list(self.input_size), "params": self.params,
            "size_mb": {"fp32": self.fp32_bytes / MB, "int8": self.int8_bytes / MB,
                        "compressed": None if self.compressed_bytes is None
                        else self.compressed_bytes / MB},
            "compressed_setting": self.compressed_setting,
            "activation_peak_mb": self.activation_peak_bytes / MB,
            "activation_written_mb": self.activation_written_bytes / MB,
            "gflops": self.gflops,
            "dram_mb_estimate": self.dram_bytes_estimate / MB,
            "energy_j_per_image": {"fp32": self.energy_fp32_estimate,
                                   "int8": self.energy_int8_estimate,
                                   "method": "estimate", "estimated": True,
                                   "source": ESTIMATE_SOURCE},
        }


def design_point(name: str, input_size: tuple[int, int] | None = None, num_classes: int = 3,
                 sparsity: float = 0.0, bits: int = 4, compressed: bool = True,
                 seed: int = 0) -> DesignPoint:
    """The :class:`DesignPoint` of model ``name`` (see the module docstring)."""
    torch.manual_seed(seed)
    model = create_model(name, input_size=input_size, num_classes=num_classes)
    size = model.input_size
    prof = profile_model(model, size)
    act = activation_profile(model, size)
    state = model.state_dict()
    labels = {"backbone.features.0.*": "conv1", "convdet.*": "ConvDet", "*.squeeze.*": "squeeze",
              "*.expand1x1.*": "expand1x1"}
    widths = ", ".join(f"{labels.get(g, g)} {b}" for g, b in SENSITIVE_LAYER_BITS)
    setting = ((f"pruned {sparsity:.0%} + " if sparsity else "") +
               f"{bits}-bit k-means ({widths} bits) + lzma (random weights)")
    packed = None
    if compressed:
        settings = codec.CodecSettings(bits=bits, layer_bits=SENSITIVE_LAYER_BITS)
        packed = len(codec.encode_state_dict(prune_state_dict(state, sparsity, settings.min_numel),
                                             settings, {"meta": model.metadata()})[0])
    return DesignPoint(
        model=name, input_size=size, params=prof.params, fp32_bytes=prof.params * 4,
        int8_bytes=prof.params, compressed_bytes=packed, compressed_setting=setting,
        activation_peak_bytes=act.peak_bytes, activation_written_bytes=act.written_bytes,
        gflops=prof.gflops, dram_bytes_estimate=act.dram_bytes,
        energy_fp32_estimate=estimate_joules_per_image(prof.gflops, act.dram_bytes, "fp32"),
        energy_int8_estimate=estimate_joules_per_image(prof.gflops, act.dram_bytes, "int8"),
    )


#: the paper's order first, then any other registered model
PAPER_ORDER = ("squeezedet", "squeezedet_plus", "vgg16_convdet", "resnet50_convdet")


def design_space(models: Sequence[str] | None = None, **kwargs: object) -> list[DesignPoint]:
    """:func:`design_point` of every registered model (or of ``models``) at its default size."""
    if models is None:
        known = list_models()
        models = [m for m in PAPER_ORDER if m in known] + [m for m in known if m not in PAPER_ORDER]
    return [design_point(name, **kwargs) for name in models]  # type: ignore[arg-type]


def format_table(points: Sequence[DesignPoint]) -> str:
    """The table as text; estimates are marked ``(est.)``."""
    head = (f"{'model':<18}{'params':>12}{'fp32 MB':>9}{'int8 MB':>9}{'sqz MB':>8}"
            f"{'act peak MB':>13}{'act written MB':>16}{'GFLOPs':>8}{'DRAM MB (est.)':>16}"
            f"{'J/img fp32 (est.)':>19}{'J/img int8 (est.)':>19}")
    lines = [head]
    for p in points:
        sqz = f"{p.compressed_bytes / MB:.2f}" if p.compressed_bytes is not None else "-"
        lines.append(
            f"{p.model:<18}{p.params:>12,}{p.fp32_bytes / MB:>9.2f}{p.int8_bytes / MB:>9.2f}"
            f"{sqz:>8}{p.activation_peak_bytes / MB:>13.1f}{p.activation_written_bytes / MB:>16.1f}"
            f"{p.gflops:>8.2f}{p.dram_bytes_estimate / MB:>16.0f}"
            f"{p.energy_fp32_estimate:>19.4f}{p.energy_int8_estimate:>19.4f}")
    if points:
        lines.append("")
        lines.append(f"sqz: {points[0].compressed_setting}; activations: one fp32 forward at batch 1, "
                     "the input size below, MB = 2^20 bytes")
        lines.append("sizes: " + ", ".join(f"{p.model} {p.input_size[0]}x{p.input_size[1]}"
                                           for p in points))
        lines.append(f"DRAM and J/img: {ESTIMATE_SOURCE}; DRAM assumes no reuse between operations")
    return "\n".join(lines)
