"""Stopping a training run cleanly when the process is asked to stop.

Preemptible cloud machines and cluster schedulers send SIGTERM (some SIGUSR1 first) and, some
seconds later, SIGKILL; a terminal sends SIGINT on Ctrl-C. :class:`StopSignals` turns the first of
these signals into a request that the training loop reads after each optimiser step: it then writes
the checkpoint of exactly that step and stops with :data:`EXIT_RESUMABLE`. A second signal does not
wait: it raises :class:`KeyboardInterrupt` at once (the command line then exits with 130).

DataLoader worker processes share the terminal's process group (Ctrl-C reaches them too) and some
schedulers signal every process of a job. A worker that died of the signal would make the main
process fail instead of saving, so :func:`ignore_stop_signals` (a ``worker_init_fn``) makes the
workers ignore these signals; they end when the main process ends their DataLoader or exits.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger("squeezedet.preemption")

#: exit status of a run that stopped on a signal after saving a checkpoint it can resume from
#: (``EX_TEMPFAIL`` of sysexits.h: "temporary failure, try again"); failures exit with 1 or 2
EXIT_RESUMABLE = 75

#: the signals that ask a run to stop: SIGTERM (schedulers, ``kill``), SIGINT (Ctrl-C) and
#: SIGUSR1 (sent first by some schedulers, e.g. Slurm's ``--signal``); those this platform has
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name)
)


class StopSignals:
    """Context manager that records the first stop signal instead of dying of it.

    ``received`` is ``None`` until a signal in :data:`STOP_SIGNALS` arrives, then its name
    (``"SIGTERM"``). A second signal restores the previous handlers and raises
    :class:`KeyboardInterrupt`. On leaving, the handlers that were installed before are put back.
    Python only lets the main thread install handlers: elsewhere (or with ``enabled=False``) this
    does nothing and ``received`` stays ``None``.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.received: str | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._owner = os.getpid()

    def __enter__(self) -> StopSignals:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._owner = os.getpid()
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

    def restore(self) -> None:
        """Put back the handlers found on entering (idempotent)."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:  # a forked child before its own handlers were set
            return
        name = signal.Signals(signum).name
        if self.received is not None:
            self.restore()
            raise KeyboardInterrupt(f"second stop signal ({self.received}, then {name})")
        self.received = name
        log.debug("%s received: stopping after the current step", name)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` for DataLoaders of a training run: the worker ignores
    :data:`STOP_SIGNALS` and leaves stopping to the main process. A stop signal held back since
    the worker started (:func:`worker_batches`) is dropped here."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold back (not lose) the stop signals in the calling thread while DataLoader workers start.

    A worker starts with the mask of the thread that forked it, and PyTorch installs a fatal
    SIGTERM handler in it before it runs ``worker_init_fn``: a signal to the process group (as
    torchrun sends it) in between would kill the worker and, with it, the run before it saves.
    Held back, the worker's signal is dropped by :func:`ignore_stop_signals`, and the main
    process's is delivered when the workers have started."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_batches(loader: Iterable[Any]) -> Iterator[Any]:
    """Iterate a DataLoader whose workers ignore the stop signals (:func:`ignore_stop_signals`).

    When the iteration ends or fails (an error raised in a worker included), the workers are
    stopped here — sent PyTorch's end-of-work sentinel, then killed if still alive: a worker
    that ignores SIGTERM outlives PyTorch's ``terminate()``, and multiprocessing's exit-time join
    would then wait for it forever (the process printed its error and never exited)."""
    with _stop_signals_held():
        it = iter(loader)  # starts the workers
    try:
        yield from it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        workers = list(getattr(it, "_workers", ()))
        if shutdown is not None:
            shutdown()
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join(timeout=5)
