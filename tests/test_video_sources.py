"""Frame sources: a folder of frames (KITTI tracking layout), a video file, a truncated video, a
camera and a network stream (through fake captures and a local HTTP server), time-outs that keep
a hung source from hanging, reconnection, one-line errors."""

from __future__ import annotations

import http.server
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from squeezedet.errors import SqueezeDetError
from squeezedet.video import SourceOptions, open_source
from squeezedet.video.sources import hide_password
from squeezedet.video.watchdog import Watchdog


def _frame(value: int, size: tuple[int, int] = (48, 32)) -> np.ndarray:
    """A BGR frame (as OpenCV gives them): blue ``value``, green 10, red 200."""
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = value, 10, 200
    return frame


def write_avi(path: Path, n: int, size: tuple[int, int] = (48, 32)) -> Path:
    """An MJPEG .avi of ``n`` frames whose blue channel is ``8 * i mod 256``."""
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for i in range(n):
        writer.write(_frame(8 * i % 256, size))
    writer.release()
    return path


def test_folder_of_frames_in_natural_order_kitti_layout(tmp_path: Path) -> None:
    seq = tmp_path / "image_02" / "0004"
    seq.mkdir(parents=True)
    for i in (0, 2, 10, 1):  # natural order: 0, 1, 2, 10 (a plain sort puts 10 before 2)
        Image.fromarray(np.full((4, 6, 3), i, np.uint8)).save(seq / f"{i}.png")
    (seq / "notes.txt").write_text("not an image")
    (seq / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    source = open_source(str(seq), SourceOptions(fps=10.0))
    assert source.name == "0004"
    frames = list(source.frames())
    assert [f.name for f in frames] == ["0", "1", "2", "10"]
    assert [f.index for f in frames] == [0, 1, 2, 4]  # 5.png (index 3) skipped, not renumbered
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.4])
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 2, 10]
    assert len(source.warnings) == 1 and "5.png" in source.warnings[0]


def test_video_file_frames_are_rgb_with_timestamps(tmp_path: Path) -> None:
    source = open_source(str(write_avi(tmp_path / "clip.avi", 6)))
    assert (source.name, source.total, source.fps, source.live) == ("clip", 6, 10.0, False)
    frames = list(source.frames())
    assert [f.index for f in frames] == list(range(6))
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    red, green, blue = frames[5].image[10, 10].astype(int)  # written BGR (40, 10, 200)
    assert abs(red - 200) <= 6 and abs(green - 10) <= 6 and abs(blue - 40) <= 6
    assert source.warnings == [] and not source.ended_early


def test_h264_video_decodes(tmp_path: Path) -> None:
    """H.264, the usual camera and dash-cam codec (written with PyAV's libx264 when installed:
    OpenCV's wheels decode it but cannot encode it)."""
    av = pytest.importorskip("av")
    pytest.importorskip("cv2")
    path = tmp_path / "drive.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            rgb = np.zeros((48, 64, 3), np.uint8)
            rgb[:, :, 0] = 20 * i  # red ramps up
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    source = open_source(str(path))
    frames = list(source.frames())
    assert (len(frames), source.total, frames[0].image.shape) == (12, 12, (48, 64, 3))
    assert all(abs(int(f.image[24, 32, 0]) - 20 * i) <= 8 for i, f in enumerate(frames))
    assert all(int(f.image[24, 32, 2]) <= 8 for f in frames)


def test_truncated_video_ends_with_the_frames_before_the_cut(tmp_path: Path) -> None:
    path = write_avi(tmp_path / "clip.avi", 40)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the second half and the index are gone
    source = open_source(str(path))
    frames = list(source.frames())
    assert 5 <= len(frames) < 40
    assert source.ended_early
    assert f"after {len(frames)} of the 40 frames" in source.warnings[0]


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100])
def test_unreadable_video_is_one_line_error(tmp_path: Path, content: bytes) -> None:
    pytest.importorskip("cv2")
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(SqueezeDetError) as info:
        source = open_source(str(path))
        list(source.frames())
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_path_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SqueezeDetError, match="no such file, folder, camera or URL"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(SqueezeDetError, match="no image files"):
        open_source(str(tmp_path))


# ------------------------------------------------------------------ cameras: fake captures


class FakeCapture:
    """A ``cv2.VideoCapture`` stand-in: ``frames`` BGR frames, then either the end (``read``
    returns False) or, with ``hang``, a read that blocks until ``release``."""

    def __init__(self, frames: list[np.ndarray], opened: bool = True, hang: bool = False,
                 fps: float = 30.0) -> None:
        self.frames = list(frames)
        self.opened = opened
        self.hang = hang
        self.fps = fps
        self.released = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self) -> tuple[bool, Any]:
        if self.frames:
            return True, self.frames.pop(0)
        if self.hang:
            self.released.wait(30)
        return False, None

    def get(self, prop: int) -> float:
        return self.fps if prop == 5 else 0.0  # CAP_PROP_FPS; no frame count (live)

    def release(self) -> None:
        self.released.set()


def _factory(captures: list[FakeCapture], seen: list[Any]) -> Any:
    def make(target: Any, params: list[int]) -> FakeCapture:
        seen.append((target, params))
        return captures.pop(0) if captures else FakeCapture([], opened=False)
    return make


def test_camera_index_through_a_fake_capture() -> None:
    pytest.importorskip("cv2")
    import cv2

    seen: list[Any] = []
    capture = FakeCapture([_frame(i) for i in range(3)])
    source = open_source("0", SourceOptions(open_timeout=2.5, read_timeout=1.5, reconnect=0),
                         factory=_factory([capture], seen))
    assert (source.name, source.live, source.total) == ("camera0", True, None)
    frames = list(source.frames())
    assert [int(f.image[0, 0, 2]) for f in frames] == [0, 1, 2]  # blue channel, now last
    assert seen[0][0] == 0  # the index as an int: OpenCV's camera, not a file named "0"
    params = dict(zip(seen[0][1][::2], seen[0][1][1::2], strict=True))
    assert params[cv2.CAP_PROP_OPEN_TIMEOUT_MSEC] == 2500
    assert params[cv2.CAP_PROP_READ_TIMEOUT_MSEC] == 1500
    assert "ended after 3 frames" in source.warnings[-1]


def test_camera_that_cannot_open_is_one_line_error() -> None:
    with pytest.raises(SqueezeDetError, match=r"^camera 1: cannot be opened \(no such camera"):
        open_source(1, factory=_factory([FakeCapture([], opened=False)], []))


def test_open_that_hangs_times_out() -> None:
    def slow(target: Any, params: list[int]) -> FakeCapture:
        time.sleep(3.0)
        return FakeCapture([])

    t0 = time.monotonic()
    with pytest.raises(SqueezeDetError, match="not opened within 0.3 s"):
        open_source("rtsp://user:secret@127.0.0.1:9/x", SourceOptions(open_timeout=0.3),
                    factory=slow)
    assert time.monotonic() - t0 < 2.0


def test_read_that_hangs_times_out_and_reconnects() -> None:
    hung = FakeCapture([_frame(1), _frame(2)], hang=True)
    fresh = FakeCapture([_frame(3)])
    options = SourceOptions(read_timeout=0.3, reconnect=1, reconnect_delay=0.01)
    source = open_source("rtsp://127.0.0.1:9/live", options, factory=_factory([hung, fresh], []))
    t0 = time.monotonic()
    frames = list(source.frames())
    assert [int(f.image[0, 0, 2]) for f in frames] == [1, 2, 3]
    assert [f.index for f in frames] == [0, 1, 2]
    assert time.monotonic() - t0 < 5.0
    text = " | ".join(source.warnings)
    assert "no frame within 0.3 s" in text and "reconnected (try 1)" in text
    assert hung.released.is_set()  # the stuck capture was released and its read let go


def test_stream_that_drops_ends_cleanly_without_reconnect() -> None:
    options = SourceOptions(reconnect=0)
    source = open_source("http://127.0.0.1:9/cam", options,
                         factory=_factory([FakeCapture([_frame(1)])], []))
    assert len(list(source.frames())) == 1
    assert source.ended_early


def test_watchdog_returns_values_raises_errors_and_times_out() -> None:
    dog = Watchdog()
    assert dog.call(lambda: 42, 1.0) == 42
    with pytest.raises(ZeroDivisionError):
        dog.call(lambda: 1 / 0, 1.0)
    with pytest.raises(TimeoutError):
        dog.call(lambda: time.sleep(1.0), 0.05)
    with pytest.raises(TimeoutError, match="still stuck"):
        dog.call(lambda: 1, 1.0)


def test_password_is_hidden_in_messages() -> None:
    assert hide_password("rtsp://admin:pa55@10.0.0.1/s") == "rtsp://admin:***@10.0.0.1/s"
    assert hide_password("http://host/a:b@c") == "http://host/a:b@c"


# ------------------------------------------------------------------ a real stream over HTTP


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT``: ``/clip.avi`` (an 8-frame MJPEG .avi) and ``/mjpeg`` (5 JPEG
    frames as multipart/x-mixed-replace, how IP cameras stream)."""
    avi = write_avi(tmp_path / "clip.avi", 8).read_bytes()
    jpegs = []
    for i in range(5):
        buffer = io.BytesIO()
        Image.fromarray(np.full((32, 48, 3), 50 * i, np.uint8)).save(buffer, "JPEG", quality=95)
        jpegs.append(buffer.getvalue())

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/clip.avi":
                self.send_response(200)
                self.send_header("Content-Type", "video/x-msvideo")
                self.send_header("Content-Length", str(len(avi)))
                self.end_headers()
                self.wfile.write(avi)
            elif self.path == "/mjpeg":
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for jpeg in jpegs:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
            else:
                self.send_error(404)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_video_and_mjpeg_streams(http_server: str) -> None:
    options = SourceOptions(open_timeout=5, read_timeout=5, reconnect=0)
    video = open_source(f"{http_server}/clip.avi", options)
    assert video.live and video.name == "stream"
    assert len(list(video.frames())) == 8
    mjpeg = open_source(f"{http_server}/mjpeg", options)
    values = [int(f.image[16, 24].mean()) for f in mjpeg.frames()]
    assert len(values) == 5
    assert all(abs(v - 50 * i) <= 4 for i, v in enumerate(values))


def test_http_stream_that_cannot_open_is_one_line_error(http_server: str) -> None:
    with pytest.raises(SqueezeDetError) as info:
        open_source(f"{http_server}/missing", SourceOptions(open_timeout=5, reconnect=0))
    message = str(info.value)
    assert message.startswith(f"{http_server}/missing: cannot be opened") and "\n" not in message
