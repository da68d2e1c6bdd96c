"""The repository's ``scripts/NAME.py`` loaded as a module, for tests of what a script computes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` imported (its ``main`` is not run)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stale_tables(script: str, page: str, folder: str, marker: str, key: str) -> list[str]:
    """The committed result files ``docs/benchmarks/FOLDER/*.json`` whose table, as ``script``'s
    ``format_table`` makes it of the file's ``key`` list, does not follow the line
    ``<!-- MARKER:STEM -->`` in ``docs/PAGE``; each with the command that prints the table. An
    empty folder is an error of its own."""
    module = load_script(script)
    text = (ROOT / "docs" / page).read_text()
    files = sorted((ROOT / "docs" / "benchmarks" / folder).glob("*.json"))
    assert files, f"no result files in docs/benchmarks/{folder}"
    return [f"{path.name}: python scripts/{script}.py --table {path.relative_to(ROOT)}"
            for path in files
            if f"<!-- {marker}:{path.stem} -->\n"
               f"{module.format_table(json.loads(path.read_text())[key])}\n" not in text]
