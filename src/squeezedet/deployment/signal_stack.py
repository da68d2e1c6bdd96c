"""Keeping the calling thread's alternate signal stack valid across OpenVINO calls.

OpenVINO's CPU plugin (2026.4 on Linux) gives the thread that creates its engine — at the first
``compile_model`` or ``get_property`` of an ``ov.Core`` — a fresh alternate signal stack (an
``mmap``) and remembers the one it replaced; when the engine is destroyed it unmaps its stack and,
if its stack is still the thread's, puts back the one it remembered. Two cores destroyed in the
order they were made (first A, then B) leave the thread with A's stack, already unmapped: the next
signal whose handler runs on the alternate stack — Python's own SIGINT (Ctrl-C), SIGCHLD from a
DataLoader, a stop signal of training — cannot be delivered, and the kernel kills the process with
SIGSEGV. :func:`signal_stack_kept` puts the thread's previous stack back right after each such call,
so that an engine's stack is never the thread's when the engine is destroyed.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class StackT(ctypes.Structure):
    """``stack_t`` of ``<signal.h>`` (Linux)."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _read() -> StackT | None:
    """The calling thread's alternate signal stack; ``None`` where it cannot be read."""
    stack = StackT()
    if _LIBC is None or _LIBC.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack


def current_signal_stack() -> tuple[int | None, int, int] | None:
    """The calling thread's alternate signal stack as ``(address, flags, size)``; ``None``
    where it cannot be read (not Linux)."""
    stack = _read()
    return None if stack is None else (stack.ss_sp, stack.ss_flags, stack.ss_size)


def set_signal_stack(stack: StackT) -> bool:
    """Make ``stack`` the calling thread's alternate signal stack; False if refused."""
    return _LIBC is not None and _LIBC.sigaltstack(ctypes.byref(stack), None) == 0


@contextmanager
def signal_stack_kept() -> Iterator[None]:
    """Put the calling thread's alternate signal stack back as it was on entering, if the code
    inside replaced it (see the module docstring). Does nothing where it cannot read it."""
    before = _read()
    try:
        yield
    finally:
        if before is not None and current_signal_stack() != (before.ss_sp, before.ss_flags,
                                                                before.ss_size):
            set_signal_stack(before)
