"""The one parser of ``WxH`` sizes (squeezedet.config.parse_size), and the settings that use it."""

from __future__ import annotations

import pytest

from squeezedet.cli import main
from squeezedet.config import load_config, parse_size
from squeezedet.errors import SqueezeDetError


@pytest.mark.parametrize("text, size", [
    ("1248x384", (1248, 384)),
    ("1248X384", (1248, 384)),
    (" 624 x 192 ", (624, 192)),
    ("1x1", (1, 1)),
])
def test_parse_size(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1248", "0x5", "5x0", "axb", "1248x", "x384", "1248x384x3",
                                  "-1248x384", "1248*384", "12.5x384", ""])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(SqueezeDetError) as info:
        parse_size(text, "--input-size")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--input-size must be ")
    assert repr(text) in message


def test_parse_size_minimum() -> None:
    assert parse_size("16x16", minimum=16) == (16, 16)
    with pytest.raises(SqueezeDetError, match="at least 16x16"):
        parse_size("16x15", minimum=16)
    assert parse_size("0x0", minimum=0) == (0, 0)


def test_settings_read_sizes_with_parse_size() -> None:
    """``input_size=624X192`` (either x) is (624, 192); a size without a second side is an error
    naming the setting."""
    assert load_config(overrides=["input_size=624X192"]).input_size == (624, 192)
    assert load_config(overrides=["drift=0x0"]).drift == (0, 0)
    with pytest.raises(SqueezeDetError, match="input_size"):
        load_config(overrides=["input_size=624x"])


@pytest.mark.parametrize("argv", [
    ["info", "--input-size", "624y192"],
    ["anchors", "--data", "nowhere", "--input-size", "624y192"],
    ["import-weights", "--from", "original", "nowhere", "--out", "m.pt", "--input-size", "624y192"],
])
def test_commands_share_the_message(argv: list[str], capsys: pytest.CaptureFixture[str],
                                    tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("error: --input-size must be WIDTHxHEIGHT, e.g. 1248x384 (got '624y192')")
    assert "\n" not in err
