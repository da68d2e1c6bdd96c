"""Tests of the synthetic driving-scene generator (squeezedet.data.synth and `squeezedet synth`).

Expected numbers come from the camera model by hand: the generator uses KITTI's camera scaled to
the image, fy = 721.54 * H / 375, fx = 721.54 * W / 1242, cy = 0.4609 * H, camera 1.65 m above a
flat ground, so an object at depth z has its ground contact on row cy + fy * 1.65 / z and its top
(height h) on row cy + fy * (1.65 - h) / z.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from squeezedet.cli import main
from squeezedet.data.kitti_format import read_kitti_file, write_kitti_file
from squeezedet.data.synth import (
    SceneObject,
    check_size,
    generate_dataset,
    is_current,
    occlusion_level,
    render_objects,
    render_scene,
    split_ids,
    truncation,
)
from squeezedet.errors import SqueezeDetError

CLASSES = {"Car", "Pedestrian", "Cyclist"}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# determinism


def test_render_scene_is_deterministic() -> None:
    img_a, labels_a = render_scene(11, (160, 64))
    img_b, labels_b = render_scene(np.random.default_rng(11), (160, 64))
    img_c, labels_c = render_scene(12, (160, 64))
    assert img_a.size == (160, 64) and img_a.mode == "RGB"
    assert img_a.tobytes() == img_b.tobytes()
    assert labels_a == labels_b
    assert img_a.tobytes() != img_c.tobytes()


def test_dataset_same_seed_same_bytes_and_prefix(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", 3, seed=4, size=(128, 48), progress=False)
    b = generate_dataset(tmp_path / "b", 5, seed=4, size=(128, 48), progress=False)
    c = generate_dataset(tmp_path / "c", 3, seed=5, size=(128, 48), progress=False)
    fa, fb, fc = _files(a), _files(b), _files(c)
    for i in range(3):
        for name in (f"training/image_2/{i:06d}.png", f"training/label_2/{i:06d}.txt"):
            assert fa[name] == fb[name]  # N=3 are the first 3 of N=5
    assert fa[f"training/image_2/{0:06d}.png"] != fc[f"training/image_2/{0:06d}.png"]
    again = generate_dataset(tmp_path / "a2", 3, seed=4, size=(128, 48), progress=False)
    assert _files(again) == fa


def test_processes_draw_the_same_bytes_as_one(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from squeezedet.data.synth import SceneMix, dataset

    monkeypatch.setattr(dataset, "CHUNK", 4)
    n = 2 * 4 + 3  # three tasks, the last one short
    one = generate_dataset(tmp_path / "one", n, seed=3, size=(96, 32), progress=False, workers=1,
                           scene=SceneMix(2.0))
    two = generate_dataset(tmp_path / "two", n, seed=3, size=(96, 32), progress=False, workers=2,
                           scene=SceneMix(2.0))
    files = _files(two)
    assert len([f for f in files if f.startswith("training/image_2/")]) == n
    assert files == _files(one)


def _draw_in_a_pool_worker(out: str) -> int:
    generate_dataset(out, 3, seed=0, size=(96, 32), progress=False)  # workers by default
    return len(list(Path(out, "training", "image_2").glob("*.png")))


def test_a_pool_worker_draws_in_its_own_process(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemonic process (a multiprocessing pool's worker) may not start processes: it draws
    the scenes itself instead of failing."""
    import multiprocessing

    from squeezedet.data.synth import dataset

    monkeypatch.setattr(dataset, "PARALLEL_FROM", 2)  # the forked worker inherits it
    monkeypatch.setattr(dataset, "CHUNK", 1)
    monkeypatch.setattr(dataset, "usable_cores", lambda: 2)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_draw_in_a_pool_worker, (str(tmp_path / "ds"),)) == 3


# ---------------------------------------------------------------------------------------------
# labels


def test_truncation_at_the_bottom_by_hand() -> None:
    # A 1.76 m pedestrian 3 m away in a 400x120 image: fy = 721.54*120/375 = 230.8928,
    # cy = 0.4609*120 = 55.308; top row 55.308 - 230.8928*0.11/3 = 46.8419, feet row
    # 55.308 + 230.8928*1.65/3 = 182.2990, below the last row 119. Visible rows 46.8419..119
    # of 46.8419..182.2990: truncation = 1 - 72.1581/135.4571 = 0.4673.
    _, labels = render_objects([SceneObject("Pedestrian", 0.0, 3.0, 0.3)], (400, 120))
    (ped,) = labels
    assert ped.type == "Pedestrian"
    assert ped.box[1] == pytest.approx(46.8419, abs=1e-3)
    assert ped.box[3] == pytest.approx(119.0)
    assert ped.truncated == pytest.approx(0.4673, abs=1e-3)
    assert 0 <= ped.box[0] < ped.box[2] <= 399
    assert ped.occluded == 0


def test_truncation_at_the_side_matches_the_cut() -> None:
    # The same figure (same depth and observation angle) shifted sideways is a pure translation
    # by fx * dx / z pixels, fx = 721.54*400/1242 = 232.3800. Shift it so that 40 % of its box
    # width lies left of column 0: truncation 0.4 and the box clipped at 0.
    size, z, alpha = (400, 120), 10.0, 0.7
    _, (ref,) = render_objects([SceneObject("Pedestrian", 0.0, z, alpha)], size)
    x1, y1, x2, y2 = ref.box
    assert ref.truncated == 0.0
    du = -(x1 + 0.4 * (x2 - x1))
    dx = du * z / 232.38
    ry = alpha + math.atan2(dx, z)
    _, (cut,) = render_objects([SceneObject("Pedestrian", dx, z, ry)], size)
    assert cut.truncated == pytest.approx(0.4, abs=1e-3)
    assert cut.box[0] == 0.0
    assert cut.box[2] == pytest.approx(x2 + du, abs=1e-3)
    assert (cut.box[1], cut.box[3]) == pytest.approx((y1, y2))
    assert cut.alpha == pytest.approx(alpha)


def test_truncation_function_by_hand() -> None:
    # box 100 wide, 50 high; image columns 0..199 (W = 200), rows 0..99 (H = 100)
    assert truncation((-30.0, 10.0, 70.0, 60.0), 200, 100) == pytest.approx(0.3)
    assert truncation((150.0, 80.0, 250.0, 130.0), 200, 100) == pytest.approx(
        1 - (49 * 19) / (100 * 50)
    )
    assert truncation((10.0, 10.0, 20.0, 20.0), 200, 100) == 0.0


def test_box_rows_follow_the_ground_plane() -> None:
    # Pedestrian 10 m away, 624x192: fy = 369.4285, cy = 88.4928; feet on row
    # 88.4928 + 369.4285*0.165 = 149.4485, head top 88.4928 - 369.4285*0.011 = 84.4291.
    _, (ped,) = render_objects([SceneObject("Pedestrian", 1.0, 10.0, -1.2)], (624, 192))
    assert ped.box[3] == pytest.approx(149.4485, abs=1e-3)
    assert ped.box[1] == pytest.approx(84.4291, abs=1e-3)
    assert ped.location == pytest.approx((1.0, 1.65, 10.0))
    assert ped.dimensions == pytest.approx((1.76, 0.66, 0.84))
    # A cyclist's wheels touch the ground as well: 8 m away, row 88.4928 + 369.4285*1.65/8.
    _, (cyc,) = render_objects([SceneObject("Cyclist", -1.0, 8.0, 0.1)], (624, 192))
    assert cyc.box[3] == pytest.approx(88.4928 + 369.4285 * 1.65 / 8, abs=1e-3)
    # A car's lowest point is the nearest tyre, nearer than its centre: below that row.
    _, (car,) = render_objects([SceneObject("Car", 0.5, 12.0, -math.pi / 2)], (624, 192))
    assert car.box[3] > 88.4928 + 369.4285 * 1.65 / 12


def test_boxes_scale_with_the_image() -> None:
    objects = [SceneObject("Car", 1.5, 14.0, -1.4), SceneObject("Pedestrian", -3.0, 9.0, 2.0),
               SceneObject("Cyclist", 4.0, 20.0, 0.3)]
    _, small = render_objects(objects, (624, 192))
    _, large = render_objects(objects, (1248, 384))
    assert len(small) == len(large) == 3
    for s, g in zip(small, large, strict=True):
        assert g.box == pytest.approx(tuple(2 * v for v in s.box), abs=1e-6)


def test_occlusion_levels() -> None:
    assert [occlusion_level(f) for f in (0.0, 0.09, 0.1, 0.49, 0.5, 0.95)] == [0, 0, 1, 1, 2, 2]
    # A pedestrian 15 m away straight behind a car 8 m away: the car's roof is on row
    # cy + fy*0.12/6.7 (cabin rear ~6.7 m away), only the head and shoulders (about a fifth of
    # the figure's height) stay visible above it: level 2; the car itself is not occluded.
    car = SceneObject("Car", 0.0, 8.0, -math.pi / 2)
    ped = SceneObject("Pedestrian", 0.0, 15.0, 0.0)
    _, labels = render_objects([ped, car], (624, 192))
    by_type = {lab.type: lab for lab in labels}
    assert by_type["Car"].occluded == 0
    assert by_type["Pedestrian"].occluded == 2
    # Apart from each other: neither is occluded.
    _, labels = render_objects([SceneObject("Pedestrian", 6.0, 15.0, 0.0), car], (624, 192))
    assert sorted(lab.occluded for lab in labels) == [0, 0]


def test_far_tiny_objects_are_dontcare() -> None:
    # 80 m away a pedestrian is 369.4285*1.76/80 = 8.1 px tall at 624x192, under 5.5 % of 192.
    _, (far,) = render_objects([SceneObject("Pedestrian", 0.0, 80.0, 0.0)], (624, 192))
    assert far.type == "DontCare"
    assert far.box[3] - far.box[1] == pytest.approx(369.4285 * 1.76 / 80, abs=1e-3)
    assert (far.truncated, far.occluded, far.alpha) == (-1.0, -1, -10.0)
    assert far.location == (-1000.0, -1000.0, -1000.0)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def test_random_scene_labels_are_consistent(tmp_path: Path) -> None:
    w, h = 312, 96
    fy, cy = 721.54 * h / 375, 0.4609 * h
    seen = []
    for seed in range(12):
        _, labels = render_scene(seed, (w, h))
        path = tmp_path / f"{seed}.txt"
        write_kitti_file(path, labels)
        lines = path.read_text().splitlines()
        assert all(len(line.split()) == 15 for line in lines)
        back = read_kitti_file(path)
        assert len(back) == len(labels)
        for lab, rd in zip(labels, back, strict=True):
            assert rd.type == lab.type
            assert rd.box == pytest.approx(lab.box, abs=0.006)
            x1, y1, x2, y2 = lab.box
            assert 0 <= x1 < x2 <= w - 1 and 0 <= y1 < y2 <= h - 1
            if lab.type == "DontCare":
                continue
            seen.append(lab)
            assert lab.type in CLASSES
            assert 0.0 <= lab.truncated <= 1.0 and lab.occluded in (0, 1, 2)
            x, y, z = lab.location
            assert y == 1.65 and z > 0
            assert lab.alpha == pytest.approx(_wrap(lab.rotation_y - math.atan2(x, z)), abs=1e-9)
            assert -math.pi <= lab.rotation_y < math.pi
            hh, ww, ll = lab.dimensions
            assert {"Car": 1.3 < hh < 2.1 and 1.5 < ww < 2.0 and 3.3 < ll < 5.2,
                    "Pedestrian": 1.0 < hh < 2.1 and 0.4 < ww < 0.9 and 0.5 < ll < 1.2,
                    "Cyclist": 1.5 < hh < 2.0 and 0.4 < ww < 0.8 and 1.5 < ll < 2.0}[lab.type]
            if lab.truncated == 0 and lab.type != "Car":
                # standing on the ground plane: bottom row cy + fy*1.65/z, height fy*h/z
                assert y2 == pytest.approx(cy + fy * 1.65 / z, abs=0.01)
                assert y2 - y1 == pytest.approx(fy * hh / z, abs=0.01)
    assert {lab.type for lab in seen} == CLASSES


def test_class_variety_and_moderate_share() -> None:
    counts = {c: 0 for c in CLASSES}
    moderate = total = 0
    for seed in range(30):
        _, labels = render_scene([3, seed], (624, 192))
        for lab in labels:
            if lab.type == "DontCare":
                continue
            counts[lab.type] += 1
            total += 1
            tall = lab.box[3] - lab.box[1] > 25
            moderate += tall and lab.occluded <= 1 and lab.truncated <= 0.3
    assert min(counts.values()) >= 15, counts
    assert moderate >= 0.4 * total  # most objects are large enough for KITTI's "moderate"


# ---------------------------------------------------------------------------------------------
# the data set on disk


def test_dataset_layout_and_split(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "ds", 8, seed=2, size=(96, 40), val_fraction=0.25,
                           progress=False)
    ids = [f"{i:06d}" for i in range(8)]
    assert sorted(p.stem for p in (out / "training/image_2").glob("*.png")) == ids
    assert sorted(p.stem for p in (out / "training/label_2").glob("*.txt")) == ids
    train = (out / "ImageSets/train.txt").read_text().split()
    val = (out / "ImageSets/val.txt").read_text().split()
    assert len(val) == 2 and len(train) == 6  # round(8 * 0.25) = 2
    assert sorted(train + val) == ids and train == sorted(train) and val == sorted(val)
    assert (train, val) == split_ids(8, 2, 0.25)
    assert split_ids(1, 0, 0.25) == (["000000"], [])
    assert split_ids(4, 0, 0.0) == (ids[:4], [])
    assert len(split_ids(4, 0, 0.01)[1]) == 1  # at least one val image when asked for any
    for i in ids:
        read_kitti_file(out / f"training/label_2/{i}.txt")


def test_existing_folder_policy(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    generate_dataset(out, 4, seed=1, size=(96, 40), progress=False)
    before = _files(out)
    generate_dataset(out, 4, seed=1, size=(96, 40), progress=False)  # same: nothing to do
    assert _files(out) == before
    with pytest.raises(SqueezeDetError, match="different synthetic data set"):
        generate_dataset(out, 4, seed=2, size=(96, 40), progress=False)
    (out / "notes.txt").write_text("mine")
    generate_dataset(out, 2, seed=2, size=(96, 40), progress=False, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"  # other files are never touched
    assert sorted(p.name for p in (out / "training/image_2").iterdir()) == [
        "000000.png", "000001.png"]  # the generator's own extra files are removed
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("x")
    with pytest.raises(SqueezeDetError, match="other files"):
        generate_dataset(foreign, 2, seed=0, size=(96, 40), progress=False)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SqueezeDetError, match="not a folder"):
        generate_dataset(a_file, 2, seed=0, size=(96, 40), progress=False)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_images": 0}, {"n_images": -3}, {"seed": -1}, {"size": (10, 10)},
     {"val_fraction": 1.0}, {"val_fraction": -0.1}, {"workers": 0}, {"workers": 1.5}],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict) -> None:
    args = {"n_images": 2, "seed": 0, "size": (96, 40), "val_fraction": 0.25, **kwargs}
    with pytest.raises(SqueezeDetError):
        generate_dataset(tmp_path / "ds", progress=False, **args)
    assert not (tmp_path / "ds").exists()


def test_check_size() -> None:
    """The generator draws from 64x32 to 8192x8192 pixels, both ends included."""
    check_size((64, 32))
    check_size((8192, 8192))
    for bad in ((63, 32), (64, 31), (8193, 375), (1242, 8193), (10, 10)):
        with pytest.raises(SqueezeDetError, match="out of range"):
            check_size(bad)


# ---------------------------------------------------------------------------------------------
# command line


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    base = ["synth", "--out", str(out), "--images", "3", "--seed", "7", "--size", "96x40"]
    assert main([*base, "--quiet"]) == 0
    assert len(list((out / "training/image_2").glob("*.png"))) == 3
    assert (out / "ImageSets/train.txt").read_text().split() + (
        out / "ImageSets/val.txt").read_text().split() != []
    capsys.readouterr()
    assert main(base) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["synth", "--out", str(out), "--images", "3", "--seed", "8", "--size", "96x40",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("squeezedet synth: error:") and "--overwrite" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["synth", "--out", str(out), "--images", "3", "--seed", "8", "--size", "96x40",
                 "--quiet", "--overwrite"]) == 0
    assert main(["synth", "--out", str(tmp_path / "b"), "--size", "96by40", "-q"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "c"), "--images", "0", "-q"]) == 2
    assert not (tmp_path / "c").exists()


# --- the scene density (the demo's slow-machine scenes) ---


def test_density_one_is_the_standard_scene_and_denser_scenes_hold_more_objects() -> None:
    """Density 1 draws the very scenes the generator always drew; density 2 doubles the expected
    number of objects asked for (1-6 cars, Poisson 1.7 pedestrians, Poisson 1.3 cyclists: 6.5 on
    average), of which overlapping placements are dropped, so well over 1.5x are labelled."""
    from squeezedet.data.synth import SceneMix

    img_a, labels_a = render_scene(5, (216, 64))
    img_b, labels_b = render_scene(5, (216, 64), SceneMix(1.0))
    assert np.array_equal(np.asarray(img_a), np.asarray(img_b)) and labels_a == labels_b
    # the labels the generator drew for these seeds before the density setting existed (commit
    # b3c65ae), boxes rounded to whole pixels so that a last-bit difference in a CPU's maths
    # cannot flip them
    before = {
        5: [("Car", [11, 26, 80, 63]), ("Car", [99, 32, 125, 52]), ("Car", [102, 31, 138, 44]),
            ("Car", [80, 30, 96, 41]), ("Pedestrian", [131, 29, 134, 38]),
            ("Car", [101, 30, 111, 38]), ("Pedestrian", [111, 29, 114, 35]),
            ("DontCare", [117, 29, 119, 33])],
        6: [("Cyclist", [54, 28, 72, 57]), ("Car", [87, 26, 131, 63]), ("Car", [57, 28, 84, 46]),
            ("Car", [107, 27, 146, 43])],
    }
    for seed, expected in before.items():
        labels = render_scene(seed, (216, 64), SceneMix(1.0))[1]
        assert [(o.type, [round(v) for v in o.box]) for o in labels] == expected

    def objects(density: float) -> int:
        return sum(len(render_scene([7, i], (216, 64), SceneMix(density))[1]) for i in range(30))

    assert objects(2.0) > 1.5 * objects(1.0)


@pytest.mark.parametrize("density", [0.0, 0.2, 4.5, float("nan")])
def test_an_impossible_density_is_refused_in_one_line(tmp_path, capsys, density) -> None:
    from squeezedet.cli import main
    from squeezedet.data.synth import SceneMix

    with pytest.raises(SqueezeDetError, match=r"density \(--density\) must be in \[0.25, 4\]"):
        SceneMix(density)
    code = main(["synth", "--out", str(tmp_path / "d"), "--images", "2", "--size", "96x32",
                 "--density", str(density)])
    err = capsys.readouterr().err
    assert code != 0 and "density (--density) must be in" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_the_manifest_records_a_density_other_than_one(tmp_path) -> None:
    from squeezedet.data.synth import MANIFEST, SceneMix

    standard = generate_dataset(tmp_path / "a", 2, 0, (96, 32), progress=False)
    assert "density" not in json.loads((standard / MANIFEST).read_text())  # as it always was
    dense = generate_dataset(tmp_path / "b", 2, 0, (96, 32), progress=False, scene=SceneMix(2))
    assert json.loads((dense / MANIFEST).read_text())["density"] == 2
    assert is_current(dense, 2, 0, (96, 32), scene=SceneMix(2))
    assert not is_current(dense, 2, 0, (96, 32))  # a standard set is not this one
    with pytest.raises(SqueezeDetError, match="different synthetic data set"):
        generate_dataset(dense, 2, 0, (96, 32), progress=False)
