"""A tiny KITTI-layout data set the tests draw themselves: coloured shapes on a noisy background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# class -> (colour, aspect w/h)
SHAPES = {"Car": ((200, 40, 40), 2.0), "Pedestrian": ((40, 200, 40), 0.4),
          "Cyclist": ((40, 40, 200), 0.8)}


def make_tiny_kitti(root: Path, n: int = 4, size: tuple[int, int] = (128, 64),
                    seed: int = 0, per_image: int = 2) -> Path:
    """Write ``n`` images with ``per_image`` objects each, plus ImageSets with all ids in both."""
    rng = np.random.default_rng(seed)
    img_dir = root / "training" / "image_2"
    lab_dir = root / "training" / "label_2"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    w, h = size
    ids = []
    for i in range(n):
        arr = rng.integers(90, 140, size=(h, w, 3), dtype=np.uint8)
        im = Image.fromarray(arr)
        draw = ImageDraw.Draw(im)
        lines = []
        names = list(SHAPES)
        for j in range(per_image):
            name = names[(i + j) % 3]
            colour, aspect = SHAPES[name]
            bh = int(rng.integers(h // 3, h // 2))
            bw = max(4, int(bh * aspect))
            x1 = int(rng.integers(0, w - bw)) if j == 0 else int(rng.integers(w // 2, w - bw))
            if j == 0:
                x1 = int(rng.integers(0, max(1, w // 2 - bw)))
            y1 = int(rng.integers(0, h - bh))
            draw.rectangle([x1, y1, x1 + bw - 1, y1 + bh - 1], fill=colour)
            lines.append(f"{name} 0.00 0 0.00 {x1}.00 {y1}.00 {x1 + bw}.00 {y1 + bh}.00 "
                         "1.50 1.60 3.90 1.00 1.50 20.00 0.00")
        ids.append(f"{i:06d}")
        im.save(img_dir / f"{ids[-1]}.png")
        (lab_dir / f"{ids[-1]}.txt").write_text("\n".join(lines) + "\n")
    (root / "ImageSets").mkdir(exist_ok=True)
    (root / "ImageSets" / "train.txt").write_text("\n".join(ids) + "\n")
    (root / "ImageSets" / "val.txt").write_text("\n".join(ids) + "\n")
    return root
