"""A detector from a few real photos in minutes: AP@0.5 on a held-out photo after 2, 5 and 10
minutes of training from scratch, with the default recipe and with each ingredient removed.

The data: the sample data of the MIT-licensed ``deepforest`` package (NEON aerial imagery of tree
crowns, annotated in VOC XML). From a ``deepforest`` wheel you downloaded yourself
(``pip download deepforest==2.1.0 --no-deps``) or an installed ``deepforest`` package, it builds a
VOC folder with one class, Tree (the sample's Alive/Dead renamed):

- ``--held-out half`` (the default): train on ``2019_YELL_2_541000_4977000_image_crop``
  (1249x1035, 279 boxes, Yellowstone), the upper half of
  ``2019_YELL_2_528000_4978000_image_crop2`` (2299x1236, 294 boxes, the same survey) and
  ``SOAP_061`` (400x400, 37 boxes, California); hold out the lower half of that second photo
  (280 boxes), and score ``OSBS_029`` (400x400, 61 boxes, Florida: another site) too;
- ``--held-out survey``: train on the first, ``SOAP_061`` and ``OSBS_029``, hold out all of the
  second photo;
- ``--held-out site``: train on the first and ``SOAP_061``, hold out ``OSBS_029``; ``--more``
  adds the second photo to training.

Training tiles the photos at 400x400 with 0.2 overlap into a 384x384 input, with 9 k-means
anchors of the training boxes (``squeezedet anchors``' method), and quarter turns and vertical
flips added to the recipe's augmentation (top-down imagery has no up). Nothing is downloaded.

Usage::

    python scripts/small_data_benchmark.py --deepforest deepforest-2.1.0-py3-none-any.whl \\
        --work /tmp/trees [--minutes 2 5 10] [--variants default no_squeeze_bn ...] [--json out.json]
        [--held-out site|survey] [--set KEY=VALUE ...]

``--isa avx2`` runs training limited to AVX2, as an AVX2-only CPU would (``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 OV_CPU_MAX_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``). Every figure
depends on the CPU and on what else runs on it: the script prints the CPU, its core count, the
load average before and after each run and the steps each run took.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

YELL_541, YELL_528 = "2019_YELL_2_541000_4977000_image_crop", "2019_YELL_2_528000_4978000_image_crop2"
#: ``--held-out``: which photo is held out (validation) and which are trained on; ``NAME:top`` and
#: ``NAME:bottom`` are the upper and lower halves of a photo, as two photos
SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "half": ((YELL_541, f"{YELL_528}:top", "SOAP_061"), (f"{YELL_528}:bottom",)),
    "survey": ((YELL_541, "SOAP_061", "OSBS_029"), (YELL_528,)),
    "site": ((YELL_541, "SOAP_061"), ("OSBS_029",)),
}
#: the photo of another site evaluated besides the held-out one when no split trains on it
CROSS_SITE = "OSBS_029"
MORE = (YELL_528,)
TILE, INPUT = "400x400", "384x384"
BASE = ["augment=+rot90,vflip", "val_every=0", "checkpoint_every=100000"]

#: the recipe with one ingredient removed, or one added, each (key=value settings given to
#: ``train``)
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "no_squeeze_bn": ["squeeze_bn=false"],
    "no_warmup_cosine": ["lr_schedule=step", "warmup_steps=0"],
    "no_ema": ["ema_decay=0"],
    "no_augmentation": ["augment=none", "flip_prob=0"],
    "no_crop": [f"crop={INPUT}"],
    "more_augmentation": ["augment=+rot90,vflip,zoom,jitter,mosaic"],
    "paper": ["recipe=paper", "augment=none"],
    # additions tried on the recipe
    "jitter": ["augment=+rot90,vflip,jitter"],
    "zoom": ["augment=+rot90,vflip,zoom"],
    "weight_decay": ["weight_decay=0.05"],
    "hflip_only": ["augment=none"],
    "loss_bbox": ["loss_bbox=15"],
    "long_average": ["lr_schedule=step", "ema_fraction=0.25"],
    "dropout": ["dropout=0.5"],
}


def _read(source: Path, name: str) -> bytes:
    """``deepforest/data/NAME`` from a wheel, or NAME from an installed package's data folder."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            return wheel.read(f"deepforest/data/{name}")
    folder = source / "data" if (source / "data").is_dir() else source
    return (folder / name).read_bytes()


def build_voc(source: Path, dst: Path, more: bool, held_out: str = "half") -> Path:
    """The VOC folder of the module docstring under ``dst`` (replaced when present)."""
    if dst.exists():
        shutil.rmtree(dst)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dst / sub).mkdir(parents=True)
    train, val = SPLITS[held_out]
    photos = {name.partition(":")[0] for name in train + val}
    train += tuple(m for m in (MORE if more else ()) if m not in photos)
    for name in train + val:
        photo, _, half = name.partition(":")
        xml = _read(source, f"{photo}.xml").decode()
        xml = re.sub(r"<name>\s*(Alive|Dead|Tree)\s*</name>", "<name>Tree</name>", xml)
        png = _read(source, f"{photo}.png")
        if half:
            xml, png = half_photo(xml, png, half)
        stem = name.replace(":", "_")
        (dst / "Annotations" / f"{stem}.xml").write_text(xml)
        (dst / "JPEGImages" / f"{stem}.png").write_bytes(png)
    for split, names in (("train", train), ("val", val)):
        text = "\n".join(n.replace(":", "_") for n in names) + "\n"
        (dst / f"ImageSets/Main/{split}.txt").write_text(text)
    return dst


def half_photo(xml: str, png: bytes, half: str) -> tuple[str, bytes]:
    """The upper (``top``) or lower (``bottom``) half of a photo and its VOC annotation: the boxes
    whose centre lies in that half, clipped to it."""
    import io
    import xml.etree.ElementTree as ET

    from PIL import Image

    image = Image.open(io.BytesIO(png))
    w, h = image.size
    y0, y1 = (0, h // 2) if half == "top" else (h // 2, h)
    objects = []
    for obj in ET.fromstring(xml).iter("object"):
        box = obj.find("bndbox")
        assert box is not None
        x_1, y_1, x_2, y_2 = (float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
        if y0 <= (y_1 + y_2) / 2 < y1:
            top, bottom = max(y_1, y0) - y0, min(y_2, y1) - y0
            objects.append(f"<object><name>Tree</name><difficult>0</difficult><bndbox><xmin>{x_1:g}"
                           f"</xmin><ymin>{top:g}</ymin><xmax>{x_2:g}</xmax><ymax>{bottom:g}</ymax>"
                           "</bndbox></object>")
    out = io.BytesIO()
    image.crop((0, y0, w, y1)).save(out, format="PNG")
    size = f"<size><width>{w}</width><height>{y1 - y0}</height><depth>3</depth></size>"
    return f"<annotation>{size}{''.join(objects)}</annotation>", out.getvalue()


def val_ap(run_dir: Path, root: Path, **changes: object) -> float:
    """AP@0.5 (percent) of ``run_dir``'s model on the VOC folder ``root``'s ``val`` split, with
    the run's settings but ``changes`` (e.g. ``tta="none"``)."""
    from dataclasses import replace

    import torch

    from squeezedet.checkpoint import model_from_checkpoint
    from squeezedet.config import load_config
    from squeezedet.engine import evaluate
    from squeezedet.train import build_datasets

    cfg = replace(load_config(run_dir / "config.yaml"), workers=0, cache_images=False,
                  **changes)
    _, val = build_datasets(cfg, root)
    model = model_from_checkpoint(run_dir / "best.pt").eval()
    return float(evaluate(model, val, cfg, torch.device("cpu")).to_json()["mAP50"])


def photo_ap(run_dir: Path, root: Path, ious: tuple[float, ...] = (0.5,)) -> dict[float, float]:
    """AP (percent) at each IoU threshold of ``ious`` of ``run_dir``'s model on the whole photos
    of ``root``'s ``val`` split: detected tile by tile as in training, merged with NMS, scored
    against every box of the photo (no box is cut by a tile border here), so that runs with other
    tiles compare fairly."""
    from dataclasses import replace

    from squeezedet.config import load_config
    from squeezedet.data.images import load_image
    from squeezedet.data.kitti_format import KittiObject
    from squeezedet.eval.voc import ap_at_iou
    from squeezedet.inference.detector import Detector
    from squeezedet.inference.tiled import detect_tiled
    from squeezedet.train import build_datasets

    cfg = load_config(run_dir / "config.yaml")
    _, val = build_datasets(replace(cfg, tile=None, workers=0, cache_images=False), root)
    detector = Detector.from_checkpoint(run_dir / "best.pt", conf=0.0, top_k=cfg.top_k,
                                        nms_iou=cfg.nms_iou, tta=cfg.tta)
    truth, found = {}, {}
    for i, image_id in enumerate(val.ids):
        image = load_image(root / "JPEGImages" / f"{image_id}.png")
        tile = cfg.tile or (image.shape[1], image.shape[0])
        det = detect_tiled(detector, image, tile, cfg.tile_overlap, keep_image=False)
        truth[image_id] = val.ground_truth(i)
        found[image_id] = [KittiObject(type=det.class_names[int(k)], box=tuple(map(float, b)),
                                       score=float(s))
                           for b, s, k in zip(det.boxes, det.scores, det.labels, strict=True)]
    (name,) = detector.class_names  # one class: Tree
    return {iou: float(ap_at_iou(truth, found, [name], iou, max_dets=100_000)[name] or 0.0)
            for iou in ious}


def fit_anchors(root: Path, out: Path, tile: str = TILE, input_size: str = INPUT) -> Path:
    """9 k-means anchors of the training boxes at the input size, tiled as training tiles."""
    from squeezedet.config import parse_size
    from squeezedet.data.box_statistics import training_box_sizes
    from squeezedet.ops.anchors import write_anchor_shapes
    from squeezedet.ops.kmeans import kmeans_anchors

    size = parse_size(input_size)
    wh = training_box_sizes(root, size, tile=parse_size(tile), overlap=0.2)
    shapes, mean_iou = kmeans_anchors(wh, k=9, seed=0)
    write_anchor_shapes(str(out), shapes.tolist(), size)
    print(f"anchors: 9 k-means shapes of {len(wh)} training boxes, mean IoU {mean_iou:.2f}")
    return out


def run_one(root: Path, anchors: Path, run_dir: Path, minutes: float, settings: list[str],
            isa: str | None, seed: int, tile: str = TILE, input_size: str = INPUT) -> dict:
    """Train one variant for ``minutes``; AP@0.5 on the held-out photo and what the run did."""
    env = dict(os.environ)
    if isa == "avx2":  # PyTorch's own kernels, oneDNN's convolutions, OpenVINO, MKL
        env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", OV_CPU_MAX_ISA="AVX2",
                   MKL_ENABLE_INSTRUCTIONS="AVX2")
    elif isa:
        env["ATEN_CPU_CAPABILITY"] = isa
    cmd = [sys.executable, "-m", "squeezedet", "train", "--data", str(root), "--out", str(run_dir),
           "--anchors", str(anchors), "--minutes", str(minutes), "--quiet", "--tile", tile,
           "--input-size", input_size, *BASE,
           f"seed={seed}", *settings]
    load = os.getloadavg()[0]
    t = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t
    if done.returncode != 0:  # e.g. the paper's SGD diverging from scratch: recorded, not fatal
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  {run_dir.name}: training failed: {error}", flush=True)
        return {"ap50": None, "ap": None, "steps": None, "wall_s": round(wall, 1),
                "load_before": round(load, 1), "error": error}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    recipe = next((line for line in done.stdout.splitlines() if line.startswith("recipe:")), "")
    return {"ap50": metrics["mAP50"], "ap": metrics["mAP"], "steps": metrics["step"],
            "wall_s": round(wall, 1), "load_before": round(load, 1),
            "load_after": round(os.getloadavg()[0], 1), "recipe": recipe}


#: the ablation table's row names
LABELS = {
    "default": "default (the small recipe, `augment=+rot90,vflip`)",
    "default_seed1": "default, `--seed 1`",
    "default_resize_crop": "default, each window resampled alone from its tile (`ResizeCrop`)",
    "no_squeeze_bn": "no squeeze batch norm (`squeeze_bn=false`)",
    "no_warmup_cosine": "no warm-up and cosine (`lr_schedule=step warmup_steps=0`: a constant lr)",
    "no_ema": "no weight averaging (`ema_decay=0`)",
    "no_augmentation": "no augmentation (`augment=none flip_prob=0`)",
    "no_crop": "no training windows (`crop=384x384`: whole tiles)",
    "more_augmentation": "more augmentation (`augment=+rot90,vflip,zoom,jitter,mosaic`)",
    "paper": "the paper's recipe (`recipe=paper`)",
    "jitter": "with colour jitter (`augment=+rot90,vflip,jitter`)",
    "jitter_seed1": "with colour jitter, `--seed 1`",
    "zoom": "with zoom (`augment=+rot90,vflip,zoom`)",
    "weight_decay": "with weight decay 0.05 (`weight_decay=0.05`; the recipe's is 1e-4)",
    "hflip_only": "mirroring only (`augment=none`: no quarter turns or vertical flips)",
    "loss_bbox": "box loss weight 15 (`loss_bbox=15`; the paper's is 5)",
    "long_average": "constant lr, averaging over the last quarter (`lr_schedule=step "
                    "ema_fraction=0.25`)",
    "dropout": "dropout 0.5 (`dropout=0.5`; the recipe's is 0.2)",
}


def format_table(results: list[dict]) -> str:
    """The Markdown ablation table of ``results`` (a ``--json`` file's): a row a variant, a column
    a length; a cell is AP@0.5 % on the held-out half (without test-time flips in brackets) /
    on the other site, and the steps the run did."""
    minutes = sorted({r["minutes"] for r in results})
    variants = list(dict.fromkeys(r["variant"] for r in results))
    lines = ["| run | " + " | ".join(f"{m:g} min" for m in minutes) + " |",
             "|---|" + "---|" * len(minutes)]
    for variant in variants:
        cells = []
        for m in minutes:
            r = next((r for r in results if r["variant"] == variant and r["minutes"] == m), None)
            if r is None:
                cells.append("")
            elif r["ap50"] is None:
                cells.append("failed")
            else:
                cross, plain = r.get("ap50_cross_site"), r.get("ap50_no_tta")
                cells.append(f"{r['ap50']:.1f}" + (f" ({plain:.1f})" if plain is not None else "")
                             + (f" / {cross:.1f}" if cross is not None else "")
                             + f", {r['steps']:,} steps")
        lines.append(f"| {LABELS.get(variant, variant)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """The CPU's vector and matrix extensions that PyTorch's CPU kernels use, as Linux names them."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return [f for f in wanted if f in flags]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deepforest", type=Path, help="a deepforest wheel (.whl) or the installed "
                   "deepforest package folder (default: the installed package)")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "small_data_bench")
    p.add_argument("--minutes", type=float, nargs="+", default=[2.0, 5.0, 10.0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--held-out", choices=list(SPLITS), default="half",
                   help="half: hold out the lower half of the second Yellowstone photo; survey: "
                   "all of it; site: OSBS_029")
    p.add_argument("--more", action="store_true", help="site: train on the second Yellowstone "
                   "photo too")
    p.add_argument("--isa", choices=("avx2", "avx512", "default"),
                   help="limit the CPU's instruction sets: avx2 sets the four variables above; "
                   "avx512 and default set ATEN_CPU_CAPABILITY only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile", default=TILE, metavar="WxH",
                   help=f"training and validation tiles, in photo pixels (default: {TILE})")
    p.add_argument("--input-size", default=INPUT, metavar="WxH",
                   help=f"the network's input, each tile resized to it (default: {INPUT})")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="settings given to every run (after the variant's)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--table", type=Path, nargs="+", metavar="JSON",
                   help="print the ablation table of these result files (merged) and stop")
    args = p.parse_args(argv)
    if args.table:
        print(format_table([r for path in args.table
                            for r in json.loads(path.read_text())["results"]]))
        return 0
    source = args.deepforest
    if source is None:
        try:
            import deepforest  # type: ignore[import-not-found]
        except ImportError:
            raise SystemExit("small_data_benchmark: no --deepforest given and deepforest is not "
                             "installed; pass --deepforest PATH/deepforest-2.1.0-py3-none-any.whl"
                             ) from None
        source = Path(deepforest.__file__).parent
    if not source.exists():
        raise SystemExit(f"small_data_benchmark: {source}: not found")
    root = build_voc(source, args.work / "trees", args.more, args.held_out)
    anchors = fit_anchors(root, args.work / "anchors.yaml", args.tile, args.input_size)
    trained_on = (root / "ImageSets/Main/train.txt").read_text().split()
    cross = None if CROSS_SITE in [*trained_on, *SPLITS[args.held_out][1]] else build_voc(
        source, args.work / "cross_site", False, "site")
    print(f"CPU: {cpu_name()} ({' '.join(cpu_flags()) or 'flags unknown'}), {os.cpu_count()} "
          "logical cores"
          + (f", ATEN_CPU_CAPABILITY={args.isa}" if args.isa else ""))
    results = []
    for variant in args.variants:
        for minutes in args.minutes:
            run_dir = args.work / "runs" / f"{variant}_{minutes:g}min"
            if run_dir.exists():
                shutil.rmtree(run_dir)
            r = run_one(root, anchors, run_dir, minutes, VARIANTS[variant] + args.set, args.isa,
                        args.seed, args.tile, args.input_size)
            r.update(variant=variant, minutes=minutes)
            if r["ap50"] is not None:
                at = photo_ap(run_dir, root, (0.5, 0.4, 0.3))
                r.update(ap50_photo=at[0.5], ap40_photo=at[0.4], ap30_photo=at[0.3])
                r["ap50_no_tta"] = val_ap(run_dir, root, tta="none")
            if cross is not None and r["ap50"] is not None:
                r["ap50_cross_site"] = val_ap(run_dir, cross)
            results.append(r)
            if r["ap50"] is not None:
                print(f"{variant:18s} {minutes:4g} min: AP@0.5 {r['ap50']:5.1f} % on tiles "
                      f"({r['ap50_no_tta']:.1f} % without test-time flips, AP@[.5:.95] "
                      f"{r['ap']:.1f} %); on the whole photo AP@0.5 / 0.4 / 0.3 "
                      f"{r['ap50_photo']:.1f} / {r['ap40_photo']:.1f} / {r['ap30_photo']:.1f} % "
                      f"({r['steps']} steps, load {r['load_before']}->{r['load_after']})"
                      + (f"; {CROSS_SITE} {r['ap50_cross_site']:.1f} %" if cross else ""),
                      flush=True)
    print("\nAP@0.5 (percent) on the held-out photo, by training minutes")
    print(f"{'variant':18s}" + "".join(f"{m:>8g}" for m in args.minutes))
    for variant in args.variants:
        row = {r["minutes"]: r["ap50"] for r in results if r["variant"] == variant}
        print(f"{variant:18s}" + "".join(f"{row[m]:8.1f}" if row.get(m) is not None else
                                         f"{'failed':>8s}" for m in args.minutes))
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(),
                                         "flags": cpu_flags(), "isa": args.isa, "held_out": args.held_out,
                                         "more": args.more, "set": args.set,
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
