"""Which layers lose accuracy when their weights are shared coarsely: for each group of kernels
(conv1, ConvDet, the Fire squeeze, expand1x1 and expand3x3 layers), the validation mAP_R40 with
only that group k-means-shared at ``--bits`` (the rest fp32), and with every group but that one
shared. What ``squeezedet.compress.SENSITIVE_LAYER_BITS`` was chosen from.

Usage:
    .venv/bin/python scripts/compress_sensitivity.py --weights runs/demo/train/best.pt \
        --data runs/demo/data [--bits 4]
"""

from __future__ import annotations

import argparse
import fnmatch

from squeezedet import codec
from squeezedet.checkpoint import load_checkpoint
from squeezedet.compress import validation_map

GROUPS = {"conv1": "backbone.features.0.*", "convdet": "convdet.*", "squeeze": "*.squeeze.*",
          "expand1x1": "*.expand1x1.*", "expand3x3": "*.expand3x3.*"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--bits", type=int, default=4)
    args = ap.parse_args()
    ckpt = load_checkpoint(args.weights, mmap=True)
    state = {k: v.detach().clone() for k, v in ckpt["model"].items()}
    shared = codec.quantize_state_dict(state, codec.CodecSettings(bits=args.bits))
    base = validation_map(ckpt, args.data)[0]
    print(f"fp32: mAP_R40 {base:.2f}", flush=True)
    for group, pattern in GROUPS.items():
        n = sum(v.numel() for k, v in state.items() if fnmatch.fnmatchcase(k, pattern) and v.dim() >= 2)
        only = {k: shared[k] if fnmatch.fnmatchcase(k, pattern) else state[k] for k in state}
        but = {k: state[k] if fnmatch.fnmatchcase(k, pattern) else shared[k] for k in state}
        m_only = validation_map({**ckpt, "model": only}, args.data)[0]
        m_but = validation_map({**ckpt, "model": but}, args.data)[0]
        print(f"{group:<10} {n:>9,} weights: only it at {args.bits} bits {m_only:6.2f} "
              f"({m_only - base:+.2f}); all others at {args.bits} bits {m_but:6.2f} "
              f"({m_but - base:+.2f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
