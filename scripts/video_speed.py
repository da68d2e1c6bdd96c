"""Video throughput: decode → detect → track (→ draw → encode), sequential loop against pipelined.

Makes a 1242×375 H.264 video (KITTI's frame size; moving synthetic driving scenes, or the photos
of --photos panned across the frame), exports the model to OpenVINO fp32 and int8 (NNCF, calibrated
on synthetic scenes; no parity check, so the int8 model is NNCF's all-int8 one), and runs
``squeezedet.inference.track.track`` over the video for every precision × with/without drawing ×
sequential/pipelined, printing frames per second and milliseconds per stage (busy time of each
stage per frame; in the pipelined runs the stages overlap, so they add up to more than a frame).

Without --weights the model has random weights: its scores sit near 0.15, so the tracker's
thresholds are lowered (--track-score) for tracks to be born and drawn — a heavier load for the
tracker and the drawing than a trained model's handful of objects.

Run it alone on the machine (other processes change the figures); to measure as on a CPU without
AVX-512, narrow the instruction sets::

    python scripts/video_speed.py --json video_speed.json
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OV_CPU_MAX_ISA=AVX2 \\
        MKL_ENABLE_INSTRUCTIONS=AVX2 python scripts/video_speed.py

Needs ``squeezedet[video,openvino,export,tracking]`` and PyAV (``pip install av``) to write the
H.264 video (OpenCV's wheels decode H.264 but cannot encode it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA",
                 "MKL_ENABLE_INSTRUCTIONS")
SIZE = (1242, 375)


def cpu_name() -> str:
    """The CPU's model name and the instruction sets that matter here."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), "unknown CPU")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    have = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
            if f in flags]
    return f"{name}, {os.cpu_count()} cores ({' '.join(have)})"


def scene_frames(n: int, photos: Path | None) -> list[np.ndarray]:
    """``n`` RGB frames of 1242×375: eight synthetic scenes (or the --photos) each panned for 40
    frames, 6 pixels a frame — motion for the encoder and the tracker."""
    if photos is not None:
        from squeezedet.data.images import load_image
        from squeezedet.data.transforms import Resize

        files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:8]
        bases = [Resize(SIZE)(load_image(p), {})[0] for p in files]
    else:
        from squeezedet.deployment.preprocess import render_images

        bases = render_images(SIZE, 8)
    return [np.roll(bases[(f // 40) % len(bases)], 6 * (f % 40), axis=1) for f in range(n)]


def make_h264(path: Path, n: int, photos: Path | None, fps: float = 10.0) -> Path:
    """An H.264 (libx264, CRF 23, 4:4:4 chroma: 4:2:0 needs an even height) ``.mp4`` of
    :func:`scene_frames`."""
    try:
        import av
    except ImportError:
        raise SystemExit("writing the H.264 test video needs PyAV: pip install av") from None
    frames = scene_frames(n, photos)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv444p"  # 4:2:0 needs an even height; 375 is odd
        stream.options = {"crf": "23"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def random_checkpoint(folder: Path, input_size: tuple[int, int] = (1248, 384)) -> Path:
    """A SqueezeDet at ``input_size`` (W, H; the paper's 1248×384 by default) with random
    weights (seed 0)."""
    import torch

    import squeezedet
    from squeezedet.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = squeezedet.create_model("squeezedet", input_size=input_size)
    path = folder / f"random_{input_size[0]}x{input_size[1]}.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, path)
    return path


def exported(weights: Path, precision: str, folder: Path) -> Path:
    """The OpenVINO IR of ``weights`` at ``precision`` (exported once, then reused)."""
    from squeezedet.deployment.export import export_model

    path = folder / f"{weights.stem}_{precision}.xml"
    if not path.exists():
        export_model(weights, "openvino", path, precision=precision, check=False)
    return path


def run_once(detectors: list[Any], video: Path, out: Path, *, draw: bool, sequential: bool,
             tracker: Any, frames: int | None) -> dict[str, Any]:
    """One :func:`track` run; its FPS and ms per stage."""
    from squeezedet.inference.track import TrackOptions, track

    options = TrackOptions(tracker=tracker, no_draw=not draw, sequential=sequential,
                           no_progress=True, max_frames=frames)
    result = track("", str(video), out, options, detector=detectors)
    return {"fps": result.fps, "frames": result.frames, "tracks": len(result.track_ids),
            "ms": {k: round(result.times.ms(k), 2) for k in result.times.seconds}}


def measure(layouts: dict[str, tuple[list[Any], bool]], video: Path, work: Path,
            repeat: int, tracker: Any) -> list[dict[str, Any]]:
    """Every layout (name → detectors, sequential) with and without drawing, ``repeat`` times
    each, taking turns (so that a burst of load elsewhere hits every case alike); the median."""
    cases = [(draw, name) for draw in (False, True) for name in layouts]
    runs: dict[tuple[bool, str], list[dict[str, Any]]] = {c: [] for c in cases}
    for detectors, seq in layouts.values():
        run_once(detectors, video, work / "warm", draw=True, sequential=seq, tracker=tracker,
                 frames=20)
    for _ in range(repeat):
        for draw, name in cases:
            detectors, seq = layouts[name]
            runs[(draw, name)].append(run_once(detectors, video, work / "out", draw=draw,
                                               sequential=seq, tracker=tracker, frames=None))
    rows = []
    for (draw, name), results in runs.items():
        fps = [r["fps"] for r in results]
        middle = results[int(np.argsort(fps)[len(fps) // 2])]
        rows.append({"draw": draw, "mode": name, "fps": round(statistics.median(fps), 1),
                     "fps_all": [round(f, 1) for f in fps], "ms": middle["ms"],
                     "tracks": middle["tracks"], "frames": middle["frames"]})
    return rows


def openvino_detector(model: Path, threads: int, conf: float) -> Any:
    """A batch-1 :class:`Detector` of the OpenVINO IR ``model`` on ``threads`` threads."""
    from squeezedet.deployment.runners import OpenVinoRunner
    from squeezedet.inference import Detector

    return Detector(OpenVinoRunner(model, threads=threads), conf=conf, batch_size=1)


def layouts_for(model: Path, threads: int, conf: float) -> dict[str, tuple[list[Any], bool]]:
    """The sequential loop (one detector, ``threads`` threads) and the pipelined runs with one
    detector of ``threads`` threads and with ``threads`` detectors of one thread each."""
    def detectors(n: int, each: int) -> list[Any]:
        return [openvino_detector(model, each, conf) for _ in range(n)]

    one = detectors(1, threads)
    layouts = {"sequential": (one, True), f"pipelined 1x{threads}": (one, False)}
    if threads > 1:
        layouts[f"pipelined {threads}x1"] = (detectors(threads, 1), False)
    return layouts


def detect_alone(model: Path, threads: int, conf: float, frame: np.ndarray,
                 calls: int = 200) -> float:
    """Milliseconds a detector of ``threads`` inference threads takes for ``frame`` (resize,
    forward, post-processing), alone: the mean of ``calls`` calls after 20 to warm up."""
    detector = openvino_detector(model, threads, conf)
    for _ in range(20):
        detector(frame)
    start = time.perf_counter()
    for _ in range(calls):
        detector(frame)
    return (time.perf_counter() - start) / calls * 1e3


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: precision, drawing, FPS per layout, speed-up, the sequential stage ms."""
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    lines = ["| precision | drawing + encoding | " + " | ".join(f"{m} FPS" for m in modes)
             + " | best / sequential | ms per frame (sequential): decode / detect / track"
             " / draw / encode |",
             "| --- | --- | " + " | ".join("---" for _ in modes) + " | --- | --- |"]
    for prec in dict.fromkeys(r["precision"] for r in rows):
        for draw in (False, True):
            got = {r["mode"]: r for r in rows if r["precision"] == prec and r["draw"] == draw}
            seq = got["sequential"]
            best = max(r["fps"] for r in got.values())
            ms = " / ".join(f"{seq['ms'].get(k, 0):.1f}" for k in ("decode", "detect", "track")
                            + (("draw", "encode") if draw else ()))
            lines.append(f"| {prec} | {'yes' if draw else 'no'} | "
                         + " | ".join(f"{got[m]['fps']:.1f}" for m in modes)
                         + f" | {best / seq['fps']:.2f}x | {ms} |")
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    """``WxH`` → ``(W, H)`` pixels, for argparse (the package's one size parser)."""
    from squeezedet.config import parse_size
    from squeezedet.errors import SqueezeDetError

    try:
        return parse_size(text)
    except SqueezeDetError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size WxH in pixels, e.g. 624x192") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="a trained checkpoint (default: random)")
    parser.add_argument("--video", type=Path, help="an existing video instead of the synthetic one")
    parser.add_argument("--photos", type=Path, help="a folder of photos to pan instead of scenes")
    parser.add_argument("--frames", type=int, default=300, help="frames of the made video")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--threads", type=int, default=2, help="OpenVINO threads in all")
    parser.add_argument("--input-size", type=_size, default=(1248, 384), metavar="WxH",
                        help="the random model's input size in pixels (default 1248x384, the "
                             "paper's); a smaller one makes detection cheap against decoding "
                             "and drawing, as a light model's video would be")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (median)")
    parser.add_argument("--track-score", type=float, default=None,
                        help="tracker high/new-track threshold (default: 0.15 for random "
                             "weights, the tracker's own otherwise)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "video_speed")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--table", type=Path, nargs="+", metavar="JSON",
                        help="only print the tables of these --json files (docs/video.md's)")
    args = parser.parse_args()
    if args.table:
        for path in args.table:
            print(format_table(json.loads(path.read_text())["rows"]))
        return

    from squeezedet.tracking import TrackerConfig

    args.work.mkdir(parents=True, exist_ok=True)
    video = args.video or args.work / f"kitti_size_{args.frames}.mp4"
    if not video.exists():
        make_h264(video, args.frames, args.photos)
    weights = args.weights or random_checkpoint(args.work, args.input_size)
    score = args.track_score if args.track_score is not None else (None if args.weights else 0.15)
    tracker = TrackerConfig() if score is None else TrackerConfig(
        high_threshold=score, new_track_threshold=score, low_threshold=min(0.1, score))
    isa = {k: os.environ[k] for k in ISA_VARIABLES if k in os.environ}
    print(f"CPU: {cpu_name()}; ISA limits: {isa or 'none'}; video: {video.name}")
    rows = []
    frame = scene_frames(1, None)[0]
    for precision in args.precisions.split(","):
        model = exported(weights, precision, args.work)
        alone = {n: round(detect_alone(model, n, tracker.low_threshold, frame), 2)
                 for n in sorted({1, args.threads})}
        print(f"  {precision} detection alone, ms a frame by threads: {alone}")
        layouts = layouts_for(model, args.threads, tracker.low_threshold)
        t0 = time.perf_counter()
        for row in measure(layouts, video, args.work, args.repeat, tracker):
            rows.append({"precision": f"openvino {precision}", **row,
                         "detect_alone_ms": alone})
            print(f"  {precision} draw {row['draw']!s:5} {row['mode']:14} {row['fps']:6.1f} FPS "
                  f"{row['fps_all']} {row['ms']}")
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    print(format_table(rows))
    if args.json:
        model_size = None if args.weights else "x".join(map(str, args.input_size))
        args.json.write_text(json.dumps({"cpu": cpu_name(), "isa_limits": isa,
                                         "video": str(video.name), "input_size": model_size,
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
