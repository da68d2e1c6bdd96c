"""docs/video.md's speed tables are what scripts/video_speed.py makes of the committed JSON files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_video_speed_tables_match_their_json_files() -> None:
    spec = importlib.util.spec_from_file_location("video_speed", ROOT / "scripts" / "video_speed.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = (ROOT / "docs" / "video.md").read_text()
    files = sorted((ROOT / "docs" / "benchmarks" / "video").glob("*.json"))
    assert files
    for path in files:
        table = module.format_table(json.loads(path.read_text())["rows"])
        assert f"<!-- video-table:{path.stem} -->\n{table}\n" in page, (
            f"docs/video.md's table of {path.name} is out of date: python scripts/video_speed.py "
            f"--table {path.relative_to(ROOT)}")
