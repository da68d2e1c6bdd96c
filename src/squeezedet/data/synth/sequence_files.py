"""Synthetic sequences on disk, in KITTI tracking's layout::

    DIR/training/image_02/0000/000000.png ...   the frames of sequence 0000 (10 per second)
    DIR/training/label_02/0000.txt ...          its labels with track ids (KITTI tracking format)
    DIR/synth_sequences.json                    the generator's parameters

Sequence ``i`` of seed ``S`` is :func:`.sequence.frames` ``(S, i, ...)``: the same seed gives the
same files, and a set of 2 sequences is the first 2 of one of 5.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from squeezedet.data.kitti_tracking import TrackedObject, write_tracking_file
from squeezedet.data.synth.dataset import check_size
from squeezedet.data.synth.objects import STANDARD_MIX, SceneMix
from squeezedet.data.synth.sequence import FPS, frames
from squeezedet.errors import SqueezeDetError, check_output_dir

MANIFEST = "synth_sequences.json"
GENERATOR = "squeezedet.data.synth.sequence"
VERSION = 1
MAX_SEQUENCES = 9999
MAX_FRAMES = 999_999


def sequence_paths(out: str | Path, index: int) -> tuple[Path, Path]:
    """``(frame folder, label file)`` of sequence ``index`` under ``out``."""
    out = Path(out)
    return (out / "training" / "image_02" / f"{index:04d}",
            out / "training" / "label_02" / f"{index:04d}.txt")


def _params(n_sequences: int, n_frames: int, seed: int, size: tuple[int, int],
            scene: SceneMix) -> dict:
    return {"generator": GENERATOR, "version": VERSION, "sequences": n_sequences,
            "frames": n_frames, "fps": FPS, "seed": seed, "size": [size[0], size[1]],
            "density": scene.density}


def _check(n_sequences: int, n_frames: int, seed: int, size: tuple[int, int]) -> None:
    for name, value, top in (("sequences", n_sequences, MAX_SEQUENCES),
                             ("frames", n_frames, MAX_FRAMES)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise SqueezeDetError(f"the number of {name} must be a whole number in 1..{top}, "
                                  f"got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SqueezeDetError(f"the seed must be a whole number >= 0, got {seed!r}")
    check_size((int(size[0]), int(size[1])))


def _manifest(out: Path) -> dict | None:
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("generator") == GENERATOR else None


def sequences_current(out: str | Path, n_sequences: int, n_frames: int, seed: int,
                      size: tuple[int, int] = (1242, 375), scene: SceneMix = STANDARD_MIX) -> bool:
    """Whether ``out`` already holds the complete set of sequences these parameters would write."""
    out = Path(out)
    old = _manifest(out)
    if old is None or old.get("complete") is not True:
        return False
    if {k: v for k, v in old.items() if k != "complete"} != _params(n_sequences, n_frames, seed,
                                                                       size, scene):
        return False
    return all(sequence_paths(out, i)[1].is_file() for i in range(n_sequences))


def generate_sequences(out: str | Path, n_sequences: int, n_frames: int, seed: int,
                       size: tuple[int, int] = (1242, 375), scene: SceneMix = STANDARD_MIX,
                       progress: bool = True, overwrite: bool = False) -> Path:
    """Write ``n_sequences`` synthetic sequences of ``n_frames`` frames of ``size = (W, H)`` under
    ``out`` (layout in the module docstring). Nothing is written when ``out`` already holds exactly
    these; a folder holding anything else is refused unless ``overwrite`` (the generator's files
    are then rewritten, others left alone). Returns ``out``."""
    out = Path(out)
    _check(n_sequences, n_frames, seed, size)
    params = _params(n_sequences, n_frames, seed, (int(size[0]), int(size[1])), scene)
    check_output_dir(out, "--out")
    if not overwrite and sequences_current(out, n_sequences, n_frames, seed, size, scene):
        return out
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        old = _manifest(out)
        if old is None or {k: v for k, v in old.items() if k != "complete"} != params:
            raise SqueezeDetError(f"{out} already holds other files; choose an empty or new folder, "
                                  "or pass --overwrite to rewrite the generator's files there")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps({**params, "complete": False}, indent=2) + "\n")
    with tqdm(total=n_sequences * n_frames, desc="synth", unit="frame", disable=not progress,
              dynamic_ncols=True) as bar:
        for i in range(n_sequences):
            image_dir, label_file = sequence_paths(out, i)
            image_dir.mkdir(parents=True, exist_ok=True)
            label_file.parent.mkdir(parents=True, exist_ok=True)
            rows: list[TrackedObject] = []
            for f, (img, labels) in enumerate(frames(seed, i, n_frames, size, scene)):
                img.save(image_dir / f"{f:06d}.png", format="PNG", compress_level=1)
                rows += labels
                bar.update(1)
            write_tracking_file(label_file, rows)
    (out / MANIFEST).write_text(json.dumps({**params, "complete": True}, indent=2) + "\n")
    return out
