"""Compress a trained checkpoint: magnitude pruning with fine-tuning, weight sharing (or low-bit
quantisation) and entropy coding — the three stages of Deep Compression (Han, Mao, Dally, ICLR
2016) that took SqueezeNet from 4.8 MB to 0.47 MB.

1. **Pruning**: in every convolution kernel with at least ``min_numel`` weights (but the first
   convolution, on the image), the fraction
   ``sparsity`` of the weights with the smallest magnitude is set to zero (per tensor, so that
   layers initialised at different scales lose the same share). With fine-tuning (``steps > 0``,
   on the training split of the checkpoint's data) the sparsity rises gradually over the first
   ``ramp`` share of the steps, ``s·(1 − (1 − t/T)³)`` (Zhu and Gupta, "To prune, or not to
   prune", 2017), and the pruned weights are held at zero after every optimiser step; the rest of
   the steps recover the accuracy. The steps are the training code's own
   (:func:`squeezedet.engine.train_step`, the checkpoint's configuration, its optimiser and loss,
   and an exponential moving average of the weights over at most a tenth of the steps when the
   checkpoint's run used one), with the learning rate ``lr`` decaying to zero on a cosine.
2. **Weight sharing**: the remaining weights of each tensor share ``2^bits`` values, k-means
   centroids (or evenly spaced levels), :mod:`squeezedet.codec`.
3. **Entropy coding** of positions, indices and values, :mod:`squeezedet.codec`.

The result is a ``.sqz`` file that :func:`squeezedet.checkpoint.load_checkpoint` reads like a
``.pt`` checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from squeezedet import codec, engine
from squeezedet.checkpoint import (
    config_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    model_settings,
    write_atomic,
)
from squeezedet.config import TrainConfig
from squeezedet.data.dataset import collate
from squeezedet.errors import SqueezeDetError
from squeezedet.models.layers import with_memory_format
from squeezedet.train import build_datasets

log = logging.getLogger("squeezedet.compress")

#: Index widths for the layers that lose the most accuracy when their weights are shared coarsely,
#: measured on the demo model (each group alone at 4 bits, the rest fp32, mAP_R40 from 56.06 on
#: the synthetic validation split: the first convolution −3.6, ConvDet −3.3, the Fire squeeze
#: layers −2.8, expand1x1 +0.1 and expand3x3 +0.4 alone; with the rest shared, expand1x1 at 4
#: bits instead of 5 cost 1.8):
#: conv1 (on the image; 1,728 weights) 8 bits, ConvDet 6, squeeze and expand1x1 5; the rest —
#: the 3×3 expand kernels, 58 % of the weights — take ``bits`` (4 by default). SqueezeNet
#: backbones' names; for other models only ``features.0`` and ``convdet`` match.
SENSITIVE_LAYER_BITS: tuple[tuple[str, int], ...] = (
    ("backbone.features.0.*", 8), ("convdet.*", 6), ("*.squeeze.*", 5), ("*.expand1x1.*", 5))


def parse_layer_bits(text: str) -> tuple[tuple[str, int], ...]:
    """``"auto"`` → :data:`SENSITIVE_LAYER_BITS`, ``"none"`` or ``""`` → none, else
    ``"GLOB=BITS,GLOB=BITS"`` (e.g. ``"convdet.*=6,*.squeeze.*=5"``)."""
    text = text.strip()
    if text == "auto":
        return SENSITIVE_LAYER_BITS
    if text in ("", "none"):
        return ()
    pairs = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        pattern, sep, bits = item.rpartition("=")
        if not sep or not pattern or not bits.strip().isdigit():
            raise SqueezeDetError(f"--layer-bits: {item!r} is not GLOB=BITS (e.g. convdet.*=6)")
        pairs.append((pattern.strip(), int(bits)))
    return tuple(pairs)


@dataclass(frozen=True)
class CompressSettings:
    """How :func:`compress_checkpoint` compresses (see the module docstring).

    Args:
        sparsity: share of each pruned tensor's weights set to zero, in [0, 1).
        bits: codebook size ``2^bits`` per tensor, 1–8.
        quantizer: ``"kmeans"`` (weight sharing) or ``"uniform"``.
        steps: fine-tuning steps while pruning (0: prune once, no training data needed).
        share_steps: fine-tuning steps of the shared values after pruning (trained weight
            sharing; k-means only).
        lr: peak fine-tuning learning rate (default: a hundredth of the checkpoint's; a tenth
            cost the demo model 1.2 points of mAP_R40 in 300 steps without any pruning).
        batch_size: fine-tuning batch (default: the checkpoint's).
        ramp: share of the steps over which the sparsity rises to its target.
        min_numel: kernels with fewer weights stay dense and exact (like biases).
        entropy: ``"lzma"``, ``"zlib"`` or ``"none"``.
        layer_bits: ``(glob, bits)`` pairs overriding ``bits`` for the tensors whose names match
            (first match counts), e.g. :data:`SENSITIVE_LAYER_BITS`.
    """

    sparsity: float = 0.0
    bits: int = 4
    quantizer: str = "kmeans"
    steps: int = 0
    share_steps: int = 0
    lr: float | None = None
    batch_size: int | None = None
    ramp: float = 0.5
    min_numel: int = 1024
    entropy: str = "lzma"
    layer_bits: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise SqueezeDetError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.steps < 0 or self.share_steps < 0:
            raise SqueezeDetError("fine-tuning steps cannot be negative")
        if not 0.0 < self.ramp <= 1.0:
            raise SqueezeDetError(f"ramp must be in (0, 1], got {self.ramp}")
        if self.lr is not None and self.lr <= 0:
            raise SqueezeDetError(f"lr must be positive, got {self.lr}")
        self.codec_settings()  # validates bits, quantizer, entropy

    def codec_settings(self) -> codec.CodecSettings:
        return codec.CodecSettings(bits=self.bits, quantizer=self.quantizer, entropy=self.entropy,
                                   layer_bits=self.layer_bits,
                                   min_numel=self.min_numel)


# --- pruning -----------------------------------------------------------------------------------


def prunable(state: dict[str, torch.Tensor], min_numel: int = 1024) -> list[str]:
    """Names of the convolution and linear kernels (floating point, ≥ 2 dimensions) with at least
    ``min_numel`` elements, except a convolution on the image (≤ 3 input channels): the tensors
    that are pruned. The first convolution is the most sensitive to pruning (Han et al. 2015) and
    among the smallest (1,728 weights in SqueezeDet); it is weight-shared but stays dense."""
    return [k for k, v in state.items()
            if v.is_floating_point() and v.dim() >= 2 and v.numel() >= min_numel
            and not (v.dim() == 4 and v.shape[1] <= 3)]


def magnitude_masks(state: Mapping[str, torch.Tensor], sparsity: float,
                    names: Iterable[str]) -> dict[str, torch.Tensor]:
    """For each tensor in ``names``, a bool mask (in the tensor's memory layout) keeping all but
    its ``round(sparsity · n)`` smallest-magnitude entries; among equal magnitudes at the
    threshold the earliest (in C order) are dropped first."""
    masks = {}
    for name in names:
        t = state[name].detach()
        n = t.numel()
        drop = int(round(sparsity * n))
        flat = t.abs().flatten().float()
        keep = torch.ones(n, dtype=torch.bool, device=t.device)
        if drop > 0:
            threshold = flat.kthvalue(drop).values
            keep = flat > threshold
            missing = n - drop - int(keep.sum())  # entries at the threshold that stay
            if missing > 0:
                ties = torch.nonzero(flat == threshold).flatten()
                keep[ties[ties.numel() - missing:]] = True
        masks[name] = torch.empty_like(t, dtype=torch.bool).copy_(keep.view(t.shape))
    return masks


@torch.no_grad()
def apply_masks(tensors: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the masked-out entries of ``tensors`` in place."""
    for name, mask in masks.items():
        tensors[name].mul_(mask)


def sparsity_of(state: dict[str, torch.Tensor], names: Iterable[str]) -> float:
    """Share of exact zeros over the tensors ``names``."""
    names = list(names)
    total = sum(state[k].numel() for k in names)
    zeros = sum(int((state[k] == 0).sum()) for k in names)
    return zeros / total if total else 0.0


def prune_state_dict(state: dict[str, torch.Tensor], sparsity: float,
                     min_numel: int = 1024) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with :func:`magnitude_masks` applied to its :func:`prunable` tensors."""
    out = {k: v.detach().clone() for k, v in state.items()}
    apply_masks(out, magnitude_masks(out, sparsity, prunable(out, min_numel)))
    return out


def ramp_sparsity(step: int, ramp_steps: int, target: float) -> float:
    """Gradual pruning schedule: ``target·(1 − (1 − step/ramp_steps)³)``, ``target`` after."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return target
    return target * (1.0 - (1.0 - step / ramp_steps) ** 3)


# --- fine-tuning -------------------------------------------------------------------------------


#: called with the step, the trained parameters and the moving average's parameters (empty
#: when the run keeps no average), by name
Hook = Callable[[int, dict[str, torch.Tensor], dict[str, torch.Tensor]], None]


def _finetune(ckpt: dict[str, Any], data_root: str | Path, cfg: TrainConfig, steps: int,
              before: Hook, after: Hook, progress: bool, desc: str) -> dict[str, torch.Tensor]:
    """``steps`` training steps of ``ckpt``'s model on ``data_root`` with the training code's
    :func:`~squeezedet.engine.train_step`; ``before`` runs before each step, ``after`` after it
    (and after the moving average's update). Returns the final state dict (the moving average's
    when the run used one)."""
    device = engine.resolve_device(cfg.device)
    train_ds, _ = build_datasets(cfg, data_root, need_val=False)
    if len(train_ds) == 0:
        raise SqueezeDetError(f"{data_root}: the training split has no images to fine-tune on")
    classes = tuple(ckpt["meta"]["class_names"])
    if tuple(train_ds.classes) != classes:
        raise SqueezeDetError(f"{data_root}: its classes {list(train_ds.classes)} differ from the "
                              f"checkpoint's {list(classes)}; fine-tune on the data it was trained on")
    if cfg.cache_images:
        train_ds.cache_images(progress=progress)
    model = engine.build_model(cfg, classes)
    model.load_state_dict(ckpt["model"])
    model = model.to(device)
    if device.type == "cpu":
        model = with_memory_format(model, torch.channels_last)
    params: dict[str, torch.Tensor] = dict(model.named_parameters())
    optimizer = engine.make_optimizer(model, cfg)
    loss_fn = engine.loss_from_config(cfg)
    ema = engine.WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    ema_params: dict[str, torch.Tensor] = dict(ema.model.named_parameters()) if ema is not None else {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True)
    step, epoch = 0, 0
    t0 = time.monotonic()
    while step < steps:
        train_ds.set_epoch(epoch)
        batches = engine.epoch_batches(len(train_ds), cfg.batch_size, cfg.seed, epoch)
        loader = DataLoader(train_ds, batch_sampler=batches, num_workers=cfg.workers,
                            collate_fn=collate, generator=torch.Generator().manual_seed(epoch))
        for images, targets in loader:
            before(step, params, ema_params)
            stats = engine.train_step(model, images, targets, loss_fn, optimizer, cfg, step, device,
                               progress=step / steps)
            if ema is not None:
                ema.update(model, step + 1)
            after(step, params, ema_params)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss_total']:.3f}")
            if step >= steps:
                break
        epoch += 1
    if bar is not None:
        bar.close()
    log.info("%s: %d steps in %.0f s", desc, steps, time.monotonic() - t0)
    final = ema.model if ema is not None else model
    return {k: v.detach().cpu().contiguous() for k, v in final.state_dict().items()}


def finetune_pruned(ckpt: dict[str, Any], data_root: str | Path, settings: CompressSettings,
                    progress: bool = True) -> dict[str, torch.Tensor]:
    """Prune ``ckpt``'s weights gradually while training them on ``data_root``'s training split;
    the pruned state dict (the moving average of the weights when the run used one)."""
    cfg = _finetune_config(ckpt, settings, settings.steps)
    names = prunable(ckpt["model"], settings.min_numel)
    ramp_steps = max(1, int(settings.ramp * settings.steps))
    stage = max(1, ramp_steps // 20)
    masks: dict[str, torch.Tensor] = {}
    target = -1.0

    def before(step: int, params: dict[str, torch.Tensor], ema_params: dict[str, torch.Tensor]) -> None:
        nonlocal masks, target
        s = ramp_sparsity(step, ramp_steps, settings.sparsity)
        # tighten the masks in 20 stages as the sparsity rises (sorting every step would cost as
        # much as the step), from the trained weights; the moving average follows them
        if step == 0 or (s > target and (step % stage == 0 or step >= ramp_steps)):
            target = s
            masks = magnitude_masks(params, s, names)
            apply_masks(params, masks)
            if ema_params:  # empty when the run keeps no moving average
                apply_masks(ema_params, masks)

    def after(step: int, params: dict[str, torch.Tensor], ema_params: dict[str, torch.Tensor]) -> None:
        apply_masks(params, masks)
        if ema_params:
            apply_masks(ema_params, masks)

    state = _finetune(ckpt, data_root, cfg, settings.steps, before, after, progress, "pruning")
    # hold the target exactly even if the last tightening came a step short of it
    apply_masks(state, magnitude_masks(state, settings.sparsity, names))
    return state


def finetune_shared(ckpt: dict[str, Any], state: dict[str, torch.Tensor], data_root: str | Path,
                    settings: CompressSettings, progress: bool = True) -> dict[str, torch.Tensor]:
    """Trained weight sharing (Deep Compression's stage 2): quantise ``state``'s pruned kernels
    to ``2^bits`` k-means values each, then train for ``settings.share_steps`` with the cluster
    of every weight fixed: after each step each cluster's weights are replaced by their mean (the
    centroid moves by the mean update of its weights; zeros stay zero). Returns weights with at
    most ``2^bits`` distinct non-zero values per kernel, which the codec stores exactly."""
    cfg = _finetune_config(ckpt, settings, settings.share_steps)
    names = prunable(state, settings.min_numel)
    widths = settings.codec_settings()
    clusters: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
    for name in names:
        mask, codebook, idx = codec.quantize_tensor(state[name], widths.bits_for(name),
                                                    settings.quantizer)
        positions = torch.from_numpy(mask).nonzero().flatten()
        clusters[name] = (positions, torch.from_numpy(idx.astype("int64")), int(codebook.size))

    @torch.no_grad()
    def share(params: dict[str, torch.Tensor]) -> None:
        for name, (positions, idx, k) in clusters.items():
            p = params[name]
            values = p.detach().flatten()[positions].double()
            sums = torch.zeros(k, dtype=torch.float64).index_add_(0, idx, values)
            counts = torch.bincount(idx, minlength=k).clamp_min(1)
            full = torch.zeros(p.numel(), dtype=p.dtype)
            full[positions] = (sums / counts).to(p.dtype)[idx]
            p.copy_(full.view(p.shape))

    def before(step: int, params: dict[str, torch.Tensor], ema_params: dict[str, torch.Tensor]) -> None:
        if step == 0:
            share(params)
            if ema_params:  # empty when the run keeps no moving average
                share(ema_params)

    def after(step: int, params: dict[str, torch.Tensor], ema_params: dict[str, torch.Tensor]) -> None:
        share(params)
        if ema_params:
            share(ema_params)

    start = {**ckpt, "model": state}
    return _finetune(start, data_root, cfg, settings.share_steps, before, after, progress,
                     "weight sharing")


def _finetune_config(ckpt: dict[str, Any], settings: CompressSettings, steps: int) -> TrainConfig:
    if not isinstance(ckpt.get("config"), dict):
        raise SqueezeDetError("the checkpoint holds no training configuration, needed to "
                              "fine-tune; compress with --steps 0")
    base = config_from_checkpoint(ckpt)
    # a moving average over at most a tenth of the steps: a longer one would still hold the
    # weights of the first steps, before the masks reached their target
    # (the run's averaging, given as a decay or as a fraction of its steps)
    tenth = max(0.0, 1.0 - 10.0 / steps)
    ema = (min(base.ema_decay, tenth) if base.ema_decay > 0
           else tenth if base.ema_fraction > 0 else 0.0)
    return replace(base, lr=settings.lr or base.lr / 100, lr_schedule="cosine", warmup_steps=0,
                   warmup_fraction=0.0, steps=steps, epochs=None, time_limit_min=None,
                   ema_decay=ema, ema_fraction=0.0,
                   batch_size=settings.batch_size or base.batch_size)


# --- the whole pipeline ------------------------------------------------------------------------


@dataclass(frozen=True)
class CompressResult:
    """What :func:`compress_checkpoint` wrote."""

    path: Path
    bytes: int
    fp32_bytes: int
    source_file_bytes: int | None
    sparsity: float
    size: codec.EncodedSize
    settings: CompressSettings

    @property
    def ratio(self) -> float:
        """fp32 parameter bytes / compressed file bytes."""
        return self.fp32_bytes / self.bytes

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "bytes": self.bytes, "mb": self.bytes / 2**20,
                "fp32_bytes": self.fp32_bytes, "source_file_bytes": self.source_file_bytes,
                "ratio": self.ratio, "sparsity": self.sparsity, "size": self.size.to_json(),
                "settings": {k: getattr(self.settings, k) for k in self.settings.__dataclass_fields__}}


def compress_state(ckpt: dict[str, Any], settings: CompressSettings,
                   data_root: str | Path | None = None,
                   progress: bool = True) -> tuple[dict[str, torch.Tensor], float]:
    """Pruned (and, with ``settings.steps``, fine-tuned) weights of ``ckpt`` and their sparsity
    over the pruned tensors. Not yet weight-shared: :func:`encode_checkpoint` does that."""
    state = {k: v.detach().cpu() for k, v in ckpt["model"].items()}
    if (settings.steps > 0 or settings.share_steps > 0) and data_root is None:
        raise SqueezeDetError("fine-tuning (--steps or --share-steps > 0) needs the training data: "
                              "give --data ROOT")
    if settings.steps > 0:
        assert data_root is not None
        state = finetune_pruned(ckpt, data_root, settings, progress)
    else:
        state = prune_state_dict(state, settings.sparsity, settings.min_numel)
    if settings.share_steps > 0:
        assert data_root is not None
        state = finetune_shared(ckpt, state, data_root, settings, progress)
    return state, sparsity_of(state, prunable(state, settings.min_numel))


def encode_checkpoint(ckpt: dict[str, Any], state: dict[str, torch.Tensor],
                      settings: CompressSettings,
                      note: dict[str, Any] | None = None) -> tuple[bytes, codec.EncodedSize]:
    """The ``.sqz`` bytes of ``state`` with ``ckpt``'s metadata and configuration."""
    header: dict[str, Any] = {"format_version": ckpt.get("format_version", 1), "meta": ckpt["meta"]}
    if isinstance(ckpt.get("config"), dict):
        header["config"] = ckpt["config"]
    header["compression"] = {"sparsity": settings.sparsity, "bits": settings.bits,
                             "layer_bits": [list(p) for p in settings.layer_bits],
                             "quantizer": settings.quantizer, "steps": settings.steps, **(note or {})}
    return codec.encode_state_dict(state, settings.codec_settings(), header)


def compress_checkpoint(weights: str | Path, out: str | Path, settings: CompressSettings,
                        data_root: str | Path | None = None,
                        progress: bool = True) -> CompressResult:
    """Prune (fine-tuning on ``data_root`` when ``settings.steps > 0``), weight-share and entropy
    code the checkpoint ``weights`` into ``out`` (written atomically)."""
    out = Path(out)
    if out.suffix.lower() != codec.SUFFIX:
        raise SqueezeDetError(f"{out}: a compressed checkpoint must end in {codec.SUFFIX}")
    ckpt = load_checkpoint(weights, mmap=True)
    state, sparsity = compress_state(ckpt, settings, data_root, progress)
    data, size = encode_checkpoint(ckpt, state, settings, {"source": Path(weights).name})
    write_atomic(out, lambda f: f.write(data))
    fp32 = sum(v.numel() * 4 for v in ckpt["model"].values() if v.is_floating_point())
    src = Path(weights).stat().st_size if Path(weights).is_file() else None
    return CompressResult(out, len(data), fp32, src, sparsity, size, settings)


def validation_map(weights: str | Path | dict[str, Any], data_root: str | Path,
                   progress: bool = False) -> tuple[float, float]:
    """``(mAP_R40, mAP_R11)`` of a checkpoint (``.pt`` or ``.sqz``, or a loaded dict) on the
    validation split of ``data_root``, with its training configuration's evaluation settings."""
    ckpt = weights if isinstance(weights, dict) else load_checkpoint(weights, mmap=True)
    settings = model_settings(ckpt["meta"])
    cfg = replace(config_from_checkpoint(ckpt), input_size=settings["input_size"],
                  classes=settings["class_names"], device="cpu", val_max_images=None)
    _, val = build_datasets(cfg, data_root)
    if val is None or len(val) == 0:
        raise SqueezeDetError(f"{data_root}: no validation images (split {cfg.val_split!r})")
    model = model_from_checkpoint(ckpt)
    result = engine.evaluate(model, val, cfg, torch.device("cpu"), progress=progress)
    if hasattr(result, "headline"):
        score = float(result.headline[1])
        return score, score
    return float(result.map_r40), float(result.map_r11)
