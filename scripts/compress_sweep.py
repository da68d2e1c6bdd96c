"""Size and validation AP of compressed checkpoints over a grid of sparsities and bit widths.

For each sparsity the checkpoint is pruned (and fine-tuned for ``--steps`` on the data set's
training split, the same run as ``squeezedet compress`` does) once; each bit width then
weight-shares and entropy-codes those weights, the ``.sqz`` bytes are decoded again and the
decoded model is scored on the validation split (KITTI AP, 2017 devkit rules). The uncompressed
checkpoint is scored first; the issue's goal is ≤ 1.0 MB with mAP_R40 within 1.0 point of it.

Usage:
    .venv/bin/python scripts/compress_sweep.py --weights runs/demo/train/best.pt \
        --data runs/demo/data --sparsity 0.5,0.7,0.8 --bits 4,5,6 --steps 600 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from squeezedet import codec
from squeezedet.checkpoint import load_checkpoint
from squeezedet.compress import (
    CompressSettings,
    compress_state,
    encode_checkpoint,
    finetune_shared,
    parse_layer_bits,
    prunable,
    sparsity_of,
    validation_map,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--sparsity", default="0.5,0.7,0.8")
    ap.add_argument("--bits", default="4,5,6")
    ap.add_argument("--quantizer", default="kmeans", choices=("kmeans", "uniform"))
    ap.add_argument("--steps", type=int, default=600, help="fine-tuning steps per sparsity")
    ap.add_argument("--share-steps", type=int, default=0,
                    help="fine-tuning steps of the shared values, per bit width")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--layer-bits", default="none",
                    help="per-layer widths as squeezedet compress takes them ('auto', 'none', "
                         "or GLOB=BITS,...)")
    ap.add_argument("--save", metavar="DIR", help="also write each .sqz file here")
    ap.add_argument("--cache", metavar="DIR",
                    help="keep each sparsity's fine-tuned fp32 weights here and reuse them")
    ap.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    args = ap.parse_args()

    ckpt = load_checkpoint(args.weights, mmap=True)
    t0 = time.monotonic()
    base = validation_map(ckpt, args.data)
    print(f"uncompressed: mAP_R40 {base[0]:.2f}, mAP_R11 {base[1]:.2f} "
          f"({Path(args.weights).stat().st_size / 2**20:.2f} MB file; {time.monotonic() - t0:.0f} s)",
          flush=True)
    rows: list[dict[str, object]] = [
        {"sparsity": 0.0, "bits": 32, "bytes": None, "map_r40": base[0], "map_r11": base[1]}]
    for s in (float(v) for v in args.sparsity.split(",")):
        t0 = time.monotonic()
        settings = CompressSettings(sparsity=s, steps=args.steps, lr=args.lr, quantizer=args.quantizer)
        cached = Path(args.cache) / f"pruned_s{s:.2f}_n{args.steps}.pt" if args.cache else None
        if cached is not None and cached.exists():
            state = torch.load(cached, map_location="cpu")
            achieved = sparsity_of(state, prunable(state))
        else:
            state, achieved = compress_state(ckpt, settings, args.data, progress=False)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.save(state, cached)
        tuned = time.monotonic() - t0
        pruned_map = validation_map({**ckpt, "model": state}, args.data)
        print(f"sparsity {s:.2f} ({achieved:.4f} achieved), {args.steps} steps in {tuned:.0f} s: "
              f"pruned fp32 mAP_R40 {pruned_map[0]:.2f} ({pruned_map[0] - base[0]:+.2f})", flush=True)
        rows.append({"sparsity": s, "bits": 32, "bytes": None, "map_r40": pruned_map[0],
                     "map_r11": pruned_map[1], "steps": args.steps})
        if s == 0 and args.steps == 0:
            rows.pop()  # nothing pruned or trained: the uncompressed row
        for b in (int(v) for v in args.bits.split(",")):
            bit_settings = CompressSettings(sparsity=s, bits=b, steps=args.steps, lr=args.lr,
                                            share_steps=args.share_steps, quantizer=args.quantizer,
                                            layer_bits=parse_layer_bits(args.layer_bits))
            shared = state
            if args.share_steps:
                shared = finetune_shared(ckpt, state, args.data, bit_settings, progress=False)
            data, size = encode_checkpoint(ckpt, shared, bit_settings)
            if args.save:
                Path(args.save).mkdir(parents=True, exist_ok=True)
                (Path(args.save) / f"s{s:.2f}_b{b}.sqz").write_bytes(data)
            decoded, header = codec.decode(data)
            m = validation_map({**header, "model": decoded}, args.data)
            print(f"  {b} bits: {len(data) / 2**20:.3f} MB ({len(data):,} B; positions "
                  f"{size.masks:,}, indices {size.indices:,}, values {size.values:,}): "
                  f"mAP_R40 {m[0]:.2f} ({m[0] - base[0]:+.2f}), mAP_R11 {m[1]:.2f} "
                  f"({m[1] - base[1]:+.2f})", flush=True)
            rows.append({"sparsity": s, "bits": b, "bytes": len(data), "map_r40": m[0],
                         "map_r11": m[1], "steps": args.steps, "share_steps": args.share_steps,
                         "size": size.to_json()})
    if args.json:
        Path(args.json).write_text(json.dumps({"weights": str(args.weights), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
