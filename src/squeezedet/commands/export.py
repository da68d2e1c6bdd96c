"""Export a trained model to ONNX, OpenVINO IR, TorchScript, ExecuTorch or a web page, checked
against PyTorch.

Writes the model file (default: next to the checkpoint, e.g. best.onnx, best-int8.onnx,
best-bf16.xml + .bin, best.torchscript) and a metadata file <model file>.json with the classes,
input size, anchor shapes and grid, and normalisation (the graph takes RGB 0-255 and normalises
itself). The exported model and PyTorch then run on real-looking images (--parity-data, else
rendered synthetic driving scenes); the maximum absolute difference is printed and the command fails
when it exceeds the tolerance (fp32 1e-4, bf16 5 %, int8 15 % of the largest output magnitude).

Precisions: onnx fp32|int8, openvino fp32|bf16|int8, torchscript fp32, executorch fp32|int8,
web fp32|int8. int8 is static post-training quantisation calibrated on --calib-data (a KITTI root —
its training images — or an image folder). Needs the extras: pip install 'squeezedet[export]'
(ONNX, ONNX Runtime), 'squeezedet[openvino]', 'squeezedet[executorch]'.

--format executorch writes a .pte program lowered to ExecuTorch's XNNPACK delegate (int8: PT2E
with the XNNPACK quantiser). --format web OUT_DIR writes a folder to serve with any static server
(python -m http.server -d OUT_DIR): index.html, the .onnx model, squeezedet.js and ONNX Runtime
Web, copied from the npm package that 'make web' installs (or --ort-web PATH). See
docs/deploy-edge.md.

Examples:
  squeezedet export --weights runs/demo/best.pt --format onnx
  squeezedet export --weights runs/demo/best.pt --format onnx --precision int8 \\
      --calib-data data/synth
  squeezedet predict --weights runs/demo/best.onnx --backend onnxruntime --source images/
  squeezedet export --weights runs/demo/best.pt --format executorch --precision int8 \\
      --calib-data data/synth
  squeezedet export --weights runs/demo/best.pt --format web runs/demo/web
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint .pt to export")
    from squeezedet.deployment.export import FORMATS

    parser.add_argument("--format", required=True, choices=(*FORMATS, "web"))
    parser.add_argument("out_dir", nargs="?", metavar="OUT_DIR",
                        help="--format web: the folder to write (default: next to --weights)")
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
    parser.add_argument("--ort-web", metavar="PATH",
                        help="--format web: the onnxruntime-web npm package folder (default: "
                             "build/web/node_modules/onnxruntime-web, installed by 'make web')")
    parser.add_argument("--max-ap-drop", type=float, default=0.4,
                        help="largest mAP_R40 loss allowed with --accuracy-data (default 0.4)")


def run(args: argparse.Namespace) -> int:
    from squeezedet.deployment.export import export_model
    from squeezedet.errors import SqueezeDetError

    if args.format == "web":
        return _run_web(args)
    if args.out_dir is not None:
        raise SqueezeDetError(f"OUT_DIR {args.out_dir}: only --format web writes a folder; give "
                              "the model file with --output")
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


def _run_web(args: argparse.Namespace) -> int:
    from pathlib import Path

    from squeezedet.deployment.web import export_web
    from squeezedet.errors import SqueezeDetError

    for option in ("dynamic_batch", "with_postprocess", "accuracy_data"):
        if getattr(args, option):
            raise SqueezeDetError(f"--{option.replace('_', '-')} does not apply to --format web")
    weights = Path(args.weights)
    folder = args.out_dir or args.output or str(weights.with_name(weights.stem + "-web"))
    web = export_web(args.weights, folder, precision=args.precision, ort_web=args.ort_web,
                     calib_data=args.calib_data, calib_images=args.calib_images,
                     parity_data=args.parity_data)
    print(f"wrote {web.folder}/ (index.html, squeezedet.js, resize.js, model.onnx, ort/ with "
          f"ONNX Runtime Web {web.ort_web_version})")
    print(f"parity: {web.model.summary()}: OK")
    print(f"serve it: python -m http.server -d {web.folder} 8000, then open "
          "http://127.0.0.1:8000/")
    return 0
