"""Frame sources: video files, image sequences, cameras and network streams, one interface.

:func:`open_source` turns a source text into a :class:`FrameSource` whose :meth:`~FrameSource.frames`
yields :class:`Frame` s — ``uint8 [H, W, 3]`` RGB images with their index and timestamp:

- a **folder of images** (``.png .jpg .jpeg .bmp .tif .tiff .webp``, in natural order: ``2.png``
  before ``10.png``), such as KITTI tracking's ``image_02/0004/``, or a quoted glob; the
  sequence's name is the folder's (``0004``), timestamps are ``index / fps`` (``fps`` default 10,
  KITTI's rate); an unreadable image is skipped with a warning;
- a **video file** (anything OpenCV's FFmpeg reads); name: the file's stem; timestamps: ``index /``
  the header's frame rate; a video that stops before its header's frame count is reported as
  truncated;
- a **camera** index (``"0"``): OpenCV's default back-end (V4L2 on Linux);
- a **network stream** (``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``) through
  FFmpeg; timestamps: seconds since it was opened.

Nothing hangs: opening and each read run under a watchdog (:class:`Watchdog`) with time-outs
(``open_timeout``, ``read_timeout``), also passed to OpenCV (``CAP_PROP_OPEN_TIMEOUT_MSEC``,
``CAP_PROP_READ_TIMEOUT_MSEC``) where its back-end supports them. A live source that stops
delivering is reopened, at most ``reconnect`` times over the run (0: it ends cleanly), try ``k``
after a pause of ``k × reconnect_delay`` seconds; when the tries are spent it ends cleanly.
Failing to open gives a one-line :class:`SqueezeDetError`.
"""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from squeezedet.errors import DataError, SqueezeDetError, require
from squeezedet.video.watchdog import Watchdog

#: Image files a folder or glob source picks up.
SEQUENCE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: URL schemes opened as network streams.
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass(frozen=True)
class Frame:
    """One frame of a source.

    index: position in the source from 0, counting frames dropped on the way. timestamp: seconds
    (see the module docstring). image: ``uint8 [H, W, 3]`` RGB. name: the image's file stem for a
    sequence, else the index with six digits.
    """

    index: int
    timestamp: float
    image: np.ndarray = field(repr=False)
    name: str


@dataclass
class SourceOptions:
    """How sources are opened and read (the ``--open-timeout``, ``--read-timeout``,
    ``--reconnect`` and ``--fps`` flags); seconds throughout."""

    open_timeout: float = 10.0
    read_timeout: float = 10.0
    reconnect: int = 3
    reconnect_delay: float = 1.0
    fps: float = 10.0


def hide_password(text: str) -> str:
    """``rtsp://user:secret@host/x`` → ``rtsp://user:***@host/x`` (for messages)."""
    return re.sub(r"(://[^/@:]+):[^/@]*@", r"\1:***@", text)


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class ImageSequence:
    """The images of a folder or glob, in natural order (see the module docstring)."""

    live = False

    def __init__(self, paths: list[Path], name: str, fps: float = 10.0,
                 label: str | None = None) -> None:
        self.paths = paths
        self.name = name
        self.label = label or name
        self.fps: float | None = fps
        self.total: int | None = len(paths)
        self.warnings: list[str] = []
        self.ended_early = False

    def frames(self) -> Iterator[Frame]:
        from squeezedet.data.images import load_image

        for index, path in enumerate(self.paths):
            try:
                image = load_image(path)
            except DataError as exc:
                self.warnings.append(f"{exc}; skipped")
                continue
            yield Frame(index, index / float(self.fps or 10.0), image, path.stem)

    def close(self) -> None:
        """Nothing to release."""


def image_sequence(source: str, fps: float = 10.0) -> ImageSequence:
    """The :class:`ImageSequence` of a folder or glob; a one-line error when it has no images."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SEQUENCE_SUFFIXES]
        name = path.resolve().name
    else:
        files = [Path(p) for p in glob.glob(source, recursive=True)]
        files = [p for p in files if p.is_file() and p.suffix.lower() in SEQUENCE_SUFFIXES]
        name = Path(source).parent.name or "sequence"
    if not files:
        raise SqueezeDetError(f"{source}: no image files ({' '.join(SEQUENCE_SUFFIXES)})")
    return ImageSequence(sorted(files, key=_natural_key), name, fps, source)


#: ``factory(target, params) -> capture``: a ``cv2.VideoCapture``-like object (``isOpened``,
#: ``read``, ``get``, ``release``); tests pass fakes.
CaptureFactory = Callable[[Any, list[int]], Any]


def _opencv_capture(target: Any, params: list[int]) -> Any:
    cv2: Any = require("cv2", "video")
    api = cv2.CAP_ANY if isinstance(target, int) else cv2.CAP_FFMPEG
    return cv2.VideoCapture(target, api, params)


class CaptureSource:
    """A video file, camera or network stream read through OpenCV (see the module docstring).

    Args:
        target: a file path (str), a camera index (int) or a URL.
        kind: ``"video"``, ``"camera"`` or ``"stream"``; cameras and streams are live.
        factory: makes the capture (default: ``cv2.VideoCapture`` with the time-outs).
    """

    def __init__(self, target: str | int, kind: str, options: SourceOptions | None = None,
                 factory: CaptureFactory | None = None, name: str | None = None) -> None:
        self.target = target
        self.kind = kind
        self.live = kind != "video"
        self.options = options or SourceOptions()
        self.factory = factory or _opencv_capture
        self.label = (f"camera {target}" if kind == "camera" else hide_password(str(target)))
        self.name = name or (f"camera{target}" if kind == "camera" else
                             Path(str(target)).stem if kind == "video" else "stream")
        self.warnings: list[str] = []
        self.ended_early = False
        self._tries = 0  # reconnections so far
        self.watchdog = Watchdog(f"read {self.label}")
        self.capture = self._open()
        self.fps: float | None = self._get("CAP_PROP_FPS", 5) or None
        count = int(self._get("CAP_PROP_FRAME_COUNT", 7))
        self.total: int | None = count if count > 0 and not self.live else None

    def _params(self) -> list[int]:
        try:
            import cv2
        except ImportError:
            return []
        ms = lambda s: int(round(1000 * s))  # noqa: E731
        return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms(self.options.open_timeout),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms(self.options.read_timeout)]

    def _get(self, prop: str, fallback_id: int) -> float:
        try:
            import cv2
            prop_id = getattr(cv2, prop)
        except ImportError:
            prop_id = fallback_id
        try:
            return float(self.capture.get(prop_id) or 0.0)
        except Exception:  # noqa: BLE001 - a capture's get may fail on any back-end
            return 0.0

    def _open(self) -> Any:
        why = {"camera": "no such camera, or it is in use",
               "stream": "wrong address, server down or unreachable, or a codec FFmpeg lacks",
               "video": "unknown codec or not a video"}[self.kind]
        try:
            capture = self.watchdog.call(lambda: self.factory(self.target, self._params()),
                                         self.options.open_timeout)
        except TimeoutError:
            raise SqueezeDetError(f"{self.label}: not opened within {self.options.open_timeout:g} s "
                                  f"({why})") from None
        except Exception as exc:  # noqa: BLE001 - OpenCV raises cv2.error for some targets
            text = " ".join(str(exc).split())
            raise SqueezeDetError(f"{self.label}: cannot be opened ({text})") from None
        if not capture.isOpened():
            capture.release()
            raise SqueezeDetError(f"{self.label}: cannot be opened ({why})")
        return capture

    def _read(self) -> np.ndarray | None:
        """The next BGR frame, or ``None`` when the source ended, failed or timed out."""
        try:
            ok, frame = self.watchdog.call(self.capture.read, self.options.read_timeout)
        except TimeoutError:
            self.warnings.append(f"{self.label}: no frame within {self.options.read_timeout:g} s")
            self.watchdog = Watchdog(f"read {self.label}")  # the stuck read keeps the old thread
            return None
        return frame if ok and frame is not None else None

    def _reconnect(self) -> bool:
        """Reopen a live source after it stopped; False when the run's tries are spent."""
        self._release()
        while self._tries < self.options.reconnect:
            self._tries += 1
            time.sleep(self.options.reconnect_delay * self._tries)
            try:
                self.capture = self._open()
            except SqueezeDetError as exc:
                self.warnings.append(f"reconnect {self._tries}/{self.options.reconnect}: {exc}")
                continue
            self.warnings.append(f"{self.label}: reconnected (try {self._tries})")
            return True
        return False

    def frames(self) -> Iterator[Frame]:
        index, start = 0, time.monotonic()
        fps = self.fps or 25.0
        while True:
            frame = self._read()
            if frame is None:
                if self.live and self.capture is not None and self._reconnect():
                    continue
                self._finish(index)
                return
            rgb = _bgr_to_rgb(frame)
            stamp = time.monotonic() - start if self.live else index / fps
            yield Frame(index, stamp, rgb, f"{index:06d}")
            index += 1

    def _finish(self, count: int) -> None:
        if self.live:
            self.ended_early = True
            self.warnings.append(f"{self.label}: the stream ended after {count} frames")
        elif count == 0:
            raise SqueezeDetError(f"{self.label}: no frame could be decoded (a codec OpenCV's FFmpeg "
                                  "lacks, or a corrupt file)")
        elif self.total is not None and count < self.total:
            self.ended_early = True
            self.warnings.append(f"{self.label}: the video ended after {count} of the {self.total} "
                                 "frames its header announces (truncated or corrupt)")

    def _release(self) -> None:
        capture, self.capture = self.capture, None
        if capture is not None:
            try:
                capture.release()
            except Exception:  # noqa: BLE001 - releasing a broken capture must not hide the cause
                pass

    def close(self) -> None:
        """Release the capture (a read stuck past its time-out keeps its own thread)."""
        self._release()


FrameSource = ImageSequence | CaptureSource


def _bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or grey) as a new contiguous RGB array; OpenCV's conversion
    (a fifth of NumPy's strided copy, without the GIL) when it is installed."""
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    try:
        import cv2
    except ImportError:
        return np.ascontiguousarray(frame[:, :, 2::-1])
    code = cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(frame, code)


def open_source(source: str | int, options: SourceOptions | None = None,
                factory: CaptureFactory | None = None) -> FrameSource:
    """The :class:`FrameSource` of a source text (see the module docstring): a camera index, a
    URL, a folder or glob of images, or a video file. A one-line :class:`SqueezeDetError` when it
    cannot be opened."""
    options = options or SourceOptions()
    text = str(source).strip()
    if isinstance(source, int) or text.isdigit():
        return CaptureSource(int(text), "camera", options, factory)
    if text.lower().startswith(STREAM_SCHEMES):
        return CaptureSource(text, "stream", options, factory)
    path = Path(text).expanduser()
    if path.is_dir() or (not path.exists() and any(ch in text for ch in "*?[")):
        return image_sequence(text, options.fps)
    if not path.exists():
        raise SqueezeDetError(f"{text}: no such file, folder, camera or URL")
    if path.suffix.lower() in SEQUENCE_SUFFIXES:
        return ImageSequence([path], path.stem, options.fps, text)
    return CaptureSource(str(path), "video", options, factory)
