"""The README and the documentation site say only what is true of the code.

- every ``squeezedet …`` command in a shell block of README.md or docs/ names a real subcommand
  and parses with the command line's own argparse parser (flags and ``key=value`` settings
  checked; nothing is run); every ``squeezedet …`` in inline code names a real subcommand and
  real flags;
- every Python block runs, on a tiny model and tiny data, unless the line before it says
  ``<!-- docs-test: not run (reason) -->``;
- the README stays under 200 lines, its links point at files that exist, and its command list
  names every subcommand;
- the benchmark tables match the JSON files they are generated from;
- the site builds with ``mkdocs build --strict`` (when the docs extra is installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scripts_module import load_script

from squeezedet.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").rglob("*.md"))
FILES = [ROOT / "README.md", *DOCS]
SHELL = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
NOT_RUN = "<!-- docs-test: not run"
SHELL_ENDS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "&", "<"}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def fenced_blocks(path: Path) -> list[tuple[str, int, str, str]]:
    """``(language, first line number, text, the line before the fence)`` of each fenced block."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start, before = m.group(2), i + 1, lines[i - 1].strip() if i else ""
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        assert j < len(lines), f"{_rel(path)}:{start}: a fenced block is never closed"
        blocks.append((lang, start + 1, "\n".join(lines[i + 1:j]), before))
        i = j + 1
    return blocks


def shell_commands(path: Path) -> list[tuple[str, list[str]]]:
    """``(where, arguments after 'squeezedet')`` of every command in the file's shell blocks."""
    found = []
    for lang, first, text, _ in fenced_blocks(path):
        if lang not in SHELL:
            continue
        joined = re.sub(r"\\\n", " ", text)  # continuation lines
        for k, line in enumerate(joined.splitlines()):
            tokens = shlex.split(line, comments=True)
            for n, tok in enumerate(tokens):
                if tok == "squeezedet" and (n == 0 or tokens[n - 1] != "pip"):
                    args = []
                    for t in tokens[n + 1:]:
                        if t in SHELL_ENDS:
                            break
                        args.append(t)
                    found.append((f"{_rel(path)}:{first + k}", args))
                    break
    return found


def inline_commands(path: Path) -> list[tuple[str, list[str]]]:
    """``(where, arguments)`` of each inline code span that starts with ``squeezedet``."""
    text = path.read_text()
    for _, _, block, _ in fenced_blocks(path):  # blank out the fenced blocks
        text = text.replace(block, "")
    found = []
    for m in re.finditer(r"(?<!`)`(squeezedet\s[^`]+)`(?!`)", text):
        line = text.count("\n", 0, m.start()) + 1
        if re.match(r"squeezedet\s+\S+:", m.group(1)):
            continue  # a message the command prints ("squeezedet train: error: ..."), not a command
        found.append((f"{_rel(path)}:{line}", shlex.split(m.group(1).replace("\n", " "))[1:]))
    return found


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


SUBPARSERS = _subparsers()
SHELL_CASES = [c for f in FILES for c in shell_commands(f)]
INLINE_CASES = [c for f in FILES for c in inline_commands(f)]


def _flags_known(where: str, args: list[str]) -> None:
    assert args, f"{where}: 'squeezedet' without a subcommand"
    sub = args[0]
    assert sub in SUBPARSERS, f"{where}: 'squeezedet {sub}' is not a command ({', '.join(SUBPARSERS)})"
    known = SUBPARSERS[sub]._option_string_actions
    for arg in args[1:]:
        if arg.startswith("-") and not re.fullmatch(r"-\d.*", arg):
            flag = arg.split("=", 1)[0]
            assert flag in known, f"{where}: 'squeezedet {sub}' has no option {flag}"


@pytest.mark.parametrize(("where", "args"), SHELL_CASES, ids=[w for w, _ in SHELL_CASES])
def test_every_shell_command_parses(where: str, args: list[str]) -> None:
    _flags_known(where, args)
    parser = build_parser()
    try:
        ns = parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: argparse rejects 'squeezedet {shlex.join(args)}' (see above)")
    overrides = getattr(ns, "overrides", None)
    if overrides:  # key=value settings of train and demo: real setting names and values
        from squeezedet.config import load_config

        load_config(None, overrides)


@pytest.mark.parametrize(("where", "args"), INLINE_CASES, ids=[w for w, _ in INLINE_CASES])
def test_every_inline_command_names_a_real_subcommand_and_flags(where: str, args: list[str]) -> None:
    _flags_known(where, args)


def test_the_docs_show_commands_at_all() -> None:
    """The extraction finds what is there (a broken regex would make every test above vacuous)."""
    readme = [args[0] for w, args in SHELL_CASES if w.startswith("README.md")]
    assert {"demo", "predict", "train", "split", "evaluate", "anchors", "convert"} <= set(readme)
    assert len(SHELL_CASES) > 40 and len(INLINE_CASES) > 10


def test_a_wrong_flag_is_caught() -> None:
    with pytest.raises(AssertionError, match="has no option --weigths"):
        _flags_known("x.md:1", ["predict", "--weigths", "a.pt", "--source", "b"])
    with pytest.raises(AssertionError, match="is not a command"):
        _flags_known("x.md:1", ["predcit"])


def test_every_fenced_block_names_its_language() -> None:
    """So that the tests know which blocks are commands, which are Python, which are output."""
    bare = [f"{_rel(f)}:{first - 1}" for f in FILES for lang, first, _, _ in fenced_blocks(f)
            if not lang]
    assert not bare, f"fenced blocks without a language (bash, python, text, …): {bare}"


# --- Python blocks -------------------------------------------------------------------------------

PY_CASES = [(f"{_rel(f)}:{first}", text, before) for f in FILES
            for lang, first, text, before in fenced_blocks(f) if lang == "python"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the snippets refer to: a tiny model at runs/demo/train/best.pt, photo.png, a tiny
    KITTI data set at data/kitti, and its labels as result files in runs/kitti/val_results."""
    import torch
    from tiny_data import make_tiny_kitti

    from squeezedet.checkpoint import save_checkpoint
    from squeezedet.models import create_model

    root = tmp_path_factory.mktemp("docs")
    torch.manual_seed(0)
    model = create_model("squeezedet", input_size=(128, 64)).eval()
    best = root / "runs" / "demo" / "train" / "best.pt"
    best.parent.mkdir(parents=True)
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, best)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)).save(root / "photo.png")
    kitti = make_tiny_kitti(root / "data" / "kitti")
    results = root / "runs" / "kitti" / "val_results"
    results.mkdir(parents=True)
    for label in sorted((kitti / "training" / "label_2").glob("*.txt")):
        lines = [line + " 1.0" for line in label.read_text().splitlines() if line]
        (results / label.name).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize(("where", "code", "before"), PY_CASES, ids=[w for w, _, _ in PY_CASES])
def test_every_python_block_runs(where: str, code: str, before: str, workdir: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    if before.startswith(NOT_RUN):
        assert re.match(r"<!-- docs-test: not run \(.+\) -->$", before), \
            f"{where}: say why a block is not run: <!-- docs-test: not run (reason) -->"
        pytest.skip(f"{where}: {before}")
    monkeypatch.chdir(workdir)
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})


def test_python_blocks_are_found() -> None:
    assert any(w.startswith("README.md") for w, _, _ in PY_CASES)


# --- the README ----------------------------------------------------------------------------------

def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_links_point_at_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    missing = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
               if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_command_list_names_every_command() -> None:
    listed = {args[0] for lang, _, text, _ in fenced_blocks(ROOT / "README.md") if lang == "text"
              for args in [line.split()[1:2] for line in text.splitlines()
                           if line.startswith("squeezedet ")] if args}
    assert listed == set(COMMANDS), (f"README's command list lacks {set(COMMANDS) - listed} and "
                                     f"names unknown {listed - set(COMMANDS)}")


def test_docs_say_nothing_that_only_makes_sense_on_the_projects_machines() -> None:
    words = re.compile(r"\b(narrowed|unnarrowed|the probe|today|yesterday|this VM|this project's"
                       r"|(?-i:LADDER))\b|/work/|\.\./shared|samples/kitti", re.IGNORECASE)
    hits = [f"{_rel(f)}:{n}: {m.group(0)}" for f in FILES
            for n, line in enumerate(f.read_text().splitlines(), 1) for m in [words.search(line)]
            if m]
    assert not hits, f"machine-specific or relative wording: {hits}"


# --- generated tables and the site ---------------------------------------------------------------

def test_benchmark_tables_match_their_json_files() -> None:
    generated = load_script("benchmark_tables").generate()
    for path, text in generated.items():
        assert path.read_text() == text, (f"{_rel(path)} differs from docs/benchmarks/*.json: "
                                          "run python scripts/benchmark_tables.py")


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    needed = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
    missing = [m for m in needed if importlib.util.find_spec(m.split(".")[0]) is None
               or (m == "mkdocstrings_handlers.python" and not _has("mkdocstrings_handlers.python"))]
    if missing:
        pytest.skip(f"the docs extra is not installed ({', '.join(missing)} missing): "
                    "pip install -e '.[docs]'")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
