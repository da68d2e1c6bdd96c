"""docs/video.md's speed tables are what scripts/video_speed.py makes of the committed JSON files."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from scripts_module import load_script, stale_tables

from squeezedet.checkpoint import model_from_checkpoint


def test_video_speed_tables_match_their_json_files() -> None:
    stale = stale_tables("video_speed", "video.md", "video", "video-table", "rows")
    assert not stale, f"docs/video.md's tables are out of date: {stale}"


def test_video_speed_input_size_is_read_as_width_by_height(tmp_path: Path) -> None:
    script = load_script("video_speed")
    assert script._size("624x192") == (624, 192)
    with pytest.raises(argparse.ArgumentTypeError, match="'624' is not a size WxH"):
        script._size("624")
    weights = script.random_checkpoint(tmp_path, (624, 192))
    assert weights.name == "random_624x192.pt"
    model = model_from_checkpoint(weights)
    assert tuple(model.input_size) == (624, 192)  # (W, H), not the paper's 1248x384
