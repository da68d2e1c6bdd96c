"""Command line: ``squeezedet <command> ...``.

Each subcommand lives in its own module under :mod:`squeezedet.commands` and exposes
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their command
runs, so ``squeezedet --help`` stays fast.

This is the one place where errors reach the user: a :class:`SqueezeDetError` raised anywhere — in
a command, the library, an exporter or runtime wrapper, or a DataLoader worker process (re-raised by
PyTorch with the worker's traceback as its text; see :func:`squeezedet.errors.user_error`) — is
printed as ``squeezedet <command>: error: <message>`` and exits with status 2. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from squeezedet.errors import user_error

# command name -> (module under squeezedet.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "generate synthetic data, train on CPU, evaluate and draw detections"),
    "info": ("info", "parameters, size, FLOPs, grid and anchors of a model"),
    "train": ("train", "train a detector on a KITTI-format (or other) data set"),
    "evaluate": ("evaluate", "KITTI AP (R40 and R11) of result files against labels"),
    "predict": ("predict", "detect objects in images, folders, globs, videos"),
    "track": ("track", "track objects in a video, folder of frames, camera or stream"),
    "synth": ("synth", "write a synthetic KITTI-layout driving-scene data set"),
    "split": ("split", "write a deterministic train/val split of a KITTI data set"),
    "export": ("export", "export a trained model to ONNX / OpenVINO / TorchScript"),
    "benchmark": ("benchmark", "measure inference latency per backend and precision"),
    "anchors": ("anchors", "k-means anchor shapes for a data set"),
    "convert": ("convert", "convert a data set between KITTI, COCO, VOC and YOLO formats"),
    "import-weights": ("import_weights",
                       "convert the original's, the PyTorch port's or the Keras port's weights"),
    "compress": ("compress", "prune, weight-share and entropy-code a checkpoint into a .sqz file"),
}


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(f"squeezedet.commands.{module}") is not None:
            found[name] = (module, help_text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="squeezedet",
        description="SqueezeDet object detection (Wu et al., CVPR-W 2017) in PyTorch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available().items():
        mod = importlib.import_module(f"squeezedet.commands.{module}")
        p = sub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._module.run(args) or 0)
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise  # a bug, not bad input: show the traceback
        print(f"squeezedet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"squeezedet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
