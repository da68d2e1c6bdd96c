"""The recipe choice from a look at the data, the time-budgeted schedule, the augmentation
pipeline of the ``augment`` names and the loader's (epoch, index) batches (workers that persist)."""

import os

import numpy as np
import pytest
import torch
from tiny_data import make_tiny_kitti
from torch.utils.data import DataLoader, Dataset

from squeezedet.config import TrainConfig, given_settings, load_config
from squeezedet.data.augment import ColorJitter, Rotate90, ScaleCrop, VerticalFlip, build_pipeline
from squeezedet.data.kitti import KittiDataset
from squeezedet.data.transforms import Drift, HorizontalFlip, RandomCrop, Resize, ResizeCrop
from squeezedet.engine import EpochBatchSampler, ema_decay_at, epoch_batches, learning_rate
from squeezedet.errors import SqueezeDetError
from squeezedet.recipes import (
    DataSummary,
    choose_recipe,
    fitted_to_length,
    resolve_recipe,
    summarize,
)

SMALL_DATA = DataSummary(images=2, samples=13, boxes=431, max_boxes=45, classes=1,
                         median_box=(36.0, 37.0))
LARGE_DATA = DataSummary(images=7481, samples=7481, boxes=40570, max_boxes=30, classes=3,
                         median_box=None)


def test_summary_by_hand():
    boxes = [np.array([[0, 0, 10, 20], [5, 5, 35, 15]]), np.zeros((0, 4)), np.array([[0, 0, 20, 40]])]
    s = summarize(boxes, images=2, classes=1)
    # widths 10, 30, 20 -> median 20; heights 20, 10, 40 -> median 20
    assert (s.samples, s.boxes, s.max_boxes, s.median_box) == (3, 3, 2, (20.0, 20.0))


def test_small_data_from_scratch_gets_the_small_recipe():
    cfg, line = choose_recipe(TrainConfig(input_size=(384, 384), steps=1000), SMALL_DATA)
    assert cfg.recipe == "small" and line.startswith("recipe: small (13 training samples")
    assert "\n" not in line
    assert cfg.squeeze_bn and cfg.optimizer == "adamw" and cfg.lr_schedule == "cosine"
    assert cfg.drift == (0, 0) and cfg.augment == "" and cfg.cache_images  # flips only
    assert "augment" not in line  # what the recipe leaves as it was is not listed
    # median box 37 px <= a quarter of the 192-px half input: crop 192x192, batch min(16, 13 // 2)
    assert cfg.crop == (192, 192) and cfg.batch_size == 6
    assert cfg.lr == pytest.approx(1e-3 * (6 / 8) ** 0.5, rel=1e-3)  # rounded to 6 decimals
    assert cfg.top_k == 512  # 8 candidates for each of the 45 boxes of the densest tile: 360 -> 512
    # 1000 steps: warm-up 50, averaging horizon 50 steps (decay 1 - 1/50)
    assert (cfg.warmup_steps, cfg.ema_decay) == (50, 0.98)
    assert cfg.steps == 1000 and cfg.time_limit_min is None
    assert cfg.tta == "hflip"  # validated in the views trained: the image and its mirror


def test_large_data_or_pretrained_keeps_the_paper_recipe():
    cfg = TrainConfig(steps=10)
    chosen, line = choose_recipe(cfg, LARGE_DATA)
    assert chosen == TrainConfig(steps=10, recipe="paper")
    assert line.startswith("recipe: paper (7481 training samples > 1000")
    tuned, line = choose_recipe(TrainConfig(pretrained="w.pth"), SMALL_DATA)
    assert tuned.optimizer == "sgd" and "pretrained" in line
    forced, _ = choose_recipe(TrainConfig(recipe="small", steps=100), LARGE_DATA)
    assert forced.squeeze_bn and forced.crop is None  # no box sizes looked at: no crop


def test_settings_given_keep_their_values_and_plus_adds_augmentation():
    cfg = TrainConfig(input_size=(384, 384), steps=200, lr=5e-4, batch_size=4, augment="+rot90,vflip")
    chosen, line = choose_recipe(cfg, SMALL_DATA)
    assert (chosen.lr, chosen.batch_size) == (5e-4, 4)
    assert chosen.augment == "rot90,vflip"  # the recipe's (none) and these
    assert "kept as given: batch_size, lr" in line
    assert chosen.tta == "flips"  # trained upside down too: validated in all four flips
    replaced, _ = choose_recipe(TrainConfig(steps=200, augment="zoom"), SMALL_DATA)
    assert replaced.augment == "zoom"
    none, _ = choose_recipe(TrainConfig(steps=200, augment="none"), SMALL_DATA)
    assert none.augment == "none" and none.tta == "hflip"  # flip_prob still mirrors
    unflipped, _ = choose_recipe(TrainConfig(steps=200, flip_prob=0.0), SMALL_DATA)
    assert unflipped.tta == "none"
    mine, _ = choose_recipe(TrainConfig(steps=200, augment="+vflip"), SMALL_DATA, given={"tta"})
    assert mine.tta == "none"  # tta=none given: kept


def test_time_budget_fits_warmup_and_averaging_to_the_clock():
    cfg, line = choose_recipe(TrainConfig(time_limit_min=10), SMALL_DATA)
    # no step estimate: warm-up over 5 % of the time, horizon 5 % of the steps on course for
    assert (cfg.warmup_fraction, cfg.ema_fraction) == (0.05, 0.05)
    assert (cfg.warmup_steps, cfg.ema_decay) == (0, 0.0)
    assert "for 10 min:" in line and cfg.time_limit_min == 10
    # a warm-up or averaging given in steps is not joined by one fitted to the time
    given, line = choose_recipe(TrainConfig(time_limit_min=10, warmup_steps=20), SMALL_DATA,
                                given={"warmup_steps"})
    assert (given.warmup_steps, given.warmup_fraction, given.ema_fraction) == (20, 0.0, 0.05)
    assert "kept as given: warmup_steps" in line and "warmup_fraction" not in line
    no_ema, _ = choose_recipe(TrainConfig(time_limit_min=10, ema_fraction=0.0), SMALL_DATA,
                              given={"ema_fraction"})
    assert no_ema.ema_fraction == 0.0 and no_ema.ema_decay == 0.0
    # nothing given: ten minutes
    untimed, line = choose_recipe(TrainConfig(), SMALL_DATA)
    assert untimed.time_limit_min == 10 and "10 min" in line
    # epochs: 13 samples // batch 6 = 2 steps an epoch, 300 epochs = 600 steps: warm-up 30 steps
    by_epochs, _ = choose_recipe(TrainConfig(epochs=300), SMALL_DATA)
    assert by_epochs.warmup_steps == 30 and by_epochs.time_limit_min is None
    assert by_epochs.warmup_fraction == 0.0 and by_epochs.ema_fraction == 0.0


def test_time_bounded_schedule_follows_the_clock_not_the_steps(monkeypatch):
    import squeezedet.run_state as run_state

    now = [100.0]
    monkeypatch.setattr(run_state.time, "monotonic", lambda: now[0])
    clock = run_state.RunClock(0.0, 1.0, shared=False)  # one minute
    cfg = TrainConfig(lr=0.01, lr_schedule="cosine", warmup_fraction=0.1, ema_fraction=0.05,
                      time_limit_min=1.0)
    unbounded = 10**9  # a time-bounded run's total steps (run_state.total_steps)

    def lr(step):
        return learning_rate(cfg, step, clock.fraction_done(step, unbounded))

    now[0] = 103.0  # 3 s of 60: 5 %, half the warm-up; cosine (1 + cos(0.05 pi)) / 2 = 0.993844
    assert lr(2) == pytest.approx(0.01 * 0.5 * 0.993844, rel=1e-5)
    assert lr(200) == lr(2)  # however many steps the machine managed
    now[0] = 130.0  # halfway: warm-up over, cosine at 1/2
    assert lr(5) == pytest.approx(0.005) and lr(5000) == pytest.approx(0.005)
    # averaging: 100 steps in half the time, on course for 200: horizon 10 steps, decay 0.9
    assert ema_decay_at(cfg, 100, clock.fraction_done(100, unbounded)) == pytest.approx(0.9)
    # 10 steps in half the time: on course for 20, horizon 1 step raised to the least, 5
    assert ema_decay_at(cfg, 10, clock.fraction_done(10, unbounded)) == pytest.approx(0.8)
    now[0] = 106.0  # 100 steps in a tenth of the time: on course for 1000, horizon 50
    assert ema_decay_at(cfg, 100, clock.fraction_done(100, unbounded)) == pytest.approx(0.98)
    now[0] = 160.0  # the time is up: the cosine is at zero
    assert lr(300) == pytest.approx(0.0, abs=1e-12)
    # without ema_fraction the decay is ema_decay's, whatever the clock
    assert ema_decay_at(TrainConfig(ema_decay=0.95), 100, 0.5) == 0.95


def test_fitted_to_length_by_hand():
    assert fitted_to_length(40) == {"warmup_steps": 5, "ema_decay": 0.8}  # both at their least
    assert fitted_to_length(4000) == {"warmup_steps": 200, "ema_decay": 0.995}
    assert fitted_to_length(10**6)["warmup_steps"] == 300


def test_resolve_recipe_looks_at_the_data(tmp_path):
    root = make_tiny_kitti(tmp_path / "tiny", n=4, size=(128, 64), per_image=2)
    cfg = load_config(None, ["input_size=128x64", "steps=20"])
    chosen, line = resolve_recipe(cfg, KittiDataset(root, "train", input_size=(128, 64)))
    assert chosen.recipe == "small" and "4 images, 8 boxes (at most 2 in one), 3 classes" in line
    assert chosen.crop is None  # the input is under 256 px


def test_unknown_augmentation_is_a_one_line_error():
    with pytest.raises(SqueezeDetError, match="augment: unknown 'spin'; choose from zoom"):
        TrainConfig(augment="zoom,spin")
    with pytest.raises(SqueezeDetError, match="recipe must be auto, paper or small"):
        TrainConfig(recipe="fast")


def test_pipeline_of_the_augment_names():
    kinds = [type(t) for t in build_pipeline((64, 32), True, (8, 4), 0.5, None,
                                             ("zoom", "vflip", "rot90", "jitter")).transforms]
    assert kinds == [Drift, Rotate90, VerticalFlip, HorizontalFlip, Resize, ScaleCrop, ColorJitter]
    # mosaic alone changes nothing per sample; evaluation never augments
    assert [type(t) for t in build_pipeline((64, 32), True, (0, 0), 0.5, None,
                                            ("mosaic",)).transforms] == [HorizontalFlip, Resize]
    assert [type(t) for t in build_pipeline((64, 32), False, augment=("zoom",)).transforms] == [Resize]
    # a training window: resampled alone, but cut after the zoom when zooming
    assert [type(t) for t in build_pipeline((64, 32), True, (0, 0), 0.0, (32, 16),
                                            ("vflip",)).transforms] == [VerticalFlip, ResizeCrop]
    assert [type(t) for t in build_pipeline((64, 32), True, (0, 0), 0.0, (32, 16),
                                            ("zoom",)).transforms] == [Resize, ScaleCrop, RandomCrop]


def test_mosaic_samples_are_reproducible_and_hold_boxes_inside(tmp_path):
    root = make_tiny_kitti(tmp_path / "tiny", n=4, size=(128, 64), per_image=2)
    ds = KittiDataset(root, "train", input_size=(128, 64), train=True, seed=3,
                      augment=("zoom", "jitter", "mosaic"))
    ds.mosaic = 1.0  # every sample a mosaic
    image, target = ds[(2, 1)]
    again, same = ds[(2, 1)]
    assert torch.equal(image, again) and torch.equal(target["boxes"], same["boxes"])
    assert image.shape == (3, 64, 128)
    boxes = target["boxes"]
    assert len(boxes) > 0
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 128).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 64).all()
    # an index alone takes the epoch set_epoch chose
    ds.set_epoch(2)
    assert torch.equal(ds[1][0], image)
    assert not torch.equal(ds[(3, 1)][0], image)


def test_epoch_batch_sampler_runs_through_epochs_from_any_step():
    n, batch, seed = 7, 3, 5  # 2 batches an epoch (the partial one dropped)
    pairs = list(EpochBatchSampler(n, batch, seed, start=0, stop=5))
    expected = [[(e, i) for i in b] for e in range(3) for b in epoch_batches(n, batch, seed, e)][:5]
    assert pairs == expected
    # resuming at step 3 continues exactly there; one process's slice of a global batch of 3
    assert list(EpochBatchSampler(n, batch, seed, start=3, stop=5)) == expected[3:]
    part = list(EpochBatchSampler(n, batch, seed, start=0, stop=2, part=(1, 1)))
    assert part == [b[1:2] for b in expected[:2]]
    endless = iter(EpochBatchSampler(n, batch, seed))
    assert len([next(endless) for _ in range(50)]) == 50


class _WhoLoads(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, key):
        epoch, i = key
        return torch.tensor([epoch, i, os.getpid()])


def test_loader_workers_persist_across_epochs():
    sampler = EpochBatchSampler(4, 2, seed=0, start=0, stop=12)  # 6 epochs of 2 batches
    loader = DataLoader(_WhoLoads(), batch_sampler=sampler, num_workers=2)
    rows = torch.cat(list(loader))
    assert rows[:, 0].tolist() == [e for e in range(6) for _ in range(4)]
    # two worker processes served all six epochs (a loader per epoch would have started 12)
    assert len(set(rows[:, 2].tolist())) <= 2
    assert os.getpid() not in set(rows[:, 2].tolist())


def test_settings_named_keep_even_the_default_value():
    cfg = TrainConfig(steps=100, squeeze_bn=False, ema_decay=0.0)
    chosen, line = choose_recipe(cfg, SMALL_DATA, given={"squeeze_bn", "ema_decay", "steps"})
    assert not chosen.squeeze_bn and chosen.ema_decay == 0.0 and chosen.optimizer == "adamw"
    assert "kept as given: ema_decay, squeeze_bn" in line
    assert given_settings(None, ["squeeze_bn=false", "lr=0.1"]) == {"squeeze_bn", "lr"}
