"""Calls that must not hang: a watchdog thread that gives up on a call after a time-out.

A blocking call into OpenCV / FFmpeg (opening an unreachable stream, reading from a camera that
stopped) cannot be interrupted from Python. :class:`Watchdog` runs each call on its own daemon
worker thread and waits for it at most ``timeout`` seconds; past that the caller gets
:class:`TimeoutError` and goes on, and the worker — still stuck in the call — is abandoned (a
daemon thread, it does not keep the process alive). A new :class:`Watchdog` starts a fresh worker.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Watchdog:
    """Runs calls on one daemon worker thread with a time-out per call (see the module docstring)."""

    def __init__(self, name: str = "watchdog") -> None:
        self.name = name
        self._requests: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stuck = False

    def _work(self) -> None:
        while True:
            fn = self._requests.get()
            if fn is None:
                return
            try:
                self._results.put((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._results.put((False, exc))

    def call(self, fn: Callable[[], T], timeout: float) -> T:
        """``fn()``, run on the worker; :class:`TimeoutError` when it takes over ``timeout`` s
        (the watchdog is then spent: later calls raise at once)."""
        if self._stuck:
            raise TimeoutError(f"{self.name}: an earlier call is still stuck")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        self._requests.put(fn)
        try:
            ok, value = self._results.get(timeout=timeout)
        except queue.Empty:
            self._stuck = True
            raise TimeoutError(f"{self.name}: no answer within {timeout:g} s") from None
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Let the worker end (after its current call, if one is stuck)."""
        if self._thread is not None:
            self._requests.put(None)
            self._thread = None
