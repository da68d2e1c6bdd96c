"""One training step and one evaluation pass, as plain functions.

:func:`train_step` runs forward, target assignment, loss, backward, per-tensor gradient clipping
and the optimiser step. :func:`predict_dataset` and :func:`evaluate` run the model over a data set,
map boxes back to each image's original pixels, write KITTI result files and score them with the
KITTI evaluator.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from squeezedet import cpu
from squeezedet.config import TrainConfig
from squeezedet.data.kitti_format import KittiObject, write_kitti_file
from squeezedet.errors import NonFiniteLossError, SqueezeDetError
from squeezedet.loss import LossWeights, SqueezeDetLoss
from squeezedet.models import SqueezeDet
from squeezedet.ops.matching import build_targets
from squeezedet.postprocess import PostProcess, detections_to_kitti, to_original_pixels


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as given.

    Raises:
        SqueezeDetError: for a device name torch does not know, or CUDA when none is visible.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SqueezeDetError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SqueezeDetError(f"device {name!r}: PyTorch sees no CUDA GPU here (torch "
                                  f"{torch.__version__}); choose cpu or auto instead")
        if device.index is not None and device.index >= count:
            raise SqueezeDetError(f"device {name!r}: only {count} CUDA GPU(s) are visible")
    return device


def configure_cuda(deterministic: bool) -> None:
    """cuDNN autotuning for the fixed training input size, or deterministic kernels (bit-exact
    reruns and resumes, slower)."""
    if deterministic:
        # cuBLAS reads this when it creates its first workspace, i.e. before the first matmul
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX, not excluded by an ISA limit);
    elsewhere bf16 is emulated and slower than fp32. See :func:`squeezedet.cpu.native_bf16`."""
    return cpu.native_bf16()


def mixed_precision(device: torch.device, enabled: bool, training: bool = False) -> str | None:
    """The autocast dtype name used for ``device``, or ``None`` for plain fp32.

    CUDA: bf16 where supported, else fp16. CPU: bf16 for training steps only, and only on CPUs
    with native bf16 (forward and backward ~1.8x faster there; weights, loss and optimiser stay
    fp32). Evaluation on CPU stays fp32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device.type == "cpu" and training and cpu_has_native_bf16():
        return "bfloat16"
    return None


def autocast(device: torch.device, enabled: bool,
             training: bool = False) -> contextlib.AbstractContextManager[Any]:
    """Autocast to :func:`mixed_precision`'s dtype, or a no-op."""
    dtype = mixed_precision(device, enabled, training)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, dtype))


def loss_from_config(cfg: TrainConfig) -> SqueezeDetLoss:
    return SqueezeDetLoss(LossWeights(bbox=cfg.loss_bbox, conf_pos=cfg.loss_conf_pos,
                                      conf_neg=cfg.loss_conf_neg, cls=cfg.loss_class))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (or AdamW); weight decay on convolution kernels only, not biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim == 4]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim != 4]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # foreach: the single-tensor kernels are ~15x slower on channels-last parameters on CPU
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, foreach=True)


def learning_rate(cfg: TrainConfig, step: int, progress: float | None = None) -> float:
    """The learning rate of ``step`` (0-based).

    ``lr_schedule="step"``: ``lr · lr_decay^(step // lr_decay_steps)``. ``"cosine"``:
    ``lr · (1 + cos(π·progress)) / 2``, where ``progress`` is the fraction of the run done (steps
    or time); ``None`` counts as 0. Either way a linear warm-up over ``warmup_steps`` first.
    """
    if cfg.lr_schedule == "cosine":
        done = min(max(progress or 0.0, 0.0), 1.0)
        lr = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))
    else:
        lr = cfg.lr * cfg.lr_decay ** (step // cfg.lr_decay_steps)
    if step < cfg.warmup_steps:
        lr *= (step + 1) / cfg.warmup_steps
    return lr


def clip_per_tensor(params: Sequence[Tensor], max_norm: float) -> None:
    """Scale each gradient tensor separately so its L2 norm is at most ``max_norm``."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or max_norm <= 0:
        return
    norms = torch._foreach_norm(grads)
    scales = [torch.clamp(max_norm / (n + 1e-6), max=1.0) for n in norms]
    torch._foreach_mul_(grads, scales)


def is_channels_last(model: SqueezeDet) -> bool:
    """Whether the model's weights are channels-last (its 3×3 ConvDet kernel tells: a 1×1 kernel
    is the same in both layouts); inputs are then laid out to match."""
    return model.convdet.weight.is_contiguous(memory_format=torch.channels_last)


def train_step(
    model: SqueezeDet,
    images: Tensor,
    targets: list[dict[str, Any]],
    loss_fn: SqueezeDetLoss,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    step: int,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    progress: float | None = None,
) -> dict[str, float]:
    """One optimisation step on a batch; returns the loss terms and the learning rate.
    ``progress``: the fraction of the run done, for the cosine schedule.

    Raises:
        NonFiniteLossError: when the loss is NaN or infinite (the weights are left untouched).
    """
    model.train()
    lr = learning_rate(cfg, step, progress)
    for group in optimizer.param_groups:
        group["lr"] = lr
    images = images.to(device, non_blocking=True)
    if device.type == "cpu" and is_channels_last(model):
        images = images.contiguous(memory_format=torch.channels_last)
    boxes = [t["boxes"].to(device) for t in targets]
    labels = [t["labels"].to(device) for t in targets]
    dense = build_targets(boxes, labels, model.anchors)
    with autocast(device, cfg.amp, training=True):
        out = model(images)
    losses = loss_fn(model.split_head(out.float()), dense, model.anchors, model.input_size)
    total = losses["total"]
    if not torch.isfinite(total):
        terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        raise NonFiniteLossError(
            f"the loss became non-finite at step {step + 1} ({terms}); lower the learning rate "
            "(lr=...) or add warm-up (warmup_steps=...); the last good checkpoint is kept"
        )
    optimizer.zero_grad(set_to_none=True)
    params = [p for p in model.parameters() if p.requires_grad]
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
        clip_per_tensor(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        clip_per_tensor(params, cfg.grad_clip)
        optimizer.step()
    result = {f"loss_{k}": float(v.detach()) for k, v in losses.items()}
    result["lr"] = lr
    return result


@torch.no_grad()
def predict_batches(
    model: SqueezeDet,
    loader: Any,
    postprocess: PostProcess,
    device: torch.device,
    amp: bool = False,
) -> Iterator[tuple[dict[str, Any], dict[str, Tensor]]]:
    """Yield ``(target, detections)`` per image; detection boxes in original image pixels."""
    model.eval()
    for images, targets in loader:
        images = images.to(device)
        if device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            out = model(images)
        dets = postprocess(model.split_head(out.float()), model.anchors, model.input_size)
        for target, det in zip(targets, dets, strict=True):
            boxes = to_original_pixels(det["boxes"], model.input_size, target["orig_size"])
            yield target, {"boxes": boxes.cpu(), "scores": det["scores"].cpu(),
                           "labels": det["labels"].cpu()}


def evaluate(
    model: SqueezeDet,
    dataset: Any,
    cfg: TrainConfig,
    device: torch.device,
    result_dir: str | Path | None = None,
    progress: bool = False,
) -> Any:
    """KITTI AP of ``model`` on ``dataset`` (a :class:`KittiDataset` in eval mode).

    Writes one KITTI result file per image into ``result_dir`` when given. Returns the
    evaluator's :class:`~squeezedet.eval.kitti.KittiEvalResult`; for a data set whose ``metric``
    is ``"ap"`` (formats without KITTI difficulties), :class:`~squeezedet.eval.voc.APResult`.
    """
    from torch.utils.data import DataLoader, Subset

    from squeezedet.data.kitti import collate
    from squeezedet.eval import evaluate_kitti

    indices = list(range(len(dataset)))
    if cfg.val_max_images is not None:
        indices = indices[: cfg.val_max_images]
    loader = DataLoader(Subset(dataset, indices), batch_size=max(1, min(cfg.batch_size, 16)),
                        shuffle=False, num_workers=cfg.workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))  # leave the global RNG alone
    post = PostProcess(top_k=cfg.top_k, nms_iou=cfg.nms_iou)
    ground_truth: dict[str, list[KittiObject]] = {}
    detections: dict[str, list[KittiObject]] = {}
    if result_dir is not None:
        Path(result_dir).mkdir(parents=True, exist_ok=True)
    it = predict_batches(model, loader, post, device, cfg.amp)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(indices), desc="evaluating", unit="img", leave=False)
    position = {dataset.ids[i]: i for i in indices}
    for target, det in it:
        image_id = target["image_id"]
        objs = detections_to_kitti(det, model.class_names)
        detections[image_id] = objs
        ground_truth[image_id] = dataset.ground_truth(position[image_id])
        if result_dir is not None:
            write_kitti_file(Path(result_dir) / f"{image_id}.txt", objs)
    if getattr(dataset, "metric", "kitti") != "kitti":  # no KITTI difficulty fields
        from squeezedet.eval.voc import evaluate_ap

        return evaluate_ap(ground_truth, detections, classes=model.class_names)
    return evaluate_kitti(ground_truth, detections, classes=model.class_names)
