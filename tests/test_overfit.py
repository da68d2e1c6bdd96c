"""The detector can learn: a few images with a few boxes, overfitted on CPU.

The verdict must not rest on one CPU's float rounding (AVX2, AVX-512 and AMX kernels sum in other
orders): Adam's learning rate decays to zero on a cosine, so the run settles instead of ending
wherever a constant step size left it, and the checks have margins — the fitted regression target
of each object is its own box (IoU 1), the threshold is 0.5.
"""

import math

import pytest
import torch
from tiny_data import make_tiny_kitti

import squeezedet
from squeezedet.data.kitti import KittiDataset, collate
from squeezedet.loss import SqueezeDetLoss
from squeezedet.ops.boxes import box_iou
from squeezedet.ops.matching import build_targets
from squeezedet.postprocess import PostProcess

STEPS = 150


@pytest.mark.parametrize("seed", [0])
def test_overfit_three_images(tmp_path, seed):
    torch.manual_seed(seed)
    root = make_tiny_kitti(tmp_path / "tiny", n=3, size=(192, 96), per_image=2)
    ds = KittiDataset(root, "train", input_size=(192, 96))
    images, targets = collate([ds[i] for i in range(len(ds))])
    model = squeezedet.create_model("squeezedet", input_size=(192, 96), dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, STEPS) / STEPS)))
    loss_fn = SqueezeDetLoss()
    dense = build_targets([t["boxes"] for t in targets], [t["labels"] for t in targets],
                          model.anchors)
    first = None
    for _ in range(STEPS):
        model.train()
        out = model.split_head(model(images))
        loss = loss_fn(out, dense, model.anchors, model.input_size)["total"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        head = model.split_head(model(images))
        final = loss_fn(head, dense, model.anchors, model.input_size)["total"].item()
        dets = PostProcess(score_threshold=0.3)(head, model.anchors, model.input_size)
    assert final <= 0.1 * first, (first, final)
    for det, target in zip(dets, targets, strict=True):
        # every object is found with the right class by a confident detection (score >= 0.3)
        for box, label in zip(target["boxes"], target["labels"], strict=True):
            same = det["labels"] == label
            assert same.any(), (det, target)
            best = box_iou(box[None], det["boxes"][same]).max()
            assert best > 0.5, (best, det, target)
