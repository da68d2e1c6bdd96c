"""The alternate signal stack survives OpenVINO (squeezedet.deployment.signal_stack).

OpenVINO's CPU plugin gives the thread that compiles a model its own alternate signal stack and,
when two engines are destroyed in the order they were made, leaves the thread with an unmapped
one: the next signal with a Python handler (Ctrl-C, SIGCHLD, a stop signal) then killed the
process with SIGSEGV — seen as pytest workers dying in whichever test was running.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from random_model import random_checkpoint

from squeezedet.deployment.signal_stack import (
    StackT,
    current_signal_stack,
    set_signal_stack,
    signal_stack_kept,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack via libc")
needs_ov = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                              reason="needs openvino (pip install 'squeezedet[openvino]')")


@linux_only
def test_a_stack_replaced_inside_is_put_back() -> None:
    before = current_signal_stack()
    assert before is not None
    buffer = ctypes.create_string_buffer(64 * 1024)
    other = StackT(ctypes.cast(buffer, ctypes.c_void_p), 0, len(buffer))
    with signal_stack_kept():
        assert set_signal_stack(other)
        assert current_signal_stack() == (ctypes.addressof(buffer), 0, len(buffer))
    assert current_signal_stack() == before


@linux_only
def test_a_stack_left_alone_inside_stays() -> None:
    before = current_signal_stack()
    with signal_stack_kept():
        pass
    assert current_signal_stack() == before


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("ckpt"), (64, 32), seed=1, convdet_std=None)


@linux_only
@needs_ov
def test_openvino_runners_leave_the_signal_stack_as_they_found_it(checkpoint: Path) -> None:
    from squeezedet.deployment.runners import load_runner

    before = current_signal_stack()
    runner = load_runner(checkpoint, "openvino")
    assert current_signal_stack() == before
    del runner


@linux_only
@needs_ov
def test_a_signal_after_two_openvino_runners_is_handled(checkpoint: Path) -> None:
    # in a child process: without the guard it dies of SIGSEGV (exit status -11)
    script = textwrap.dedent(f"""
        import gc, os, signal
        from squeezedet.deployment.runners import load_runner
        first = load_runner({str(checkpoint)!r}, "openvino")
        second = load_runner({str(checkpoint)!r}, "openvino")
        del first; gc.collect()
        del second; gc.collect()
        signal.signal(signal.SIGUSR1, lambda *a: print("handled", flush=True))
        os.kill(os.getpid(), signal.SIGUSR1)
        print("alive", flush=True)
    """)
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # Python's own alternate stack, as pytest's
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["handled", "alive"]
