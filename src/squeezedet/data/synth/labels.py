"""KITTI labels of a synthetic scene, computed while its items are drawn far to near.

The box is the extent of the object's drawn shape clipped to ``[0, W-1] x [0, H-1]``; truncation
is the fraction of the unclipped box's area outside that rectangle; occlusion comes from the
fraction of the object's in-image pixels covered by nearer objects or clutter (< 0.1 → 0,
< 0.5 → 1, otherwise 2); objects whose clipped box is shorter than 5.5 % of the image height
become ``DontCare`` regions, and those of which less than 10 % is visible are not labelled at all.
The 3-D fields are the object's own: ``(h, w, l)``, the bottom centre ``(x, camera height, z)`` on
the ground plane the scene is drawn with, ``rotation_y`` and ``alpha = ry - atan2(x, z)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.synth.shapes import Camera, draw_prims, prims_extent
from squeezedet.data.synth.style import Item, wrap_angle

DONTCARE_HEIGHT = 0.055  # fraction of the image height under which an object is DontCare
MIN_VISIBLE = 0.10  # objects less visible than this are not labelled

def occlusion_level(hidden_fraction: float) -> int:
    """KITTI occlusion level of an object with ``hidden_fraction`` of its pixels covered."""
    if hidden_fraction < 0.1:
        return 0
    if hidden_fraction < 0.5:
        return 1
    return 2


def truncation(box: Sequence[float], width: int, height: int) -> float:
    """Fraction of the area of ``box`` (x1, y1, x2, y2) outside ``[0, W-1] x [0, H-1]``."""
    x1, y1, x2, y2 = box
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    if area <= 0:
        return 1.0
    iw = max(0.0, min(x2, width - 1.0) - max(x1, 0.0))
    ih = max(0.0, min(y2, height - 1.0) - max(y1, 0.0))
    return float(min(1.0, max(0.0, 1.0 - iw * ih / area)))


def label_objects(img: Image.Image, items: Sequence[Item], cam: Camera) -> list[KittiObject]:
    """Draw ``items`` far to near on ``img`` (in place) and return the KITTI labels."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    owner = Image.new("L", (w, h), 0)
    odraw = ImageDraw.Draw(owner)
    records = []
    next_id = 1
    for it in sorted(items, key=lambda i: -i.depth):
        draw_prims(draw, it.prims)
        if it.obj is None or next_id > 254:
            draw_prims(odraw, it.prims, fill=255)
            continue
        box = prims_extent(it.prims)
        cx1, cy1 = max(box[0], 0.0), max(box[1], 0.0)
        cx2, cy2 = min(box[2], w - 1.0), min(box[3], h - 1.0)
        if cx2 - cx1 < 1.0 or cy2 - cy1 < 1.0:
            draw_prims(odraw, it.prims, fill=255)
            continue
        ix1, iy1 = int(math.floor(cx1)), int(math.floor(cy1))
        ix2, iy2 = min(int(math.ceil(cx2)) + 1, w), min(int(math.ceil(cy2)) + 1, h)
        mask = Image.new("L", (ix2 - ix1, iy2 - iy1), 0)
        draw_prims(ImageDraw.Draw(mask), it.prims, offset=(ix1, iy1), fill=255)
        draw_prims(odraw, it.prims, fill=next_id)
        records.append((next_id, it.obj, box, (cx1, cy1, cx2, cy2), (ix1, iy1, ix2, iy2),
                        np.asarray(mask) > 0))
        next_id += 1
    own = np.asarray(owner)
    labels, dontcare = [], []
    for oid, obj, box, clipped, (ix1, iy1, ix2, iy2), pix in reversed(records):
        n_in = int(pix.sum())
        n_vis = int((own[iy1:iy2, ix1:ix2][pix] == oid).sum())
        visible = n_vis / n_in if n_in else 0.0
        if visible < MIN_VISIBLE:  # practically hidden: not labelled at all
            continue
        if clipped[3] - clipped[1] < DONTCARE_HEIGHT * h:
            dontcare.append(KittiObject("DontCare", clipped, truncated=-1.0, occluded=-1))
            continue
        ry = wrap_angle(obj.rotation_y)
        labels.append(KittiObject(
            type=obj.type,
            box=clipped,
            truncated=truncation(box, w, h),
            occluded=occlusion_level(1.0 - visible),
            alpha=wrap_angle(ry - math.atan2(obj.x, obj.z)),
            dimensions=obj.dimensions,
            location=(obj.x, cam.height_m, obj.z),
            rotation_y=ry,
        ))
    return labels + dontcare

