"""The detector can learn: a few images with a few boxes, overfitted on CPU."""

import torch
from tiny_data import make_tiny_kitti

import squeezedet
from squeezedet.data.kitti import KittiDataset, collate
from squeezedet.loss import SqueezeDetLoss
from squeezedet.ops.boxes import box_iou
from squeezedet.ops.matching import build_targets
from squeezedet.postprocess import PostProcess


def test_overfit_three_images(tmp_path):
    torch.manual_seed(0)
    root = make_tiny_kitti(tmp_path / "tiny", n=3, size=(192, 96), per_image=2)
    ds = KittiDataset(root, "train", input_size=(192, 96))
    images, targets = collate([ds[i] for i in range(len(ds))])
    model = squeezedet.create_model("squeezedet", input_size=(192, 96), dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = SqueezeDetLoss()
    dense = build_targets([t["boxes"] for t in targets], [t["labels"] for t in targets],
                          model.anchors)
    first = None
    for _ in range(120):
        model.train()
        out = model.split_head(model(images))
        loss = loss_fn(out, dense, model.anchors, model.input_size)["total"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        head = model.split_head(model(images))
        final = loss_fn(head, dense, model.anchors, model.input_size)["total"].item()
        dets = PostProcess()(head, model.anchors, model.input_size)
    assert final <= 0.1 * first, (first, final)
    for det, target in zip(dets, targets, strict=True):
        n = len(target["boxes"])
        top = det["boxes"][:n]
        iou = box_iou(target["boxes"], top)
        # every object is found by one of the top-n detections, with the right class
        best_iou, best = iou.max(dim=1)
        assert (best_iou > 0.5).all(), iou
        assert det["labels"][:n][best].tolist() == target["labels"].tolist()
