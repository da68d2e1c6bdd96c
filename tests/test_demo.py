"""`squeezedet demo` end to end at toy scale: every promised output is written."""

import json
from pathlib import Path

import pytest

from squeezedet import demo
from squeezedet.cli import main


def test_demo_writes_all_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    from PIL import Image

    Image.new("RGB", (300, 90), (90, 90, 90)).save(photo_dir / "p.png")
    code = main(["demo", "--out", str(out), "--minutes", "0.02", "--num-images", "12",
                 "--size", "192x64", "--images", str(photo_dir), "--quiet", "workers=0",
                 "val_max_images=3"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["AP_R40"]) == {"Car", "Pedestrian", "Cyclist"}
    assert {"AP_R11", "mAP_R40", "mAP_R11", "evaluated", "n_images", "warnings"} <= set(metrics)
    assert (out / "ap_table.txt").read_text().startswith("KITTI 2-D AP")
    assert len(list((out / "detections").glob("val_*.png"))) == 3  # 25% of 12 images
    assert (out / "detections" / "photos" / "p.png").exists()
    assert (out / "train" / "best.pt").exists() or (out / "train" / "last.pt").exists()
    printed = capsys.readouterr().out
    assert "mean moderate AP_R40" in printed and "demo finished" in printed
    # a second run reuses the data and the finished training run
    assert main(["demo", "--out", str(out), "--num-images", "12", "--size", "192x64",
                 "--quiet", "workers=0"]) == 0
    assert "reusing the finished training run" in capsys.readouterr().out


# --- the recipe adapts to the machine's measured speed (fake step times; nothing is timed) ---


def _fake_machine(default_step_s: float, overhead_s: float = 0.0):
    """Step time of a recipe on a fake machine: proportional to pixels x batch, plus overhead."""
    calls = []

    def measure(size, batch):
        calls.append((size, batch))
        share = size[0] * size[1] * batch / (624 * 192 * 8)
        return overhead_s + (default_step_s - overhead_s) * share
    return measure, calls


def test_a_fast_machine_keeps_the_default_recipe():
    from squeezedet.demo_recipe import choose_recipe

    measure, calls = _fake_machine(0.2)  # 4,800 steps in 16 minutes
    recipe, probes = choose_recipe(measure, 16 * 60)
    assert (recipe.size, recipe.batch) == ((624, 192), 8)
    assert calls == [((624, 192), 8)] and len(probes) == 1
    assert recipe.steps(16 * 60) == 4800


def test_a_middling_machine_takes_the_first_recipe_projected_to_fit():
    from squeezedet.demo_recipe import MIN_STEPS, choose_recipe

    measure, calls = _fake_machine(0.35)  # 2,742 steps: too few
    recipe, _ = choose_recipe(measure, 16 * 60)
    # 624x192 batch 6 is projected at 0.35 * 6/8 = 0.2625 s a step, 3,657 steps (>= 3,600)
    assert (recipe.size, recipe.batch, recipe.density) == ((624, 192), 6, 1.0)
    assert calls == [((624, 192), 8), ((624, 192), 6)]
    assert recipe.steps(16 * 60) == 3657 >= MIN_STEPS


def test_a_machine_too_slow_for_batch_6_draws_small_dense_scenes():
    from squeezedet.demo_recipe import MIN_STEPS, choose_recipe

    measure, calls = _fake_machine(0.45)  # 2,133 steps
    recipe, _ = choose_recipe(measure, 16 * 60)
    # batch 6 is projected at 0.3375 s, 2,844 steps (< 3,600): skipped untimed; the small dense
    # scenes at 0.45 * 432*128*4 / (624*192*8) = 0.1038 s, 9,244 steps
    assert (recipe.size, recipe.batch, recipe.density, recipe.lr) == ((432, 128), 4, 2.0, None)
    assert calls == [((624, 192), 8), ((432, 128), 4)]
    assert recipe.steps(16 * 60) == 9244 >= MIN_STEPS


def test_a_slow_machine_takes_the_cheapest_recipe_when_none_fits():
    from squeezedet.demo_recipe import LADDER, MIN_STEPS, choose_recipe

    measure, calls = _fake_machine(1.28, overhead_s=0.05)  # an AVX2 CPU: 750 steps
    recipe, probes = choose_recipe(measure, 16 * 60)
    assert (recipe.size, recipe.batch, recipe.density, recipe.lr) == (LADDER[-1][:2], *LADDER[-1][2:])
    assert len(calls) == 2 and all(p.measured for p in probes)
    assert recipe.steps(16 * 60) < MIN_STEPS  # the best this machine can do, not the default


def test_an_optimistic_projection_is_corrected_by_the_next_measurement():
    from squeezedet.demo_recipe import MIN_STEPS, choose_recipe

    ladder = ((624, 192, 8, 1.0, None), (624, 192, 6, 1.0, None), (528, 160, 6, 1.0, None),
              (528, 160, 4, 1.0, None), (432, 128, 4, 1.0, None))
    # a large fixed cost per step: cheaper recipes gain less than pixels x batch promise
    measure, calls = _fake_machine(0.4, overhead_s=0.15)
    recipe, probes = choose_recipe(measure, 16 * 60, ladder)
    assert len(calls) == 3  # the second probe missed, the third fits
    assert probes[1].steps(16 * 60) < MIN_STEPS <= recipe.steps(16 * 60)
    assert recipe == probes[2]


def test_a_slow_machine_trains_on_small_dense_scenes_and_a_rerun_keeps_them(
        tmp_path, capsys, monkeypatch):
    """The whole demo on a fake slow machine (the step timer is replaced; nothing is timed): it
    draws the small dense scenes, trains on them, records the recipe, and a second run reuses it
    without timing anything."""
    import squeezedet.train as train_module
    from squeezedet.data.synth import MANIFEST

    timed = []

    def slow(cfg, data_root, **_):
        timed.append((cfg.input_size, cfg.batch_size))
        return 1.0 * cfg.input_size[0] * cfg.input_size[1] * cfg.batch_size / (624 * 192 * 8)

    monkeypatch.setattr(train_module, "measure_step_seconds", slow)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--minutes", "0.02", "--num-images", "8", "--quiet",
            "workers=0", "val_max_images=2"]
    assert main(args) == 0
    assert timed == [((624, 192), 8), ((432, 128), 4)]
    printed = capsys.readouterr().out
    assert "training at 432x128, batch 4 on scenes drawn at that size, with 2x the objects" in printed
    assert "at 432x128, batch 4, lr 0.001" in printed
    data = out / "data-432x128-x2"
    manifest = json.loads((data / MANIFEST).read_text())
    assert manifest["size"] == [432, 128] and manifest["density"] == 2.0
    assert not (out / "data").exists() and not (out / "probe-scenes").exists()
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe == {"data": "data-432x128-x2", "size": [432, 128], "density": 2.0}
    config = (out / "train" / "config.yaml").read_text()
    assert "batch_size: 4" in config and "lr: 0.001" in config and "squeeze_bn: true" in config
    from squeezedet.checkpoint import load_checkpoint

    assert tuple(load_checkpoint(out / "train" / "last.pt")["meta"]["input_size"]) == (432, 128)
    # the rerun reuses the finished run with its recipe: no timing, no default-size data
    assert main(args) == 0
    assert len(timed) == 2
    assert "reusing the finished training run" in capsys.readouterr().out
    assert not (out / "data").exists()


def test_the_training_time_is_what_the_budget_leaves():
    from squeezedet.demo_recipe import FINISH_FIXED_S, finish_seconds, training_minutes

    # 400 validation images at half a 0.2 s step per batch of 4: 20 s + 400 / 4 * 0.1 = 30 s
    assert FINISH_FIXED_S == 20.0
    assert finish_seconds(0.2, 4, 400) == pytest.approx(30.0)
    assert finish_seconds(None, 8, 400) == 60.0  # no timed step: a minute
    # 18.5 minutes = 1,110 s; 75 s spent on timing and scenes, 30 s kept: 1,005 s = 16.75 min
    assert training_minutes(18.5, 75.0, 30.0) == pytest.approx(16.75)
    # a budget already spent still trains for a quarter of it
    assert training_minutes(2.0, 150.0, 30.0) == pytest.approx(0.5)


def test_a_demo_without_minutes_trains_for_what_its_total_budget_leaves(
        tmp_path, capsys, monkeypatch):
    """--total-minutes alone: the training time comes from the budget; one too small for the
    scenes and the end still trains, for a quarter of it (the step timer is faked)."""
    import squeezedet.train as train_module

    monkeypatch.setattr(train_module, "measure_step_seconds", lambda cfg, data_root, **_: 0.05)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--total-minutes", "0.04", "--num-images", "8",
                 "--quiet", "workers=0", "val_max_images=2"]) == 0
    printed = capsys.readouterr().out
    # 2.4 s cannot hold the 20 s kept for the end: a quarter of 0.04 minutes
    assert "for 0.0 min" in printed and "what is left of the 0.04-minute budget" in printed
    assert "time_limit_min: 0.01\n" in (out / "train" / "config.yaml").read_text()


def test_an_unreadable_recipe_file_is_a_one_line_error_naming_it(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "train").mkdir(parents=True)
    (out / "train" / "last.pt").write_bytes(b"")  # a run to resume; nothing is loaded before
    (out / "train" / "config.yaml").write_text("batch_size: 4\n")
    (out / "recipe.json").write_text('{"data": "data-432x128-x2", "size": [432, 128], '
                                     '"density": 9}')
    code = main(["demo", "--out", str(out), "--minutes", "0.02", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "recipe.json: unreadable" in err and "density" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_demo_images_folder_of_folders_and_empty_folder(tmp_path: Path) -> None:
    """--images on a folder whose photos are in sub-folders finds them; a folder without images
    is an error, not an empty set of drawings."""
    from squeezedet.demo import _gather_images
    from squeezedet.errors import SqueezeDetError

    (tmp_path / "samples" / "kitti").mkdir(parents=True)
    (tmp_path / "samples" / "README.md").write_text("photos below")
    for name in ("b.png", "a.jpg"):
        (tmp_path / "samples" / "kitti" / name).write_bytes(b"x")
    assert [p.name for p in _gather_images([str(tmp_path / "samples")])] == ["a.jpg", "b.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SqueezeDetError, match="no .*images in this folder"):
        _gather_images([str(tmp_path / "empty")])


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 0), (4, 1), (16, 1)])
def test_data_workers_follow_the_cores(cores: int, workers: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # two cores or fewer: torch's threads occupy them all, so the batches load in-process
    monkeypatch.setattr(demo, "usable_cores", lambda: cores)
    assert demo.demo_config((624, 192), 16, 0, []).workers == workers
    assert demo.demo_config((624, 192), 16, 0, ["workers=3"]).workers == 3
