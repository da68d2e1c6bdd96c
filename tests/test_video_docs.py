"""docs/video.md's speed tables are what scripts/video_speed.py makes of the committed JSON files."""

from __future__ import annotations

from scripts_module import stale_tables


def test_video_speed_tables_match_their_json_files() -> None:
    stale = stale_tables("video_speed", "video.md", "video", "video-table", "rows")
    assert not stale, f"docs/video.md's tables are out of date: {stale}"
