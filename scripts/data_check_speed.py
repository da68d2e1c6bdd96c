"""How long the data check before training takes on a KITTI-sized data set.

Writes (once) a KITTI-layout folder of N images of W×H pixels (by default 7,481 images of
1242×375, KITTI's training set) with five label lines each, one of them a box partly outside the
image and one a Van, then runs the check that ``squeezedet train`` runs before its first step
(:func:`squeezedet.data.check.open_checked`, both splits) and prints the time and the summary
line. The images are copies of one PNG (the check reads headers and file ends, so their content
does not matter); ``--decode`` also decodes every image once, for comparison.

    python scripts/data_check_speed.py --out /tmp/check_speed --images 7481
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from squeezedet.config import TrainConfig, parse_size
from squeezedet.data.check import open_checked
from squeezedet.data.images import load_image


def write(root: Path, n: int, size: tuple[int, int]) -> None:
    if (root / "ImageSets" / "val.txt").is_file():
        return
    images, labels = root / "training" / "image_2", root / "training" / "label_2"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    w, h = size
    rng = np.random.default_rng(0)
    pixels = np.tile(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    png = buffer.getvalue()
    for i in range(n):
        (images / f"{i:06d}.png").write_bytes(png)
        lines = []
        for k in range(5):
            x1, y1 = rng.uniform(0, w - 100), rng.uniform(0, h - 60)
            bw, bh = rng.uniform(20, 100), rng.uniform(20, 60)
            if k == 3:
                x1 = w - bw / 2  # half outside: clipped
            cls = "Van" if k == 4 else "Car"
            lines.append(f"{cls} 0.00 0 0.00 {x1:.2f} {y1:.2f} {x1 + bw:.2f} {y1 + bh:.2f} "
                         "1.50 1.60 3.90 1.00 1.50 20.00 0.00")
        (labels / f"{i:06d}.txt").write_text("\n".join(lines) + "\n")
    (root / "ImageSets").mkdir()
    ids = [f"{i:06d}" for i in range(n)]
    (root / "ImageSets" / "train.txt").write_text("\n".join(ids[::2]) + "\n")
    (root / "ImageSets" / "val.txt").write_text("\n".join(ids[1::2]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="data set folder (made once)")
    parser.add_argument("--images", type=int, default=7481)
    parser.add_argument("--size", default="1242x375")
    parser.add_argument("--decode", action="store_true", help="also time decoding every image")
    args = parser.parse_args()
    size = parse_size(args.size, "--size")
    t = time.perf_counter()
    write(args.out, args.images, size)
    print(f"data set ready in {time.perf_counter() - t:.1f} s: {args.out}")
    for run in (1, 2):
        t = time.perf_counter()
        train, val, report = open_checked(TrainConfig(), args.out)
        print(f"check {run}: {time.perf_counter() - t:.2f} s for {len(train) + len(val)} samples")
    print(report.summary_line())
    if args.decode:
        t = time.perf_counter()
        for p in sorted((args.out / "training" / "image_2").iterdir()):
            load_image(p)
        print(f"decoding every image once: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
