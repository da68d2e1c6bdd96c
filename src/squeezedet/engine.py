"""One training step and one evaluation pass, as plain functions, and the pieces they use.

:func:`build_model`, :func:`make_optimizer` and :func:`loss_from_config` build what a
configuration describes; :func:`epoch_batches` is the data order (the batch schedule) and
:class:`WeightEMA` the moving average of the weights, both shared by training and compression.
:func:`train_step` runs forward, target assignment, loss, backward, per-tensor gradient clipping
and the optimiser step. :func:`predict_dataset` and :func:`evaluate` run the model over a data set,
map boxes back to each image's original pixels, write KITTI result files and score them with the
KITTI evaluator.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from squeezedet import cpu, distributed
from squeezedet.checkpoint import init_from_checkpoint
from squeezedet.config import TrainConfig
from squeezedet.data.kitti_format import KittiObject, write_kitti_file
from squeezedet.errors import NonFiniteLossError, SqueezeDetError
from squeezedet.loss import LossWeights, SqueezeDetLoss
from squeezedet.models import SqueezeDet, create_model
from squeezedet.models.registry import network_input_size
from squeezedet.ops.matching import build_targets
from squeezedet.postprocess import (
    TTA_VIEWS,
    PostProcess,
    detections_to_kitti,
    flip_view,
    to_original_pixels,
)
from squeezedet.preemption import ignore_stop_signals, worker_batches


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
    # CPU: the fused kernels, one pass over each tensor (AdamW 1.6 against 3.7 ms a step for
    # SqueezeDet's parameters narrowed to AVX2: 1-2 % of a small-batch step); elsewhere foreach
    # (the single-tensor kernels are ~15x slower on channels-last parameters)
    on_cpu = all(p.device.type == "cpu" for p in decay + no_decay)

    def build(fused: bool) -> torch.optim.Optimizer:
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, foreach=not fused, fused=fused)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, foreach=not fused,
                               fused=fused)

    if on_cpu:
        try:
            return build(fused=True)
        except RuntimeError:  # a torch without this fused kernel on the CPU
            pass
    return build(fused=False)


def build_model(cfg: TrainConfig, class_names: tuple[str, ...],
                init_weights: bool = True) -> SqueezeDet:
    """The model ``cfg`` describes; with ``cfg.weights`` (and ``init_weights``) started from that
    checkpoint's weights."""
    pretrained: str | bool = False
    if cfg.pretrained:
        pretrained = True if cfg.pretrained == "download" else cfg.pretrained
    model = create_model(cfg.model, class_names=class_names,
                         input_size=network_input_size(cfg.model, cfg.input_size),
                         anchor_shapes=cfg.anchors, pretrained=pretrained,
                         freeze_stem=cfg.freeze_stem, dropout=cfg.dropout,
                         normalization=cfg.normalization, anchor_centers=cfg.anchor_centers,
                         padding=cfg.padding)
    if cfg.weights and init_weights:
        init_from_checkpoint(model, cfg.weights)
    return model


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a permutation fixed by (seed, epoch), last partial batch dropped."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    bs = min(batch_size, n)
    return [perm[i : i + bs] for i in range(0, n - bs + 1, bs)]


class EpochBatchSampler:
    """The batches of every epoch one after the other, from step ``start`` to ``stop`` (``None``:
    without end), as lists of ``(epoch, index)`` pairs: one DataLoader (whose workers then live
    for the whole run) serves every epoch, and a data set that takes the pair draws the
    augmentation of ``(seed, epoch, index)`` whichever worker loads it.

    ``batch_size`` is the global batch; ``part = (rank, per_process)`` takes this process's slice
    of every global batch (torchrun). Epoch ``e``'s batches are :func:`epoch_batches`'.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0,
                 stop: int | None = None, part: tuple[int, int] | None = None) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.part = start, stop, part
        self.per_epoch = len(epoch_batches(n, batch_size, seed, 0))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while self.stop is None or step < self.stop:
            epoch, offset = divmod(step, self.per_epoch)
            for batch in epoch_batches(self.n, self.batch_size, self.seed, epoch)[offset:]:
                if self.stop is not None and step >= self.stop:
                    return
                if self.part is not None:
                    rank, size = self.part
                    batch = batch[rank * size:(rank + 1) * size]
                yield [(epoch, i) for i in batch]
                step += 1


class WeightEMA:
    """Exponential moving average of the weights, for steadier results from short runs.

    ``ema = d·ema + (1 − d)·w`` after every step, with ``d = min(decay, (1 + t) / (10 + t))`` so
    early steps are not dominated by the random initialisation.
    """

    def __init__(self, model: SqueezeDet, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: SqueezeDet, step: int, decay: float | None = None) -> None:
        """Average in ``model`` after ``step`` steps, with ``decay`` instead of :attr:`decay`
        when given (:func:`ema_decay_at`)."""
        d = min(self.decay if decay is None else decay, (1 + step) / (10 + step))
        src = [t for t in model.state_dict().values() if t.is_floating_point()]
        dst = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        torch._foreach_lerp_(dst, src, 1.0 - d)


def ema_decay_at(cfg: TrainConfig, steps_done: int, progress: float) -> float:
    """The weight average's decay after ``steps_done`` steps, ``progress`` of the run done (of its
    steps, or of its time limit: :meth:`~squeezedet.run_state.RunClock.fraction_done`):
    ``ema_decay``, or with ``ema_fraction`` the decay whose horizon ``1 / (1 - decay)`` is that
    fraction of the steps the run is on course for (``steps_done / progress``), at least 5."""
    if cfg.ema_fraction <= 0:
        return cfg.ema_decay
    on_course = steps_done / max(progress, 1e-9)
    return 1.0 - 1.0 / max(5.0, cfg.ema_fraction * on_course)


def learning_rate(cfg: TrainConfig, step: int, progress: float | None = None) -> float:
    """The learning rate of ``step`` (0-based).

    ``lr_schedule="step"``: ``lr · lr_decay^(step // lr_decay_steps)``. ``"cosine"``:
    ``lr · (1 + cos(π·progress)) / 2``, where ``progress`` is the fraction of the run done (steps
    or time); ``None`` counts as 0. Either way a linear warm-up first: over ``warmup_steps``, or
    with ``warmup_fraction`` over that fraction of the run (``lr · progress / warmup_fraction``;
    a time-bounded run's progress is its clock's, so the warm-up lasts as long at any pace).
    """
    done = min(max(progress or 0.0, 0.0), 1.0)
    if cfg.lr_schedule == "cosine":
        lr = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))
    else:
        lr = cfg.lr * cfg.lr_decay ** (step // cfg.lr_decay_steps)
    if step < cfg.warmup_steps:
        lr *= (step + 1) / cfg.warmup_steps
    if cfg.warmup_fraction > 0:
        lr *= min(1.0, done / cfg.warmup_fraction)
    return lr


def clip_per_tensor(params: Sequence[Tensor], max_norm: float) -> None:
    """Scale each gradient tensor separately so its L2 norm is at most ``max_norm``."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or max_norm <= 0:
        return
    # all the scales in one tensor: a few operations, not three for each of ~60 tensors
    norms = torch.stack(torch._foreach_norm(grads))
    scales = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    torch._foreach_mul_(grads, list(scales.unbind(0)))


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
    ddp: torch.nn.Module | None = None,
) -> dict[str, float]:
    """One optimisation step on a batch; returns the loss terms and the learning rate.
    ``progress``: the fraction of the run done, for the cosine schedule.

    ``ddp``: ``model`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`; the batch is
    then this process's equal part of the global batch. The loss is normalised over the global
    batch (N and B counted over all processes) and multiplied by the number of processes, so that
    DDP's averaged gradient is the gradient of the global batch's loss, as one process computing
    the whole batch would get it. The terms returned are the global batch's.

    Raises:
        NonFiniteLossError: when the loss is NaN or infinite (the weights are left untouched).
    """
    model.train()
    if device.type == "cpu":
        # the step's large tensors reuse freed memory, not fresh pages from the kernel (~10 %);
        # once per process (cached), for every caller of a training step
        cpu.keep_freed_memory()
    lr = learning_rate(cfg, step, progress)
    for group in optimizer.param_groups:
        group["lr"] = lr
    images = images.to(device, non_blocking=True)
    if device.type == "cpu" and is_channels_last(model):
        images = images.contiguous(memory_format=torch.channels_last)
    boxes = [t["boxes"].to(device) for t in targets]
    labels = [t["labels"].to(device) for t in targets]
    # the anchors of this batch's size (a training crop may be smaller than the model's input)
    size = (int(images.shape[-1]), int(images.shape[-2]))
    anchors = model.anchors_for(size)
    dense = build_targets(boxes, labels, anchors)
    share: dict[str, Any] = {}
    world = distributed.world_size() if ddp is not None else 1
    if world > 1:
        (assigned,) = distributed.all_reduce([float(dense["mask"].sum())])
        share = {"num_assigned": torch.tensor(assigned, device=device),
                 "num_images": images.shape[0] * world}
    with autocast(device, cfg.amp, training=True):
        out = (ddp if ddp is not None else model)(images)
    losses = loss_fn(model.split_head(out.float()), dense, anchors, size, **share)
    total = losses["total"]
    values = {k: float(v.detach()) for k, v in losses.items()}
    if world > 1:  # the global batch's terms: the sum of the processes' shares
        values = dict(zip(values, distributed.all_reduce(list(values.values())), strict=True))
        total = total * world  # DDP averages the processes' gradients
    if not math.isfinite(values["total"]):
        terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
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
    result: dict[str, float] = {f"loss_{k}": v for k, v in values.items()}
    result["lr"] = lr
    return result


@torch.no_grad()
def predict_batches(
    model: SqueezeDet,
    loader: Any,
    postprocess: PostProcess,
    device: torch.device,
    amp: bool = False,
    tta: str = "none",
) -> Iterator[tuple[dict[str, Any], dict[str, Tensor]]]:
    """Yield ``(target, detections)`` per image; detection boxes in original image pixels.
    ``tta``: test-time flips, a key of :data:`~squeezedet.postprocess.TTA_VIEWS`."""
    model.eval()
    views = TTA_VIEWS[tta]
    for images, targets in loader:
        images = images.to(device)
        heads = []
        for view in views:
            batch = flip_view(images, view)
            if device.type == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                heads.append(model.split_head(model(batch).float()))
        dets = postprocess.merge_views(heads, views, model.anchors, model.input_size)
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

    In a process group (torchrun) each process predicts its share of the images
    (:func:`squeezedet.distributed.shard`); rank 0 gathers them, writes the result files and
    computes the AP once over all images; every process returns that result.
    """
    from torch.utils.data import DataLoader, Subset

    from squeezedet.data.dataset import collate
    from squeezedet.eval import evaluate_kitti

    indices = list(range(len(dataset)))
    if cfg.val_max_images is not None:
        indices = indices[: cfg.val_max_images]
    mine = distributed.shard(indices) if distributed.active() else indices
    loader = DataLoader(Subset(dataset, mine), batch_size=max(1, min(cfg.batch_size, 16)),
                        shuffle=False, num_workers=cfg.workers, collate_fn=collate,
                        worker_init_fn=ignore_stop_signals,  # stopping is the main process's
                        generator=torch.Generator().manual_seed(0))  # leave the global RNG alone
    post = PostProcess(top_k=cfg.top_k, nms_iou=cfg.nms_iou)
    detections: dict[str, list[KittiObject]] = {}
    it = predict_batches(model, worker_batches(loader), post, device, cfg.amp, cfg.tta)
    if progress and distributed.is_main():
        from tqdm import tqdm

        it = tqdm(it, total=len(mine), desc="evaluating", unit="img", leave=False)
    for target, det in it:
        detections[target["image_id"]] = detections_to_kitti(det, model.class_names)
    if distributed.active():  # each process predicted its share; rank 0 scores them together
        parts = distributed.gather_object(detections)
        if parts is None:
            return distributed.broadcast_object(None)
        detections = {k: v for part in parts for k, v in part.items()}
    position = {dataset.ids[i]: i for i in indices}
    ids = sorted(detections, key=position.__getitem__)
    detections = {image_id: detections[image_id] for image_id in ids}
    ground_truth = {image_id: dataset.ground_truth(position[image_id]) for image_id in ids}
    if result_dir is not None:
        Path(result_dir).mkdir(parents=True, exist_ok=True)
        for image_id, objs in detections.items():
            write_kitti_file(Path(result_dir) / f"{image_id}.txt", objs)
    if getattr(dataset, "metric", "kitti") != "kitti":  # no KITTI difficulty fields
        from squeezedet.eval.voc import evaluate_ap

        result: Any = evaluate_ap(ground_truth, detections, classes=model.class_names)
    else:
        result = evaluate_kitti(ground_truth, detections, classes=model.class_names)
    return distributed.broadcast_object(result)  # the same result on every process
