"""The command line's contract, as the README states it: every command has ``--help`` with
examples; bad input exits with 2 and one ``squeezedet <command>: error:`` line
(tests/test_bad_input.py), an interrupt with 130, and a bug keeps its traceback; ``train
--list-settings`` lists every setting, whose defaults are the original KITTI recipe."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import shlex

import pytest

from squeezedet.cli import COMMANDS, build_parser, main
from squeezedet.config import TrainConfig
from squeezedet.errors import SqueezeDetError


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def _examples(text: str) -> list[str]:
    """The command lines of a help text: lines starting with ``squeezedet COMMAND`` (after an
    optional ``example:``), joined with their continuation lines, comments dropped."""
    lines, out = text.splitlines(), []
    start = re.compile(r"^\s*(example:\s*)?(squeezedet (\S+).*)$", re.IGNORECASE)
    for i, line in enumerate(lines):
        m = start.match(line)
        if m is None or m.group(3) not in COMMANDS:
            continue
        command = m.group(2)
        while command.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command.rstrip()[:-1] + " " + lines[i].strip()
        out.append(command)
    return out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help_with_examples_that_parse(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(command, capsys)
    examples = _examples(text)
    assert any(e.split()[1] == command for e in examples), text
    parser = build_parser()
    for example in examples:
        # a line-ending backslash in a docstring must be doubled, or the lines run together
        assert not re.search(r"\S {3,}\S", example.split("#")[0]), example
        argv = shlex.split(example, comments=True)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"the example {example!r} of '{command} --help' does not parse: "
                        f"{capsys.readouterr().err}")


def test_no_command_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert re.search(rf"^\s+{re.escape(command)}\s", out, re.MULTILINE), command


def _command_raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    module = importlib.import_module(f"squeezedet.commands.{COMMANDS['split'][0]}")

    def run(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(module, "run", run)


def test_a_user_error_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _command_raising(monkeypatch, SqueezeDetError("data/x.txt:3: what to do"))
    assert main(["split", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "squeezedet split: error: data/x.txt:3: what to do\n"


def test_an_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    # a second stop signal during training raises KeyboardInterrupt (tests/test_preemption.py)
    _command_raising(monkeypatch, KeyboardInterrupt())
    assert main(["split", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "squeezedet split: interrupted\n"


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    _command_raising(monkeypatch, ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["split", str(tmp_path)])


def test_list_settings_shows_every_setting_and_the_original_recipe(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--list-settings"]) == 0
    settings = dict(line.split(" = ", 1) for line in capsys.readouterr().out.splitlines())
    assert set(settings) == {f.name for f in dataclasses.fields(TrainConfig)}
    # README, "Training on KITTI": SGD with momentum 0.9, lr 0.01 halved every 10,000 steps, batch
    # 20, weight decay 1e-4, per-tensor gradient clipping at 1.0, loss weights 5 / 75 / 100 / 1
    recipe = {"momentum": 0.9, "lr": 0.01, "lr_decay": 0.5, "lr_decay_steps": 10_000,
              "batch_size": 20, "weight_decay": 1e-4, "grad_clip": 1.0, "loss_bbox": 5,
              "loss_conf_pos": 75, "loss_conf_neg": 100, "loss_class": 1}
    assert {k: float(settings[k]) for k in recipe} == recipe
