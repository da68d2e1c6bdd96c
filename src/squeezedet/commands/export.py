"""Export a trained model to ONNX, OpenVINO IR or TorchScript, checked against PyTorch.

Writes the model file (default: next to the checkpoint, e.g. best.onnx, best-int8.onnx,
best-bf16.xml + .bin, best.torchscript) and a metadata file <model file>.json with the classes,
input size, anchor shapes and grid, and normalisation (the graph takes RGB 0-255 and normalises
itself). The exported model and PyTorch then run on real-looking images (--parity-data, else
rendered synthetic driving scenes); the maximum absolute difference is printed and the command fails
when it exceeds the tolerance (fp32 1e-4, bf16 5 %, int8 15 % of the largest output magnitude).

Precisions: onnx fp32|int8, openvino fp32|bf16|int8, torchscript fp32. int8 is static
post-training quantisation calibrated on --calib-data (a KITTI root — its training images — or an
image folder). Needs the extras: pip install 'squeezedet[export]' (ONNX, ONNX Runtime) and
'squeezedet[openvino]'.

Examples:
  squeezedet export --weights runs/demo/best.pt --format onnx
  squeezedet export --weights runs/demo/best.pt --format onnx --precision int8 \\
      --calib-data data/synth
  squeezedet predict --weights runs/demo/best.onnx --backend onnxruntime --source images/
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint .pt to export")
    from squeezedet.deployment.export import FORMATS

    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"))
    parser.add_argument("--output", "-o", help="model file to write (default: next to --weights)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="a free batch dimension (default: batch 1)")
    parser.add_argument("--with-postprocess", action="store_true",
                        help="output top-64 decoded boxes/scores/labels (before NMS) instead of "
                             "the raw ConvDet head")
    parser.add_argument("--calib-data", help="int8 calibration images: KITTI root or folder")
    parser.add_argument("--calib-images", type=int, default=64,
                        help="number of calibration images (default: %(default)s)")
    parser.add_argument("--parity-data", help="images for the parity check (KITTI root/folder)")
    parser.add_argument("--accuracy-data", metavar="KITTI_ROOT",
                        help="OpenVINO int8: keep the KITTI mAP_R40 of this root's val split within "
                             "--max-ap-drop of fp32 by returning the most sensitive layers to float "
                             "(NNCF accuracy control; minutes)")
    parser.add_argument("--max-ap-drop", type=float, default=0.4,
                        help="largest mAP_R40 loss allowed with --accuracy-data (default 0.4)")


def run(args: argparse.Namespace) -> int:
    from squeezedet.deployment.export import export_model

    result = export_model(
        args.weights, args.format, args.output, precision=args.precision,
        dynamic_batch=args.dynamic_batch, with_postprocess=args.with_postprocess,
        calib_data=args.calib_data, calib_images=args.calib_images, parity_data=args.parity_data,
        accuracy_data=args.accuracy_data, max_ap_drop=args.max_ap_drop,
    )
    for path in result.files:
        print(f"wrote {path}")
    print(f"parity: {result.summary()}: OK")
    return 0
