"""User-facing errors.

Anything the user can fix (bad input files, impossible settings, missing optional packages) raises
:class:`SqueezeDetError` with a one-line message that says what is wrong, where, and what to do.
The command line prints that line and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SqueezeDetError(Exception):
    """An error caused by the user's input or environment, with a message fit to print as is."""


class DataError(SqueezeDetError):
    """Malformed or unreadable data: names the file (and line) at fault."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line


class NonFiniteLossError(SqueezeDetError):
    """The training loss became NaN or infinite."""


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
