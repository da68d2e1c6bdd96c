"""User-facing errors, and the checks every command makes before it starts work.

Anything the user can fix (bad input files, impossible settings, missing optional packages, output
paths that cannot be written) raises :class:`SqueezeDetError` with a message that says what is
wrong, where, and what to do. The command line prints it after ``squeezedet <command>: error:``
and exits with status 2 instead of showing a traceback; :func:`user_error` also recognises such an
error when it arrives from a DataLoader worker process, wrapped by PyTorch. Any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


class SqueezeDetError(Exception):
    """An error caused by the user's input or environment, with a message fit to print as is."""


class DataError(SqueezeDetError):
    """Malformed or unreadable data: names the file (and line) at fault.

    ``DataError(path, message, line)`` reads ``"path:line: message"``. It pickles with its three
    parts (:meth:`__reduce__`), and ``DataError(text)`` with the whole text alone is accepted too
    (``path`` and ``line`` are then ``None``): that is how PyTorch's DataLoader re-raises an error
    of a worker process in the main process, keeping its class.
    """

    def __init__(self, path: str | Path, message: str | None = None,
                 line: int | None = None) -> None:
        if message is None:  # the formatted text only (see the class docstring)
            super().__init__(str(path))
            self.path: Path | None = None
            self.line = None
            self.message = str(path)
            return
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        if self.path is None:
            return (type(self), (self.message,))
        return (type(self), (self.path, self.message, self.line))

    def extended(self, note: str) -> DataError:
        """The same error (file and line) with ``note`` added to its message."""
        if self.path is None:
            return DataError(f"{self}{note}")
        return DataError(self.path, f"{self.message}{note}", self.line)


class NonFiniteLossError(SqueezeDetError):
    """The training loss became NaN or infinite."""


# ------------------------------------------------------------------ errors from worker processes

#: How PyTorch's ``ExceptionWrapper.reraise`` starts the message of an error it carries over from
#: a DataLoader worker (or another background thread or process).
_WRAPPED = re.compile(r"Caught (\w+) (in [^\n]*)\.\nOriginal Traceback")


def _user_error_classes() -> dict[str, type[SqueezeDetError]]:
    found: dict[str, type[SqueezeDetError]] = {}
    pending: list[type[SqueezeDetError]] = [SqueezeDetError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.__name__, cls)
        pending += cls.__subclasses__()
    return found


def user_error(exc: BaseException) -> SqueezeDetError | None:
    """The user error ``exc`` is, or carries: a :class:`SqueezeDetError`, also one raised in a
    DataLoader worker process and re-raised by PyTorch with the worker's traceback as its text
    (whatever class that re-raise has); ``None`` for anything else (a bug: keep its traceback).

    The recovered error has the original message alone, without the worker's traceback.
    """
    text = str(exc)
    wrapped = _WRAPPED.match(text)
    if wrapped is None:
        return exc if isinstance(exc, SqueezeDetError) else None
    name = wrapped.group(1)
    cls = _user_error_classes().get(name)
    if cls is None:
        return None
    # the traceback text ends with "module.Class: message" (the message may span lines)
    ends = [m.end() for m in re.finditer(rf"^(?:[\w.]+\.)?{name}: ", text, re.MULTILINE)]
    message = text[ends[-1]:].strip() if ends else text
    return SqueezeDetError(message)


# ------------------------------------------------------------------ optional dependencies


def installed(module: str) -> bool:
    """Whether an optional dependency can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or raise a clear error naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SqueezeDetError(
            f"this feature needs the optional package '{module}': "
            f"pip install 'squeezedet[{extra}]' (or pip install {module.split('.')[0]})"
        ) from exc


# ------------------------------------------------------------------ output paths


def _creatable(path: Path, what: str) -> None:
    """Raise unless the missing ``path`` can be created (as a folder or a file): its nearest
    existing ancestor must be a folder this process may write in."""
    for parent in Path(os.path.abspath(path)).parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise SqueezeDetError(f"{what} {path}: {parent} is a file, so nothing can be created "
                                  "inside it; choose another path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise SqueezeDetError(f"{what} {path}: no permission to create it in {parent}; "
                                  "choose a folder you can write to")
        return


def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """``path`` as a folder a command may create or write into; raises :class:`SqueezeDetError`
    (naming ``what``, the option that gave it) when it is an existing file, lies below a file, or
    cannot be written. Nothing is created."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise SqueezeDetError(f"{what} {p}: this is a file, not a folder; choose a new or "
                                  "existing folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise SqueezeDetError(f"{what} {p}: no permission to write in this folder")
        return p
    _creatable(p, what)
    return p


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """``path`` as a file a command may write (replacing an existing file); raises
    :class:`SqueezeDetError` when it is an existing folder, lies below a file, or cannot be
    written. Nothing is created."""
    p = Path(path)
    if p.is_dir():
        raise SqueezeDetError(f"{what} {p}: this is a folder, not a file; give a file name "
                              f"(e.g. {p / ('out' + (p.suffix or '.json'))})")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise SqueezeDetError(f"{what} {p}: no permission to overwrite this file")
        return p
    parent = p.parent
    if parent.exists():
        if not parent.is_dir():
            raise SqueezeDetError(f"{what} {p}: {parent} is a file, so nothing can be created "
                                  "inside it; choose another path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise SqueezeDetError(f"{what} {p}: no permission to write in {parent}")
        return p
    _creatable(p, what)
    return p
