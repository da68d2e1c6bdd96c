"""Choosing a runtime by measuring it on the machine at hand, and remembering the choice.

``backend="auto"`` (:func:`squeezedet.deployment.runners.load_runner`) does not trust an order
learnt on another CPU: the runtime that is fastest with AVX-512 and VNNI may be the slowest with
AVX2 alone. On first use for a model it builds each usable candidate, checks it, times a few warm
runs of each (round-robin, so that a change of the machine's load touches all of them alike) and
takes the one with the lowest median. The choice is kept in a small JSON file, keyed by everything
the timing depends on: the model (a hash of its file or weights), its input size, the precision
asked for, the thread count, the CPU (:func:`squeezedet.cpu.cpu_identity`: model, feature flags,
instruction-set limits) and the versions of the runtimes. The next use with the same key builds
the chosen candidate only and times nothing.

The file is ``choices.json`` in ``$SQUEEZEDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/squeezedet``,
else ``~/.cache/squeezedet``. ``SQUEEZEDET_CACHE_DIR=off`` (or ``none``, ``0``, empty) keeps
nothing: every ``auto`` measures. A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: environment variable naming the cache folder (``off``/``none``/``0``/empty: no cache)
CACHE_ENV = "SQUEEZEDET_CACHE_DIR"
CACHE_FILE = "choices.json"
#: timed runs per candidate (after one warm run), and the time after which no new round starts
#: once :data:`MIN_RUNS` rounds are done
RUNS = 5
MIN_RUNS = 3
BUDGET_S = 3.0
_OFF = {"off", "none", "0", "no", "false", ""}


def cache_dir() -> Path | None:
    """The folder of the choice cache, or ``None`` when caching is switched off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "squeezedet"


def file_identity(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB pieces)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(state: dict[str, Any], meta: dict[str, Any]) -> str:
    """SHA-256 of a state dict's tensors (names, dtypes, shapes, bytes) and the model metadata:
    the identity of a checkpoint held in memory."""
    import torch

    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def runtime_versions() -> dict[str, str | None]:
    """Versions of squeezedet and of the runtimes whose speed is compared (``None``: not
    installed), read from the package metadata without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    from squeezedet.version import __version__

    found: dict[str, str | None] = {"squeezedet": __version__}
    for dist in ("torch", "onnxruntime", "openvino", "executorch"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    return found


def choice_key(parts: dict[str, Any]) -> str:
    """A short stable hash of the key parts (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ChoiceCache:
    """The JSON file of measured choices: ``{key: {"choice": name, "median_ms": {...}, ...}}``."""

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / CACHE_FILE if folder is not None else None

    @classmethod
    def default(cls) -> ChoiceCache:
        return cls(cache_dir())

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._read().get(key)
        return entry if isinstance(entry, dict) and isinstance(entry.get("choice"), str) else None

    def put(self, key: str, entry: dict[str, Any] | None) -> None:
        """Store (or with ``None`` remove) an entry; written atomically, failures ignored."""
        if self.path is None:
            return
        data = self._read()
        if entry is None:
            data.pop(key, None)
        else:
            data[key] = entry
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".choices-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)


@dataclass
class Candidate:
    """One way to run the model: ``build()`` makes the runner (may raise), ``check(runner)``
    returns ``None`` when its output is acceptable or a message saying why not,
    ``call(runner)`` is one timed inference, ``context`` wraps the timed calls (a
    runtime other than PyTorch runs with PyTorch on one thread, as the Detector runs it)."""

    name: str
    build: Callable[[], Any]
    check: Callable[[Any], str | None]
    call: Callable[[Any], Any]
    context: Callable[[Any], contextlib.AbstractContextManager[Any]] = field(
        default=lambda runner: contextlib.nullcontext())


@dataclass
class Choice:
    """What :func:`choose` settled on: the runner, its candidate's name, the median times of the
    candidates timed (empty on a cache hit) and whether the choice came from the cache."""

    runner: Any
    name: str
    median_ms: dict[str, float]
    cached: bool


def time_candidates(runners: dict[str, tuple[Candidate, Any]], *, runs: int = RUNS,
                    budget_s: float = BUDGET_S,
                    clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median milliseconds of ``runs`` calls of each runner after an untimed one, taken
    round-robin (one call of each per round) so that the machine's load moves all of them alike;
    after :data:`MIN_RUNS` rounds no new round starts once ``budget_s`` of wall time has
    passed."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for cand, runner in runners.values():  # one untimed call each: first-call set-up
        with cand.context(runner):
            cand.call(runner)
    start = time.perf_counter()
    for done in range(runs):
        if done >= MIN_RUNS and time.perf_counter() - start > budget_s:
            break
        for name, (cand, runner) in runners.items():
            with cand.context(runner):
                t = clock()
                cand.call(runner)
                times[name].append(clock() - t)
    return {name: 1000 * statistics.median(v) for name, v in times.items()}


def choose(candidates: Sequence[Candidate], key_parts: dict[str, Any], *,
           cache: ChoiceCache | None = None, runs: int = RUNS,
           clock: Callable[[], float] | None = None,
           timer: Callable[..., dict[str, float]] | None = None,
           fallback: Candidate | None = None) -> Choice:
    """The fastest acceptable candidate, measured on first use for ``key_parts`` and cached.

    Candidates that fail to build or whose check fails are skipped with a warning. With a single
    usable candidate nothing is timed. When none is usable, ``fallback`` is built (unchecked),
    or :class:`RuntimeError` raised. A cached choice is built and checked again (the check is
    cheap next to a wrong answer); if it no longer builds or agrees, the entry is dropped and
    the candidates are measured anew. ``clock`` and ``timer`` (default :func:`time.perf_counter`,
    :func:`time_candidates`) can be replaced, e.g. by fakes in tests.
    """
    cache = cache if cache is not None else ChoiceCache.default()
    names = [c.name for c in candidates]
    key = choice_key({**key_parts, "candidates": names})
    entry = cache.get(key)
    if entry is not None and entry["choice"] in names:
        cand = candidates[names.index(entry["choice"])]
        runner, problem = _build_and_check(cand)
        if problem is None:
            return Choice(runner, cand.name, {}, cached=True)
        warnings.warn(f"the cached choice {cand.name} is unusable now ({problem}); measuring again",
                      stacklevel=3)
        cache.put(key, None)
    usable: dict[str, tuple[Candidate, Any]] = {}
    for cand in candidates:
        runner, problem = _build_and_check(cand)
        if problem is None:
            usable[cand.name] = (cand, runner)
        else:
            warnings.warn(f"{cand.name}: {problem}; not considered", stacklevel=3)
    if not usable:
        if fallback is None:
            raise RuntimeError("no usable runner among " + ", ".join(names))
        return Choice(fallback.build(), fallback.name, {}, cached=False)
    if len(usable) == 1:
        (name, (_, runner)), = usable.items()
        return Choice(runner, name, {}, cached=False)
    medians = (timer or time_candidates)(usable, runs=runs, clock=clock or time.perf_counter)
    best = min(medians, key=lambda n: medians[n])
    cache.put(key, {"choice": best, "median_ms": {n: round(v, 3) for n, v in medians.items()},
                    "measured": time.strftime("%Y-%m-%dT%H:%M:%S"), "key": key_parts})
    runner = usable[best][1]
    usable.clear()  # the others are freed here
    return Choice(runner, best, medians, cached=False)


def _build_and_check(cand: Candidate) -> tuple[Any, str | None]:
    try:
        runner = cand.build()
        problem = cand.check(runner)
    except Exception as exc:  # noqa: BLE001 - any runtime failure disqualifies the candidate
        return None, f"unusable ({exc})"
    return (runner if problem is None else None), problem
