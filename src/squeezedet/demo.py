"""The demo pipeline behind ``squeezedet demo`` (its ``--help`` describes the steps, the outputs
and the recipe): :func:`run_demo` with :class:`DemoOptions`."""

from __future__ import annotations

import glob
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from squeezedet.cpu import usable_cores
from squeezedet.errors import SqueezeDetError, check_output_dir

if TYPE_CHECKING:
    from squeezedet.config import TrainConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


#: optimiser steps the default recipe (624x192, batch 8) took in 16 minutes on the project's
#: AVX-512/bf16 CPU, where the demo reached mean moderate AP_R40 54-57 with 4,200-5,400 of them
TARGET_STEPS = 4500
#: below this many steps in the time budget the recipe adapts (loaded runs of the fast CPU took
#: 4,210)
MIN_STEPS = 3600
#: the recipes, in order: network input (W, H), batch, scene density and learning rate (None:
#: the demo's 1e-3). The scenes are drawn at the network's input size; the last recipe, for slow
#: machines, draws smaller scenes (a step costs about a quarter) with twice the objects (more to
#: learn from per step). With squeeze batch norm it keeps lr 1e-3 (AVX2-narrowed, 7.5 minutes:
#: 52.7 mean moderate AP_R40, against 50.0 at 5e-4 and 51.0 at 2e-3; without the norms 5e-4 had
#: been best)
LADDER: tuple[tuple[int, int, int, float, float | None], ...] = (
    (624, 192, 8, 1.0, None), (624, 192, 6, 1.0, None), (432, 128, 4, 2.0, None))
#: scenes drawn to time the training steps before the data set is chosen
PROBE_IMAGES = 12
#: the demo's whole time budget by default, minutes: it trains for what is left after timing
#: the machine and drawing the scenes, less :func:`finish_seconds`, so that even a first
#: ``make demo``, which installs the package before (about 1.5 minutes), ends within 20
TOTAL_MINUTES = 18.5
#: seconds the end of the demo takes besides validating (saving, plots, drawing detections)
FINISH_FIXED_S = 20.0
#: what a recipe choice assumes the scenes and the end will take, seconds (the recipe is chosen
#: before the scenes are drawn; the training time is worked out after)
CHOICE_ALLOWANCE_S = 90.0


def finish_seconds(step_s: float | None, batch: int, val_images: int) -> float:
    """What the demo reserves for its end after training, seconds: :data:`FINISH_FIXED_S` plus
    validating ``val_images`` at half a training step's time per ``batch`` images (a forward
    pass costs about a third of a step; decoding and NMS come on top: 400 images measured 8 s at
    a 0.18 s step of batch 4, against the 9 s reserved). Without a measured step (``step_s``
    None: the recipe was not timed) one minute."""
    if step_s is None:
        return 60.0
    return FINISH_FIXED_S + val_images * step_s / batch / 2


def training_minutes(total_min: float, elapsed_s: float, finish_s: float) -> float:
    """Training minutes left in a ``total_min`` budget after ``elapsed_s`` seconds, keeping
    ``finish_s`` for the end; at least a quarter of the budget (a budget already spent still
    trains, and the demo then overruns it)."""
    return max((total_min * 60 - elapsed_s - finish_s) / 60, total_min / 4)


@dataclass(frozen=True)
class Recipe:
    """A training recipe the demo may pick: network input size (= the size the scenes are drawn
    at), batch, scene density, learning rate (``None``: the configuration's), and the step time
    measured (``measured``) or projected from another recipe's by pixels × batch."""

    size: tuple[int, int]
    batch: int
    step_s: float
    measured: bool
    density: float = 1.0
    lr: float | None = None

    def steps(self, seconds: float) -> int:
        return int(seconds / self.step_s)


def choose_recipe(measure: Callable[[tuple[int, int], int], float], seconds: float,
                  ladder: Sequence[tuple[int, int, int, float, float | None]] = LADDER,
                  max_probes: int = 3) -> tuple[Recipe, list[Recipe]]:
    """The first recipe of ``ladder`` whose training steps fit :data:`MIN_STEPS` times into
    ``seconds``, and every recipe timed on the way.

    ``measure(size, batch)`` times a step of a recipe on this machine. The first recipe is
    always measured; when it fits, it is the choice (a fast machine keeps the default). Otherwise
    the next candidates are projected from the last measurement (step time proportional to
    pixels × batch), the first projected to fit :data:`MIN_STEPS` is measured, and so on (at most
    ``max_probes`` measurements); the last measured recipe is taken when none fits. Taking the
    first that fits keeps a machine on the default scenes whenever batch 6 fits.
    """
    w0, h0, b0, d0, lr0 = ladder[0]
    probes = [Recipe((w0, h0), b0, measure((w0, h0), b0), True, d0, lr0)]
    index = 0
    while probes[-1].steps(seconds) < MIN_STEPS and len(probes) < max_probes:
        last = probes[-1]
        cost = last.step_s / (last.size[0] * last.size[1] * last.batch)
        later = ladder[index + 1:]
        if not later:
            break
        pick = next((rung for rung in later
                     if seconds / (cost * rung[0] * rung[1] * rung[2]) >= MIN_STEPS), later[-1])
        index = ladder.index(pick)
        probes.append(Recipe(pick[:2], pick[2], measure(pick[:2], pick[2]), True, *pick[3:]))
    fitting = [r for r in probes if r.steps(seconds) >= MIN_STEPS]
    return (fitting[0] if fitting else probes[-1]), probes


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
    from squeezedet.checkpoint import load_checkpoint
    from squeezedet.config import parse_size
    from squeezedet.data.synth import SceneMix, check_size, generate_dataset
    from squeezedet.train import train

    t0 = time.monotonic()
    size = parse_size(options.size, "--size")
    check_size(size)
    for name, value in (("--minutes", options.minutes), ("--total-minutes", options.total_minutes)):
        if value is not None and (not value > 0 or value == float("inf")):
            raise SqueezeDetError(f"{name} must be a positive number (got {value})")
    if options.num_images < 1:
        raise SqueezeDetError(f"--num-images must be at least 1 (got {options.num_images})")
    demo_config(size, options.minutes or options.total_minutes, options.seed,
                list(options.overrides))  # settings checked before anything is written
    photos = _gather_images(options.images)
    out = check_output_dir(options.out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    progress = not options.quiet

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
        recipe = Recipe(size, 0, 0.0, False)  # the default recipe, its batch from the config
        probe_s = 0.0
        if (not options.fixed_recipe and size == LADDER[0][:2]
                and not any(o.split("=")[0].strip() in ("input_size", "batch_size")
                            for o in options.overrides)):
            start = time.monotonic()
            seconds = (options.minutes * 60 if options.minutes is not None else
                       options.total_minutes * 60 - (start - t0) - CHOICE_ALLOWANCE_S)
            recipe = _measured_recipe(out, size, options, max(seconds, 60.0))
            probe_s = time.monotonic() - start
        scenes = (recipe.size, recipe.density)
        data = _data_dir(out, scenes, size)
    more = f", {scenes[1]:g}x the objects" if scenes[1] != 1 else ""
    print(f"      {options.num_images} scenes of {scenes[0][0]}x{scenes[0][1]}{more} -> {data}",
          flush=True)
    generate_dataset(data, options.num_images, options.seed, scenes[0], progress=progress,
                     scene=SceneMix(scenes[1]))
    if recipe is not None:
        anchors = _kmeans_anchors(data, recipe.size, options.seed)
        chosen = ([f"batch_size={recipe.batch}"] if recipe.batch else []) + (
            [f"lr={recipe.lr}"] if recipe.lr is not None else [])  # key=value given now wins
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
        cfg = demo_config(recipe.size, minutes, options.seed, overrides, anchors)
        _save_scenes(out, data, scenes)
    finished = False
    trained = None
    if (run_dir / "last.pt").exists():
        if options.retrain:
            n = 1
            while (out / f"train.prev-{n}").exists():
                n += 1
            run_dir.rename(out / f"train.prev-{n}")
            print(f"      previous run kept as {out / f'train.prev-{n}'}")
        else:
            ckpt = load_checkpoint(run_dir / "last.pt")
            finished = bool(ckpt.get("finished"))
    if finished:
        print(f"[2/4] reusing the finished training run in {run_dir} (--retrain to train again)")
    else:
        resume = (run_dir / "last.pt").exists()
        w, h = cfg.input_size or scenes[0]
        print(f"[2/4] training SqueezeDet from scratch for {cfg.time_limit_min:.1f} min on "
              f"{_device_name(cfg)} at {w}x{h}, batch {cfg.batch_size}, lr {cfg.lr:g} -> "
              f"{run_dir}" + (" (resuming)" if resume else "") + (
                  f"; what is left of the {options.total_minutes:g}-minute budget"
                  if recipe is not None and options.minutes is None else ""), flush=True)
        trained = train(cfg, data, run_dir, resume=resume, progress=progress)

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
