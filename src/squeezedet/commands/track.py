"""Detect and track objects in a video, a folder of frames, a camera or a network stream.

SOURCE is a video file (anything OpenCV's FFmpeg reads), a folder of frames in natural order (e.g.
KITTI tracking's image_02/0004), a quoted glob of images, a camera index (0) or a stream URL
(rtsp://, rtmp://, http://, https://, udp://, tcp://). Needs the 'video' extra for videos,
cameras, streams and the drawn video: pip install 'squeezedet[video]'.

Tracking is ByteTrack-style (squeezedet.tracking.Tracker): Kalman-filter motion, IoU matching of
the high-score detections, then of the low-score ones to the tracks left, track birth and death;
--high, --low, --new-track and --lost-seconds set its thresholds.

Written under --out, for a source named SEQ (the folder's name, the video's stem, camera0, stream):
  kitti_tracking/SEQ.txt  KITTI tracking format: frame track_id type truncated occluded alpha
                          x1 y1 x2 y2 h w l x y z rotation_y score (unknowns -1, -10, -1000)
  mot/SEQ.txt             MOTChallenge: frame,id,x,y,w,h,conf,-1,-1,-1 (frames from 1)
  SEQ.mp4                 the frames with the tracks drawn (an id keeps its colour; a short
                          trail), unless --no-draw
Decoding, detection, tracking, drawing and encoding overlap on threads; the summary prints the FPS
and the milliseconds per stage. A truncated video, a stream that stops (after --reconnect tries)
and Ctrl-C end the run with every file complete.

Examples:
  squeezedet track drive.mp4 --weights runs/demo/best.pt --out runs/track
  squeezedet track data/kitti_tracking/training/image_02/0004 --weights model.xml --no-draw
  squeezedet track rtsp://192.0.2.10:554/stream --weights best.pt --realtime --reconnect 10
  squeezedet track 0 --weights best.pt --realtime --max-frames 600
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any


def _number(kind: type, low: float, text: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be at least {low:g}")
    return value


def _positive(text: str) -> int:
    return int(_number(int, 1, text))


def _seconds(text: str) -> float:
    return float(_number(float, 0.0, text))


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``track`` shares with ``predict --track``."""
    from squeezedet.tracking import TrackerConfig

    d = TrackerConfig()
    g = parser.add_argument_group("tracking")
    g.add_argument("--high", type=_seconds, default=d.high_threshold, metavar="SCORE",
                   help=f"first-pass detection score (default: {d.high_threshold})")
    g.add_argument("--low", type=_seconds, default=d.low_threshold, metavar="SCORE",
                   help=f"lowest score used, in the second pass (default: {d.low_threshold})")
    g.add_argument("--new-track", type=_seconds, default=d.new_track_threshold, metavar="SCORE",
                   help=f"score that starts a track (default: {d.new_track_threshold})")
    g.add_argument("--lost-seconds", type=_seconds, default=d.max_lost_seconds, metavar="S",
                   help=f"how long a lost track may come back (default: {d.max_lost_seconds})")
    g.add_argument("--realtime", action="store_true",
                   help="drop frames when detection lags behind a live source (counted)")
    g.add_argument("--sequential", action="store_true",
                   help="decode, detect, draw and encode one after the other (no threads)")
    g.add_argument("--trail", type=int, default=20, metavar="N",
                   help="positions in a drawn trail (default: 20; 0: none)")
    g.add_argument("--max-frames", type=_positive, metavar="N", help="stop after N frames")
    g.add_argument("--fps", type=_seconds, default=10.0,
                   help="frame rate of a folder of frames (default: 10, KITTI's)")
    g.add_argument("--open-timeout", type=_seconds, default=10.0, metavar="S",
                   help="seconds to wait for a camera or stream to open (default: 10)")
    g.add_argument("--read-timeout", type=_seconds, default=10.0, metavar="S",
                   help="seconds to wait for a frame (default: 10)")
    g.add_argument("--reconnect", type=int, default=3, metavar="N",
                   help="reopenings of a live source that stopped, over the whole run "
                        "(default: 3; 0: end at the first stop)")
    g.add_argument("--threads", type=_positive, metavar="N",
                   help="inference threads of ONNX Runtime / OpenVINO in all (default: torch's)")
    g.add_argument("--workers", type=_positive, default=1, metavar="N",
                   help="detectors side by side, each with THREADS/N threads, frames in turn "
                        "(default: 1; 2 on two cores: see docs/video.md)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``squeezedet track``."""
    from squeezedet.deployment.runners import BACKENDS

    parser.add_argument("source", metavar="SOURCE",
                        help="video, folder of frames, quoted glob, camera index or stream URL")
    parser.add_argument("--weights", required=True, metavar="CKPT",
                        help="checkpoint (.pt) or exported model file")
    parser.add_argument("--out", default="runs/track", metavar="DIR",
                        help="output folder (default: runs/track)")
    parser.add_argument("--no-draw", action="store_true", help="no drawn video")
    parser.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                        help="inference backend (default: auto, by the weights' file type)")
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (CUDA when available), cpu, cuda ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_tracking_arguments(parser)


def options_from(args: argparse.Namespace) -> Any:
    """The :class:`~squeezedet.inference.track.TrackOptions` of parsed arguments."""
    from squeezedet.errors import SqueezeDetError
    from squeezedet.inference.track import TrackOptions
    from squeezedet.tracking import TrackerConfig
    from squeezedet.video import SourceOptions

    try:
        config = TrackerConfig(high_threshold=args.high, low_threshold=args.low,
                               new_track_threshold=args.new_track,
                               max_lost_seconds=args.lost_seconds)
    except (ValueError, SqueezeDetError) as exc:
        raise SqueezeDetError(f"tracker thresholds: {exc}") from None
    source = SourceOptions(open_timeout=args.open_timeout, read_timeout=args.read_timeout,
                           reconnect=max(0, args.reconnect), fps=args.fps)
    return TrackOptions(backend=args.backend, device=args.device, threads=args.threads,
                        workers=args.workers,
                        tracker=config, source=source, realtime=args.realtime,
                        sequential=args.sequential, no_draw=args.no_draw, trail=args.trail,
                        max_frames=args.max_frames, no_progress=args.no_progress)


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_tracking(weights: str, source: str, out: str, args: argparse.Namespace) -> int:
    """Track ``source`` and print the summary; 130 after Ctrl-C (or SIGTERM), else 0."""
    from squeezedet.inference.track import track

    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        result = track(weights, source, out, options_from(args))
    finally:
        signal.signal(signal.SIGTERM, previous)
    lines = result.summary_lines()
    print(lines[0])
    for line in lines[1:-1]:
        print(line, file=sys.stderr)
    print(lines[-1])
    return 130 if result.interrupted else 0


def run(args: argparse.Namespace) -> int:
    """Run the tracker over the source and print the summary."""
    return run_tracking(args.weights, args.source, args.out, args)
