"""Convert weights trained by another SqueezeDet into a checkpoint of this project.

  squeezedet import-weights --from original model.ckpt-87000 --out squeezedet_kitti.pt
  squeezedet import-weights --from original squeezeDetPlus/model.ckpt-95000 \\
      --model squeezedet_plus --out squeezedet_plus_kitti.pt
  squeezedet import-weights --from pytorch-port squeezedet_kitti_epoch280.pth --out port.pt
  squeezedet import-weights --from keras-port model.h5 --out keras.pt      # needs h5py

Sources: "original" = BichenWuUCB/squeezeDet's TensorFlow checkpoints (the prefix, its .index file
or the folder; TensorFlow is not needed), "pytorch-port" = QiuJueqin/SqueezeDet-PyTorch's .pth,
"keras-port" = omni-us/squeezedet-keras's .h5. The checkpoint records the source's normalisation,
anchors, padding and class order, so `predict`, `evaluate`, `export` and `train --weights` give the
source's detections with no further settings.
"""

from __future__ import annotations

import argparse

from squeezedet.errors import check_output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True,
                        choices=("original", "pytorch-port", "keras-port"),
                        help="where the weights come from")
    parser.add_argument("file", metavar="FILE", help="the weights file (TF checkpoint prefix or "
                                                     ".index, .pth, .h5)")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--model", default="squeezedet", choices=("squeezedet", "squeezedet_plus"),
                        help="the architecture the file holds (default squeezedet)")
    parser.add_argument("--input-size", metavar="WxH",
                        help="network input size (default: the source's, e.g. 1248x384); "
                             "anchors are scaled along")


def run(args: argparse.Namespace) -> int:
    from squeezedet.config import parse_size
    from squeezedet.interop import import_weights

    check_output_file(args.out, "--out")
    size = parse_size(args.input_size, "--input-size") if args.input_size else None
    ckpt = import_weights(args.source, args.file, model_name=args.model, out=args.out,
                          input_size=size)
    meta = ckpt["meta"]
    print(f"wrote {args.out}: {meta['model']} from {args.source} ({ckpt['imported']['tensors']} "
          f"tensors), {meta['input_size'][0]}x{meta['input_size'][1]}, classes "
          f"{', '.join(meta['class_names'])}, normalization={meta['normalization']}, "
          f"anchor_centers={meta['anchor_centers']}, padding={meta['padding']}")
    print(f"trained on: {ckpt['imported']['trained_on']}")
    return 0
