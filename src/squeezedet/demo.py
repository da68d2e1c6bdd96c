"""The demo pipeline behind ``squeezedet demo`` (its ``--help`` describes the steps, the outputs
and the recipe): :func:`run_demo` with :class:`DemoOptions`."""

from __future__ import annotations

import glob
import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from squeezedet.cpu import usable_cores
from squeezedet.demo_recipe import (
    CHOICE_ALLOWANCE_S,
    LADDER,
    PROBE_IMAGES,
    TARGET_STEPS,
    TOTAL_MINUTES,
    Recipe,
    choose_recipe,
    finish_seconds,
    training_minutes,
)
from squeezedet.errors import SqueezeDetError, check_output_dir

if TYPE_CHECKING:
    from squeezedet.config import TrainConfig
    from squeezedet.train import TrainResult

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class DemoOptions:
    """The ``squeezedet demo`` settings (see its ``--help``)."""

    out: str = "runs/demo"
    images: list[str] = field(default_factory=list)
    #: training minutes; ``None``: what :attr:`total_minutes` leaves (:func:`training_minutes`)
    minutes: float | None = None
    #: the whole demo's time budget, drawing the scenes and the final evaluation included
    total_minutes: float = TOTAL_MINUTES
    num_images: int = 1600
    size: str = "624x192"
    seed: int = 0
    retrain: bool = False
    quiet: bool = False
    fixed_recipe: bool = False
    overrides: list[str] = field(default_factory=list)


def data_workers() -> int:
    """DataLoader worker processes for the demo's training: none on two cores or fewer, else one.

    With two cores PyTorch's two threads already occupy both, and a worker's augmentation (about
    28 ms of CPU for a 624x192 batch of 8) makes them wait for each other: loading in the
    training process measured 5 % faster at 624x192/8 (41.7 against 39.7 img/s, AMX) and at
    432x128/4 narrowed to AVX2 (31.0 against 29.4), the same batches either way.
    """
    return 0 if usable_cores() <= 2 else 1


def demo_config(size: tuple[int, int], minutes: float, seed: int, overrides: list[str],
                anchors: tuple[tuple[float, float], ...] | None = None):  # noqa: ANN201
    """The demo's training configuration (see the module docstring)."""
    from squeezedet.config import TrainConfig, load_config

    base = TrainConfig(
        # the demo's own recipe, given in full: no recipe chosen from the data on top of it
        recipe="paper",
        model="squeezedet", input_size=size, anchors=anchors, optimizer="adamw", lr=1e-3,
        warmup_steps=100, lr_schedule="cosine", ema_decay=0.995, cache_images=True,
        lr_decay_steps=100_000, batch_size=8, dropout=0.2, squeeze_bn=True,
        workers=data_workers(),
        time_limit_min=minutes,
        checkpoint_every=100, log_every=10, val_every=0, seed=seed,
        drift=(int(150 * size[0] / 1242), int(100 * size[1] / 375)),
    )
    return load_config(None, overrides, base=base)


def _gather_images(specs: list[str]) -> list[Path]:
    found: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            # the folder's images, else those of its sub-folders
            inside = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES) or sorted(
                q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not inside:
                raise SqueezeDetError(f"--images {spec}: no {'/'.join(IMAGE_SUFFIXES)} images in "
                                      "this folder or its sub-folders")
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(spec))
            if not matches:
                raise SqueezeDetError(f"--images {spec}: no such file, folder or glob match")
            found += [m for m in matches if m.suffix.lower() in IMAGE_SUFFIXES]
    return found


def run_demo(options: DemoOptions) -> float:
    """Run the demo (module docstring), printing its progress and closing report; returns the
    mean moderate AP_R40 over the classes."""
    from squeezedet.data.synth import SceneMix, generate_dataset

    t0 = time.monotonic()
    size = _checked_size(options)
    photos = _gather_images(options.images)
    out = check_output_dir(options.out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "train"
    print("[1/4] synthetic data", flush=True)
    recipe: Recipe | None = None  # chosen now, for a new run
    if (run_dir / "last.pt").exists() and not options.retrain and (run_dir / "config.yaml").exists():
        # resume or reuse: the run's own scenes and configuration (key=value given now on top)
        from squeezedet.config import load_config

        data, scenes = _saved_scenes(out, size)
        cfg = load_config(run_dir / "config.yaml", list(options.overrides))
        print(f"      the run in {run_dir} keeps its scenes and settings ({RECIPE_FILE}, "
              "train/config.yaml; --retrain starts anew)")
    else:
        recipe, probe_s = _choose_recipe(out, size, options, t0)
        scenes = (recipe.size, recipe.density)
        data = _data_dir(out, scenes, size)
    more = f", {scenes[1]:g}x the objects" if scenes[1] != 1 else ""
    print(f"      {options.num_images} scenes of {scenes[0][0]}x{scenes[0][1]}{more} -> {data}",
          flush=True)
    generate_dataset(data, options.num_images, options.seed, scenes[0],
                     progress=not options.quiet, scene=SceneMix(scenes[1]))
    if recipe is not None:
        cfg = _new_run_config(data, recipe, probe_s, options, t0)
        _save_scenes(out, data, scenes)
    trained = _train_or_reuse(out, cfg, data, scenes, recipe, options)
    return _report(out, data, cfg, trained, photos, options, t0)


def _checked_size(options: DemoOptions) -> tuple[int, int]:
    """The scene size, after checking the options and settings before anything is written."""
    from squeezedet.config import parse_size
    from squeezedet.data.synth import check_size

    size = parse_size(options.size, "--size")
    check_size(size)
    for name, value in (("--minutes", options.minutes), ("--total-minutes", options.total_minutes)):
        if value is not None and (not value > 0 or value == float("inf")):
            raise SqueezeDetError(f"{name} must be a positive number (got {value})")
    if options.num_images < 1:
        raise SqueezeDetError(f"--num-images must be at least 1 (got {options.num_images})")
    demo_config(size, options.minutes or options.total_minutes, options.seed,
                list(options.overrides))  # settings checked before anything is written
    return size


def _choose_recipe(out: Path, size: tuple[int, int], options: DemoOptions,
                   t0: float) -> tuple[Recipe, float]:
    """The recipe of a new run and the seconds spent choosing it: measured (the ladder, when
    the scene size is the default and neither input_size nor batch_size is given), else the
    default recipe with its batch from the configuration."""
    recipe = Recipe(size, 0, 0.0, False)
    if (options.fixed_recipe or size != LADDER[0][:2]
            or any(o.split("=")[0].strip() in ("input_size", "batch_size")
                   for o in options.overrides)):
        return recipe, 0.0
    start = time.monotonic()
    seconds = (options.minutes * 60 if options.minutes is not None else
               options.total_minutes * 60 - (start - t0) - CHOICE_ALLOWANCE_S)
    recipe = _measured_recipe(out, size, options, max(seconds, 60.0))
    return recipe, time.monotonic() - start


def _new_run_config(data: Path, recipe: Recipe, probe_s: float, options: DemoOptions,
                    t0: float) -> TrainConfig:
    """A new run's configuration: the recipe's size, batch and lr (key=value given now wins),
    anchors by k-means on the scenes, and the training minutes: ``--minutes`` less the probes,
    or what is left of ``--total-minutes`` after the reserve for the end."""
    anchors = _kmeans_anchors(data, recipe.size, options.seed)
    chosen = ([f"batch_size={recipe.batch}"] if recipe.batch else []) + (
        [f"lr={recipe.lr}"] if recipe.lr is not None else [])
    overrides = [*chosen, *options.overrides]
    if options.minutes is not None:  # the probes come out of the training time
        minutes = max(options.minutes - probe_s / 60, options.minutes / 2)
    else:
        settings = demo_config(recipe.size, 1.0, options.seed, overrides)
        val_images = _val_images(data)
        if settings.val_max_images is not None:
            val_images = min(val_images, settings.val_max_images)
        finish = finish_seconds(recipe.step_s if recipe.measured else None,
                                settings.batch_size, val_images)
        minutes = training_minutes(options.total_minutes, time.monotonic() - t0, finish)
    return demo_config(recipe.size, minutes, options.seed, overrides, anchors)


def _train_or_reuse(out: Path, cfg: TrainConfig, data: Path, scenes: tuple[tuple[int, int], float],
                    recipe: Recipe | None, options: DemoOptions) -> TrainResult | None:
    """Step 2: train (or resume) into ``out/train``; ``None`` when a finished run is reused.
    With ``--retrain`` an earlier run is kept as ``train.prev-N``."""
    from squeezedet.checkpoint import load_checkpoint
    from squeezedet.train import train

    run_dir = out / "train"
    finished = False
    if (run_dir / "last.pt").exists():
        if options.retrain:
            n = 1
            while (out / f"train.prev-{n}").exists():
                n += 1
            run_dir.rename(out / f"train.prev-{n}")
            print(f"      previous run kept as {out / f'train.prev-{n}'}")
        else:
            finished = bool(load_checkpoint(run_dir / "last.pt").get("finished"))
    if finished:
        print(f"[2/4] reusing the finished training run in {run_dir} (--retrain to train again)")
        return None
    resume = (run_dir / "last.pt").exists()
    w, h = cfg.input_size or scenes[0]
    print(f"[2/4] training SqueezeDet from scratch for {cfg.time_limit_min:.1f} min on "
          f"{_device_name(cfg)} at {w}x{h}, batch {cfg.batch_size}, lr {cfg.lr:g} -> "
          f"{run_dir}" + (" (resuming)" if resume else "") + (
              f"; what is left of the {options.total_minutes:g}-minute budget"
              if recipe is not None and options.minutes is None else ""), flush=True)
    return train(cfg, data, run_dir, resume=resume, progress=not options.quiet)


def _report(out: Path, data: Path, cfg: TrainConfig, trained: TrainResult | None,
            photos: list[Path], options: DemoOptions, t0: float) -> float:
    """Steps 3 and 4 and the closing report: the AP table, curves and drawn detections in
    ``out``; returns the mean moderate AP_R40 over the classes."""
    run_dir, progress = out / "train", not options.quiet
    print("[3/4] KITTI evaluation on the synthetic validation split", flush=True)
    last = trained.last_result if trained is not None else None
    if trained is not None and last is not None and trained.best_map == last.map_r40:
        result = last  # training's final validation already scored best.pt: no second pass
    else:
        result = _evaluate(run_dir, data, cfg, progress)
    metrics = result.to_json()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    table = result.format_table()
    if result.errors:
        from squeezedet.eval.error_analysis import format_errors

        table += "\n\n" + format_errors(result.errors)
    (out / "ap_table.txt").write_text(table + "\n")
    curves = _plots(result, out / "pr_curves")
    if (run_dir / "training_curves.png").exists():
        shutil.copyfile(run_dir / "training_curves.png", out / "training_curves.png")

    print("[4/4] drawing detections", flush=True)
    drawn = _draw(run_dir, data, photos, out / "detections")

    print()
    print(table)
    moderate = [metrics["AP_R40"][c]["moderate"] for c in result.classes]
    print(f"\nmean moderate AP_R40 over {', '.join(result.classes)}: "
          f"{sum(moderate) / len(moderate):.2f}")
    print(f"\ndemo finished in {(time.monotonic() - t0) / 60:.1f} min. Outputs in {out}/:")
    print("  metrics.json, ap_table.txt      the AP table (R40 and R11) and error analysis")
    if curves:
        print(f"  pr_curves/                      {len(curves)} precision-recall plots")
    if (out / "training_curves.png").exists():
        print("  training_curves.png             loss and validation AP during training")
    print(f"  detections/                     {drawn} drawn images")
    print(f"  train/best.pt                   the model: squeezedet predict --weights "
          f"{run_dir / 'best.pt'} --source YOUR_IMAGES")
    return sum(moderate) / len(moderate)


def _measured_recipe(out: Path, size: tuple[int, int], options: DemoOptions,
                     seconds: float) -> Recipe:
    """The recipe :func:`choose_recipe` picks for this machine and ``seconds`` of training, timed
    on a few scenes drawn for the purpose (then deleted); prints what it measured and chose."""
    from squeezedet.data.synth import generate_dataset
    from squeezedet.train import measure_step_seconds

    probe = out / "probe-scenes"
    if probe.exists():
        shutil.rmtree(probe)
    generate_dataset(probe, PROBE_IMAGES, options.seed, size, progress=False)
    base = demo_config(size, seconds / 60, options.seed, list(options.overrides))

    def measure(net: tuple[int, int], batch: int) -> float:
        return measure_step_seconds(replace(base, input_size=net, batch_size=batch), probe)

    try:
        recipe, probes = choose_recipe(measure, seconds)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    timed = "; ".join(f"{r.size[0]}x{r.size[1]} batch {r.batch}: {r.step_s:.2f} s a step, "
                      f"~{r.steps(seconds):,} steps" for r in probes)
    print(f"      speed: {timed}")
    if (recipe.size, recipe.batch, recipe.density) != (size, base.batch_size, 1.0):
        denser = (f", with {recipe.density:g}x the objects in each scene"
                  if recipe.density != 1 else "")
        print(f"      this machine is slower than the demo's reference (~{TARGET_STEPS:,} steps "
              f"of batch {base.batch_size} at {size[0]}x{size[1]}): training at "
              f"{recipe.size[0]}x{recipe.size[1]}, batch {recipe.batch} on scenes drawn at "
              f"that size{denser} (--fixed-recipe keeps the default)")
    return recipe


def _data_dir(out: Path, scenes: tuple[tuple[int, int], float], size: tuple[int, int]) -> Path:
    """``out/data`` for the default scenes (``--size``, density 1), a folder named after the
    others' size and density."""
    (w, h), density = scenes
    if (w, h) == size and density == 1:
        return out / "data"
    return out / f"data-{w}x{h}-x{density:g}"


RECIPE_FILE = "recipe.json"


def _save_scenes(out: Path, data: Path, scenes: tuple[tuple[int, int], float]) -> None:
    """Record which scenes the run in ``out/train`` trains on (its settings are in its
    ``config.yaml``), so that resuming or reusing it takes the same."""
    text = json.dumps({"data": data.name, "size": list(scenes[0]), "density": scenes[1]},
                      indent=2)
    tmp = out / (RECIPE_FILE + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(out / RECIPE_FILE)


def _saved_scenes(out: Path, size: tuple[int, int]) -> tuple[Path, tuple[tuple[int, int], float]]:
    """The data folder and ``((W, H), density)`` of the scenes :func:`_save_scenes` recorded;
    for a run of a version that recorded none, ``out/data`` at ``size``, density 1 (those
    always drew their scenes there)."""
    from squeezedet.data.synth import SceneMix

    path = out / RECIPE_FILE
    if not path.exists():
        return out / "data", (size, 1.0)
    try:
        saved = json.loads(path.read_text())
        name = str(saved["data"])
        if not name.startswith("data") or Path(name).name != name:
            raise ValueError(f"data folder {name!r} is not a folder name beside it")
        w, h = (int(v) for v in saved["size"])
        mix = SceneMix(float(saved["density"]))
        return out / name, ((w, h), mix.density)
    except (OSError, ValueError, KeyError, TypeError, SqueezeDetError) as exc:
        raise SqueezeDetError(f"{path}: unreadable ({exc}); delete it together with "
                              f"{out / 'train'} to start the demo's training again") from None


def _kmeans_anchors(data: Path, size: tuple[int, int], seed: int) -> tuple[tuple[float, float], ...]:
    """Nine anchor shapes fitted to the synthetic training boxes (k-means, 1 − IoU)."""
    from squeezedet.data.box_statistics import training_box_sizes
    from squeezedet.ops.anchors import KITTI_ANCHOR_INPUT_SIZE, KITTI_ANCHOR_SHAPES, scale_anchor_shapes
    from squeezedet.ops.kmeans import kmeans_anchors, mean_best_iou

    wh = training_box_sizes(data, size, data_format="kitti",
                            classes=("Car", "Pedestrian", "Cyclist"))
    shapes, fit = kmeans_anchors(wh, 9, seed=seed)
    default = mean_best_iou(wh, scale_anchor_shapes(KITTI_ANCHOR_SHAPES, KITTI_ANCHOR_INPUT_SIZE, size))
    print(f"      anchors: 9 k-means shapes, mean best IoU {fit:.3f} (KITTI defaults: {default:.3f})")
    return tuple((float(w), float(h)) for w, h in shapes)


def _device_name(cfg: TrainConfig) -> str:
    """``CUDA`` or ``CPU``, with the mixed precision the training steps use."""
    from squeezedet.engine import mixed_precision, resolve_device

    device = resolve_device(cfg.device)
    dtype = mixed_precision(device, cfg.amp, training=True)
    name = "CUDA" if device.type == "cuda" else "CPU"
    return f"{name} ({dtype.replace('bfloat16', 'bf16').replace('float16', 'fp16')} autocast)" \
        if dtype else name


def _best_checkpoint(run_dir: Path) -> Path:
    return run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"


def _evaluate(run_dir: Path, data: Path, cfg, progress: bool):  # noqa: ANN001, ANN202
    from squeezedet.checkpoint import model_from_checkpoint
    from squeezedet.data.kitti import KittiDataset
    from squeezedet.engine import evaluate, resolve_device

    model = model_from_checkpoint(_best_checkpoint(run_dir))
    device = resolve_device(cfg.device)
    model = model.to(device)
    val = KittiDataset(data, cfg.val_split, model.class_names, model.input_size, train=False)
    return evaluate(model, val, cfg, device, run_dir / "val_results", progress=progress)


def _val_images(data: Path) -> int:
    """How many images the validation split of the demo's data set ``data`` holds."""
    from squeezedet.data.kitti import read_split_file

    return len(read_split_file(data / "ImageSets" / "val.txt"))


def _plots(result, out_dir: Path) -> list[Path]:  # noqa: ANN001
    try:
        from squeezedet.eval.plots import plot_pr_curves

        return plot_pr_curves(result, out_dir)
    except SqueezeDetError as exc:  # matplotlib missing
        print(f"      no PR curves: {exc}")
        return []


def _draw(run_dir: Path, data: Path, photos: list[Path], out_dir: Path, n_val: int = 8) -> int:
    from squeezedet.data.kitti import read_split_file
    from squeezedet.inference.detector import Detector

    det = Detector.from_checkpoint(_best_checkpoint(run_dir), backend="torch", conf=0.4)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [i for i, _ in read_split_file(data / "ImageSets" / "val.txt")][:n_val]
    paths = [data / "training" / "image_2" / f"{i}.png" for i in ids]
    count = 0
    for path, d in zip(paths, det(paths), strict=True):
        d.plot().save(out_dir / f"val_{path.stem}.png")
        count += 1
    if photos:
        (out_dir / "photos").mkdir(exist_ok=True)
        for path in photos:
            try:
                photo = det([path])[0]
            except SqueezeDetError as exc:
                print(f"      skipped {path}: {exc}")
                continue
            photo.plot().save(out_dir / "photos" / f"{path.stem}.png")
            count += 1
    return count
