"""The package's layering (docs/architecture.md), checked by import-linter's contracts in
pyproject.toml: layers import only downwards, data never imports training or prediction, only the
command line imports the commands, and no package has an import cycle between its modules."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    import importlinter  # noqa: F401 - the 'dev' extra; `make test` installs it

    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())"],
        cwd=ROOT, capture_output=True, text=True)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "4 kept, 0 broken" in report, report


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    """The check can fail: a data module importing the training driver breaks two contracts."""
    import shutil

    pkg = tmp_path / "src" / "squeezedet"
    shutil.copytree(ROOT / "src" / "squeezedet", pkg,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "data" / "leak.py").write_text("from squeezedet.train import train  # noqa: F401\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env_path = str(tmp_path / "src")
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r}); "
         "from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=tmp_path, capture_output=True, text=True)
    report = proc.stdout + proc.stderr
    assert proc.returncode != 0, report
    assert "squeezedet.data.leak -> squeezedet.train" in report, report
