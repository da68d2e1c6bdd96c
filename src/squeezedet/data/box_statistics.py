"""Box statistics of a data set as the network sees them (for k-means anchors)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from squeezedet.data.box_fitting import fit_boxes_to_image
from squeezedet.data.dataset import DetectionDataset
from squeezedet.data.files import image_size
from squeezedet.data.formats import load_source
from squeezedet.data.samples import select_classes
from squeezedet.errors import SqueezeDetError

log = logging.getLogger(__name__)


def training_box_sizes(root: str | Path, input_size: tuple[int, int], *,
                       data_format: str = "auto", classes: Sequence[str] | None = None,
                       split: str = "train", tile: tuple[int, int] | None = None,
                       overlap: float = 0.2) -> np.ndarray:
    """``float64 [N, 2]`` (w, h) of the training boxes in network input pixels.

    Each box is scaled by ``input_size`` over the size of its image (its tile with ``tile``);
    ignored objects (difficult, crowd, mostly cut off by a tile) are left out, and boxes are
    fitted to their image as in training (:func:`~squeezedet.data.box_fitting.fit_boxes_to_image`).
    """
    source = load_source(root, data_format)
    chosen = select_classes(classes, source.classes, root)
    samples = source.split(split)
    ds = DetectionDataset(samples, chosen, input_size, tile=tile, tile_overlap=overlap)
    sizes = []
    dropped, clipped = 0, 0
    per_class = np.zeros(len(chosen), dtype=np.int64)
    for i in range(len(ds)):
        boxes, labels = ds._targets[i]
        if len(boxes) == 0:
            continue
        window = ds.window(i)
        if window is not None:
            w0, h0 = window[2] - window[0], window[3] - window[1]
        else:
            w0, h0 = samples[i].size or image_size(samples[i].image_path)
        boxes, keep, _, cut = fit_boxes_to_image(boxes, (w0, h0))
        dropped += int((~keep).sum())
        clipped += int(cut.sum())
        per_class += np.bincount(labels[keep], minlength=len(chosen))
        if len(boxes) == 0:
            continue
        wh = np.stack([(boxes[:, 2] - boxes[:, 0]) * input_size[0] / w0,
                       (boxes[:, 3] - boxes[:, 1]) * input_size[1] / h0], axis=1)
        sizes.append(wh.astype(np.float64))
    if dropped or clipped:
        log.warning("%s: %d boxes left out (outside their image, zero area or clipped to "
                    "nothing), %d clipped to their image", root, dropped, clipped)
    if not sizes:
        raise SqueezeDetError(f"{root}: no training boxes of the classes {', '.join(chosen)} "
                              f"in split {split!r}")
    if classes is not None and not per_class.all():
        missing = [c for c, n in zip(chosen, per_class, strict=True) if n == 0]
        raise SqueezeDetError(f"{root}: --classes: no box of class "
                              f"{', '.join(repr(c) for c in missing)} in split {split!r}; choose "
                              "classes the data has")
    return np.concatenate(sizes)
