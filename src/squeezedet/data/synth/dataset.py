"""Synthetic data sets in KITTI's layout: ``N`` scenes of :func:`render_scene` written as ::

    DIR/training/image_2/000000.png ...     RGB images
    DIR/training/label_2/000000.txt ...     KITTI labels (15 fields, DontCare included)
    DIR/ImageSets/train.txt, val.txt        a deterministic split of the image ids
    DIR/synth.json                          the generator's parameters (seed, size, count ...)

Determinism: image ``i`` of the data set with seed ``S`` is ``render_scene([S, i], size, scene)``,
so the same seed gives byte-identical files (however many processes draw them) and a data set
of 10 images is the first 10 of one of 20.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from squeezedet.cpu import usable_cores
from squeezedet.data.kitti_format import write_kitti_file
from squeezedet.data.synth.objects import STANDARD_MIX, SceneMix
from squeezedet.data.synth.scene import render_scene
from squeezedet.errors import SqueezeDetError, check_output_dir

GENERATOR_VERSION = 1
MANIFEST = "synth.json"
MIN_SIZE = (64, 32)
MAX_SIZE = (8192, 8192)
MAX_IMAGES = 999_999
#: the manifest's ``generator``: the generator's name when manifests were first written, kept so
#: that data sets written before stay current
GENERATOR = "squeezedet.data.synth"


def check_size(size: tuple[int, int]) -> None:
    """A :class:`SqueezeDetError` unless ``size = (W, H)`` is within the generator's range."""
    w, h = size
    if not (MIN_SIZE[0] <= w <= MAX_SIZE[0] and MIN_SIZE[1] <= h <= MAX_SIZE[1]):
        raise SqueezeDetError(
            f"image size {w}x{h} is out of range: width {MIN_SIZE[0]}..{MAX_SIZE[0]}, "
            f"height {MIN_SIZE[1]}..{MAX_SIZE[1]} pixels"
        )


def split_ids(n_images: int, seed: int, val_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic ``(train ids, val ids)`` (sorted, six digits) of ``n_images`` images.

    ``round(n * val_fraction)`` images chosen by a permutation seeded with ``seed`` go to val,
    at least one when ``val_fraction > 0`` and ``n >= 2``, and never all of them.
    """
    n_val = int(round(n_images * val_fraction))
    if val_fraction > 0 and n_images >= 2:
        n_val = min(max(n_val, 1), n_images - 1)
    n_val = min(n_val, max(n_images - 1, 0))
    order = np.random.default_rng([seed, 0, 1]).permutation(n_images)
    val = set(order[:n_val].tolist())
    ids = [f"{i:06d}" for i in range(n_images)]
    train = [s for i, s in enumerate(ids) if i not in val]
    return train, [s for i, s in enumerate(ids) if i in val]


def _params(n_images: int, seed: int, size: tuple[int, int], val_fraction: float,
            scene: SceneMix = STANDARD_MIX) -> dict:
    params = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "images": n_images,
        "seed": seed,
        "size": [size[0], size[1]],
        "val_fraction": val_fraction,
    }
    if not scene.is_default:  # standard sets keep the manifest they always had
        params["density"] = scene.density
    return params


def _read_manifest(out: Path) -> dict | None:
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("generator") == GENERATOR \
        else None


#: image count from which :func:`generate_dataset` draws in one process per core by default
PARALLEL_FROM = 200
#: scenes a worker process draws per task
CHUNK = 25


def _draw_scenes(out: Path, seed: int, size: tuple[int, int], scene: SceneMix, start: int,
                 stop: int) -> int:
    """Draw and write scenes ``start .. stop - 1`` of the data set; returns how many."""
    for i in range(start, stop):
        img, labels = render_scene([seed, i], size, scene)
        img_path, label_path = _paths(out, i)
        img.save(img_path, format="PNG", compress_level=1)
        write_kitti_file(label_path, labels)
    return stop - start


def _draw_in_processes(out: Path, seed: int, size: tuple[int, int], scene: SceneMix,
                       n_images: int, workers: int, bar: tqdm) -> None:
    """:func:`_draw_scenes` over all images in ``workers`` forked processes, :data:`CHUNK` at a
    time. Forked as PyTorch's DataLoader forks its workers: the scenes need only NumPy and
    Pillow, never the parent's thread pools, and a fork (unlike a spawn) does not re-run the
    caller's script, which may lack an ``if __name__ == "__main__"`` guard."""
    import warnings
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with warnings.catch_warnings():  # Python 3.12+ warns of forking a process with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            jobs = [pool.submit(_draw_scenes, out, seed, size, scene, start,
                                min(start + CHUNK, n_images))
                    for start in range(0, n_images, CHUNK)]
            try:
                for job in as_completed(jobs):
                    bar.update(job.result())
            except BaseException:  # an error or Ctrl-C: no more scenes; the manifest says unfinished
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def _paths(out: Path, i: int) -> tuple[Path, Path]:
    return (out / "training" / "image_2" / f"{i:06d}.png",
            out / "training" / "label_2" / f"{i:06d}.txt")


def is_current(
    out: str | Path, n_images: int, seed: int, size: tuple[int, int] = (1242, 375),
    val_fraction: float = 0.25, scene: SceneMix = STANDARD_MIX,
) -> bool:
    """Whether ``out`` already holds the complete data set these parameters would write."""
    out = Path(out)
    manifest = _read_manifest(out)
    if manifest is None or not manifest.get("complete"):
        return False
    if {k: v for k, v in manifest.items() if k != "complete"} != _params(
        n_images, seed, tuple(size), float(val_fraction), scene  # type: ignore[arg-type]
    ):
        return False
    sets = out / "ImageSets"
    return (sets / "train.txt").is_file() and (sets / "val.txt").is_file() and all(
        p.is_file() for i in range(n_images) for p in _paths(out, i)
    )


def generate_dataset(
    out: str | Path,
    n_images: int,
    seed: int,
    size: tuple[int, int] = (1242, 375),
    val_fraction: float = 0.25,
    progress: bool = True,
    overwrite: bool = False,
    scene: SceneMix = STANDARD_MIX,
    workers: int | None = None,
) -> Path:
    """Write ``n_images`` synthetic scenes of ``size = (W, H)`` in KITTI's layout under ``out``.

    When ``out`` already holds exactly this data set (same parameters, complete) nothing is
    written. Otherwise ``out`` must be missing, empty, or hold an unfinished run of the same
    parameters; with ``overwrite`` any content is allowed: the generator's own files are
    rewritten (numbered files of an earlier, larger synthetic set are removed) and other files
    are never touched. ``scene`` sets how many objects a scene holds (:class:`SceneMix`; the
    default draws the standard scenes). ``workers`` processes draw the scenes (``None``: one per
    usable core for :data:`PARALLEL_FROM` images or more, else the calling process alone; forked,
    so one process where the OS cannot fork or the caller is itself a pool's daemonic worker);
    the files are the same byte for byte whatever their number. Returns ``out``.
    """
    out = Path(out)
    _check_arguments(n_images, seed, size, val_fraction, workers)
    size = (int(size[0]), int(size[1]))
    n_images, seed, val_fraction = int(n_images), int(seed), float(val_fraction)
    params = _params(n_images, seed, size, val_fraction, scene)

    check_output_dir(out, "--out")
    if is_current(out, n_images, seed, size, val_fraction, scene) and not overwrite:
        return out
    _start(out, params, overwrite)
    _draw_all(out, seed, size, scene, n_images, workers, progress)
    train, val = split_ids(n_images, seed, val_fraction)
    (out / "ImageSets" / "train.txt").write_text("".join(s + "\n" for s in train))
    (out / "ImageSets" / "val.txt").write_text("".join(s + "\n" for s in val))
    (out / MANIFEST).write_text(json.dumps({**params, "complete": True}, indent=2) + "\n")
    return out


def _check_arguments(n_images: int, seed: int, size: tuple[int, int], val_fraction: float,
                     workers: int | None) -> None:
    """A :class:`SqueezeDetError` naming the first of :func:`generate_dataset`'s arguments that
    is out of range."""
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise SqueezeDetError(f"the number of images must be a whole number >= 1, got {n_images!r}")
    if n_images > MAX_IMAGES:
        raise SqueezeDetError(f"at most {MAX_IMAGES} images (six-digit ids), got {n_images}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SqueezeDetError(f"the seed must be a whole number >= 0, got {seed!r}")
    if not (0.0 <= float(val_fraction) < 1.0):
        raise SqueezeDetError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    check_size((int(size[0]), int(size[1])))
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise SqueezeDetError(f"workers must be a whole number >= 1, got {workers!r}")


def _start(out: Path, params: dict, overwrite: bool) -> None:
    """Make ``out`` ready for the data set of ``params``: refuse a folder holding other files or
    another data set (unless ``overwrite``), write the manifest marked unfinished, and remove the
    numbered files of an earlier, larger synthetic set."""
    old = _read_manifest(out) if out.is_dir() else None
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        same_run = old is not None and {k: v for k, v in old.items() if k != "complete"} == params
        if not same_run:
            what = "a different synthetic data set" if old is not None else "other files"
            raise SqueezeDetError(
                f"{out} already holds {what}; choose an empty or new folder, or pass "
                f"--overwrite (overwrite=True) to rewrite the generator's files there"
            )

    for sub in ("training/image_2", "training/label_2", "ImageSets"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps({**params, "complete": False}, indent=2) + "\n")
    if old is not None and isinstance(old.get("images"), int):  # our older, larger set
        for i in range(params["images"], min(old["images"], MAX_IMAGES)):
            for p in _paths(out, i):
                p.unlink(missing_ok=True)


def _draw_all(out: Path, seed: int, size: tuple[int, int], scene: SceneMix, n_images: int,
              workers: int | None, progress: bool) -> None:
    """Draw and write every scene, in this process or in ``workers`` forked ones."""
    if workers is None:
        workers = usable_cores() if n_images >= PARALLEL_FROM else 1
    if ("fork" not in multiprocessing.get_all_start_methods()  # Windows
            or multiprocessing.current_process().daemon):  # a pool's worker may not have children
        workers = 1
    workers = min(workers, -(-n_images // CHUNK))
    with tqdm(total=n_images, desc="synth", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        if workers == 1:
            for i in range(n_images):
                bar.update(_draw_scenes(out, seed, size, scene, i, i + 1))
        else:
            _draw_in_processes(out, seed, size, scene, n_images, workers, bar)
