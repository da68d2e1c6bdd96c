"""Stages that overlap: decoding, inference and drawing on their own threads, order kept.

:func:`run_stages` takes an iterator of items (frames from a source: iterating it *is* decoding)
and a list of named stages, each a function item → item, and yields what the last stage returns,
in the source's order. Threaded (the default), the source and each stage run on a thread of their
own, joined by bounded queues (``queue_size`` items each), so memory stays flat however long the
input is and a stream runs at about the speed of its slowest stage instead of the sum of all: the
heavy parts — FFmpeg decoding, the inference runtimes, OpenCV's drawing and encoding — release
Python's GIL. One thread per stage and first-in-first-out queues keep the order.

``drop=True`` (real time, for live sources): the source never waits for the first stage; a frame
that the first stage has not taken by the time the next one is decoded is dropped (counted in
:attr:`StageTimes.dropped`), so the results stay close to live when inference lags.

A stage given several functions (``(name, [f1, f2])``) runs one worker thread per function, the
workers taking items in turn, and puts their results back in the items' order: two detectors with
one inference thread each can keep two cores busy where one detector with two threads waits at
every layer's end for its slower half (measured in ``docs/video.md``).

``threaded=False`` runs the same stages one after the other in the caller's thread (the
sequential loop the benchmark compares against; a parallel stage uses its first function). An
exception in any stage (or the source) ends the run and is raised in the caller; closing the
generator (``break``, Ctrl-C) stops every thread.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

#: A named stage: ``(name, function item -> item)``, or ``(name, [function, ...])`` for one worker
#: thread per function taking items in turn, their results put back in order (e.g. one detector
#: per worker, each with its own inference request).
Stage = tuple[str, Union[Callable[[Any], Any], Sequence[Callable[[Any], Any]]]]  # noqa: UP007

_END = object()
_POLL = 0.05  # seconds between checks of the stop flag while a queue is full or empty


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@dataclass
class StageTimes:
    """Busy seconds and item counts per stage (``decode`` first), and the frames dropped."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, seconds: float) -> None:
        """Count one item of stage ``name`` that took ``seconds`` (any thread)."""
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.counts[name] = self.counts.get(name, 0) + 1

    def ms(self, name: str) -> float:
        """Mean milliseconds per item of stage ``name`` (0 when it ran none)."""
        count = self.counts.get(name, 0)
        return 1000.0 * self.seconds.get(name, 0.0) / count if count else 0.0

    def line(self) -> str:
        """``decode 2.1 ms, detect 9.8 ms, …`` in stage order."""
        return ", ".join(f"{name} {self.ms(name):.1f} ms" for name in self.seconds)


class LatestSlot:
    """A one-frame hand-over that never blocks the producer: a new item replaces one not yet
    taken (counted as dropped); end markers and failures are never replaced."""

    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: Any, timeout: float | None = None) -> None:
        with self._cond:
            if self._items and _droppable(self._items[-1]) and _droppable(item):
                self._items.pop()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Any:
        with self._cond:
            if not self._items and not self._cond.wait(timeout):
                raise queue.Empty
            if not self._items:
                raise queue.Empty
            return self._items.popleft()


def _droppable(item: Any) -> bool:
    return item is not _END and not isinstance(item, _Failure)


def _put(q: Any, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` into ``q``, waiting while it is full; False when told to stop meanwhile."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _get(q: Any, stop: threading.Event) -> Any:
    """The next item of ``q``; ``_END`` when told to stop meanwhile."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue
    return _END


def _produce(items: Iterable[Any], out: Any, stop: threading.Event, times: StageTimes) -> None:
    iterator = iter(items)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                break
            times.add("decode", time.perf_counter() - t0)
            if not _put(out, item, stop):
                break
        _put(out, _END, stop)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
        _put(out, _Failure(exc), stop)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _work(name: str, fn: Callable[[Any], Any], inp: Any, out: Any, stop: threading.Event,
          times: StageTimes) -> None:
    while True:
        item = _get(inp, stop)
        if item is _END or isinstance(item, _Failure):
            _put(out, item, stop)
            return
        t0 = time.perf_counter()
        try:
            result = fn(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            _put(out, _Failure(exc), stop)
            return
        times.add(name, time.perf_counter() - t0)
        if not _put(out, result, stop):
            return


def _dispatch(inp: Any, work: Any, workers: int, stop: threading.Event) -> None:
    """Number the items of ``inp`` for the workers of a parallel stage; one end marker each."""
    seq = 0
    while True:
        item = _get(inp, stop)
        if item is _END or isinstance(item, _Failure):
            if isinstance(item, _Failure):
                _put(work, (seq, item), stop)
            for _ in range(workers):
                _put(work, (None, _END), stop)
            return
        if not _put(work, (seq, item), stop):
            return
        seq += 1


def _parallel_work(name: str, fn: Callable[[Any], Any], work: Any, done: Any,
                   stop: threading.Event, times: StageTimes) -> None:
    while True:
        got = _get(work, stop)
        if got is _END:  # told to stop
            return
        seq, item = got
        if item is _END or isinstance(item, _Failure):
            _put(done, (seq, item), stop)
            if item is _END:
                return
            continue
        t0 = time.perf_counter()
        try:
            result = fn(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            _put(done, (seq, _Failure(exc)), stop)
            return
        times.add(name, time.perf_counter() - t0)
        if not _put(done, (seq, result), stop):
            return


def _collect(done: Any, out: Any, workers: int, stop: threading.Event) -> None:
    """The workers' results in their items' order; the end once every worker ended."""
    waiting: dict[int, Any] = {}
    ended, next_seq = 0, 0
    while ended < workers:
        got = _get(done, stop)
        if got is _END:  # told to stop
            return
        seq, item = got
        if item is _END and seq is None:
            ended += 1
            continue
        waiting[seq] = item
        while next_seq in waiting:
            ready = waiting.pop(next_seq)
            next_seq += 1
            if not _put(out, ready, stop) or isinstance(ready, _Failure):
                return
    for seq in sorted(waiting):  # only a failure can be left (a worker stopped on it)
        _put(out, waiting[seq], stop)
    _put(out, _END, stop)


def _stage_threads(i: int, name: str, fn: Any, queues: list[Any], stop: threading.Event,
                   times: StageTimes) -> list[threading.Thread]:
    """The thread of stage ``i`` (one function), or its dispatcher, workers and collector."""
    if callable(fn):
        return [threading.Thread(target=_work, name=name, daemon=True,
                                 args=(name, fn, queues[i], queues[i + 1], stop, times))]
    fns = list(fn)
    work: Any = queue.Queue(len(fns))
    done: Any = queue.Queue(len(fns) * 2)
    threads = [threading.Thread(target=_dispatch, name=f"{name}-in", daemon=True,
                                args=(queues[i], work, len(fns), stop)),
               threading.Thread(target=_collect, name=f"{name}-out", daemon=True,
                                args=(done, queues[i + 1], len(fns), stop))]
    threads += [threading.Thread(target=_parallel_work, name=name, daemon=True,
                                 args=(name, f, work, done, stop, times)) for f in fns]
    return threads


def _threaded(items: Iterable[Any], stages: Sequence[Stage], queue_size: int, drop: bool,
              times: StageTimes) -> Iterator[Any]:
    stop = threading.Event()
    first: Any = LatestSlot() if drop else queue.Queue(queue_size)
    queues = [first] + [queue.Queue(queue_size) for _ in stages]
    threads = [threading.Thread(target=_produce, args=(items, first, stop, times),
                                name="decode", daemon=True)]
    for i, (name, fn) in enumerate(stages):
        threads += _stage_threads(i, name, fn, queues, stop, times)
    for thread in threads:
        thread.start()
    try:
        while True:
            item = _get(queues[-1], stop)
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5.0)
        if drop:
            times.dropped += first.dropped


def _sequential(items: Iterable[Any], stages: Sequence[Stage], times: StageTimes) -> Iterator[Any]:
    iterator = iter(items)
    try:
        while True:
            t0 = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            times.add("decode", time.perf_counter() - t0)
            for name, fn in stages:
                t0 = time.perf_counter()
                item = fn(item) if callable(fn) else fn[0](item)
                times.add(name, time.perf_counter() - t0)
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def run_stages(items: Iterable[Any], stages: Sequence[Stage], *, threaded: bool = True,
               queue_size: int = 4, drop: bool = False,
               times: StageTimes | None = None) -> Iterator[Any]:
    """The last stage's results for every item of ``items``, in order (see the module
    docstring). ``times`` (optional) collects each stage's busy time and the drops."""
    if queue_size < 1:
        raise ValueError(f"queue_size must be at least 1, got {queue_size}")
    times = times if times is not None else StageTimes()
    times.seconds.setdefault("decode", 0.0)
    if threaded:
        return _threaded(items, stages, queue_size, drop, times)
    return _sequential(items, stages, times)
