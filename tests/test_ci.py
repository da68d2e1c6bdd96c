"""CI's script (.ci/run) and the Makefile's test targets, run with stand-ins for make and pytest.

.ci/run must run the README's test command (`make test`) and then `make test-slow`, failing when
either fails; `make test-slow` must pass the slow marker to pytest and must not fail when pytest
reports exit status 5 (no test selected), while any other failure still fails it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("bash") is None,
                                reason="needs make and bash")


def _fake(path: Path, log: Path, status_var: str) -> None:
    """An executable that logs its arguments and exits with $status_var (read per call)."""
    path.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n'
                    f'code_var="{status_var}_${{1//-/_}}"\nexit "${{!code_var:-0}}"\n')
    path.chmod(0o755)


def _run_ci(tmp_path: Path, **codes: int) -> tuple[int, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "make.log"
    _fake(bin_dir / "make", log, "MAKE_STATUS")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.update({f"MAKE_STATUS_{k}": str(v) for k, v in codes.items()})
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True,
                          text=True)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc.returncode, calls


def test_ci_runs_the_readme_tests_then_the_slow_tests(tmp_path: Path) -> None:
    code, calls = _run_ci(tmp_path)
    assert code == 0
    assert [c.split()[0] for c in calls] == ["test", "test-slow"]


@pytest.mark.parametrize("failing", ["test", "test_slow"])
def test_ci_fails_when_either_run_fails(tmp_path: Path, failing: str) -> None:
    code, calls = _run_ci(tmp_path, **{failing: 2})
    assert code != 0
    # a failing `make test` stops the run before the slow tests
    assert len(calls) == (1 if failing == "test" else 2)


def _make_test_slow(tmp_path: Path, pytest_status: int) -> tuple[subprocess.CompletedProcess[str],
                                                                    list[str]]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "python.log"
    (venv / "bin" / "python").write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {log}\nexit {pytest_status}\n')
    (venv / "bin" / "python").chmod(0o755)
    later = time.time() + 3600  # newer than pyproject.toml: make must not build the venv
    for name in (".installed", ".test-extras"):  # nor install the tests' extras
        stamp = venv / name
        stamp.touch()
        os.utime(stamp, (later, later))
    # PYTHON=false: were the stamp ever out of date, building a venv fails at once
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "test-slow", f"VENV={venv}",
                           "PYTHON=false"], capture_output=True, text=True)
    return proc, log.read_text().splitlines()


@pytest.mark.parametrize(("pytest_status", "make_ok"), [(0, True), (5, True), (1, False),
                                                        (2, False)])
def test_make_test_slow_passes_only_no_tests_selected(tmp_path: Path, pytest_status: int,
                                                      make_ok: bool) -> None:
    proc, calls = _make_test_slow(tmp_path, pytest_status)
    assert calls == ["-m pytest -m slow"]
    assert (proc.returncode == 0) is make_ok, proc.stdout + proc.stderr
    assert ("no slow test selected" in proc.stdout) is (pytest_status == 5)
