"""Paired transforms: boxes move with the pixels, hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from squeezedet.data.transforms import (
    MEAN_RGB_UINT8,
    Compose,
    Drift,
    HorizontalFlip,
    RandomCrop,
    Resize,
    ResizeCrop,
    build_transforms,
    resize_image,
)

RED = np.array([255, 0, 0], dtype=np.uint8)
GREEN = np.array([0, 255, 0], dtype=np.uint8)


def scene(
    width: int, height: int, boxes: list[tuple[int, int, int, int]]
) -> tuple[np.ndarray, dict]:
    """Black image with each integer box filled red (box i in pixels [x1, x2) x [y1, y2))."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        image[y1:y2, x1:x2] = RED
    target = {
        "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.arange(len(boxes), dtype=np.int64),
    }
    return image, target


def red_under_boxes(image: np.ndarray, boxes: np.ndarray) -> bool:
    """Every pixel inside every (integer) box is red."""
    for x1, y1, x2, y2 in boxes.round().astype(int):
        if not (image[y1:y2, x1:x2] == RED).all():
            return False
    return True


# --- Drift ---------------------------------------------------------------------------------------


def test_drift_crop_moves_boxes_and_pixels_by_hand() -> None:
    image, target = scene(40, 30, [(10, 8, 20, 18)])
    out, t = Drift().apply(image, target, dx=6, dy=5)
    # cropping 6 columns on the left and 5 rows at the top; right/bottom edges stay
    assert out.shape == (25, 34, 3)
    np.testing.assert_array_equal(t["boxes"], [[4, 3, 14, 13]])
    assert red_under_boxes(out, t["boxes"])
    assert (out == RED).all(axis=2).sum() == 10 * 10  # the rectangle is whole
    np.testing.assert_array_equal(t["labels"], target["labels"])


def test_drift_pad_fills_with_mean_colour() -> None:
    image, target = scene(40, 30, [(10, 8, 20, 18)])
    out, t = Drift().apply(image, target, dx=-7, dy=-3)
    assert out.shape == (33, 47, 3)
    np.testing.assert_array_equal(t["boxes"], [[17, 11, 27, 21]])
    assert red_under_boxes(out, t["boxes"])
    np.testing.assert_array_equal(out[:3, :], np.broadcast_to(MEAN_RGB_UINT8, (3, 47, 3)))
    np.testing.assert_array_equal(out[:, :7], np.broadcast_to(MEAN_RGB_UINT8, (33, 7, 3)))
    # original pixel (0, 0) (black) lands at (7, 3)
    np.testing.assert_array_equal(out[3, 7], [0, 0, 0])


def test_drift_mixed_signs() -> None:
    image, target = scene(40, 30, [(10, 8, 20, 18)])
    out, t = Drift().apply(image, target, dx=4, dy=-2)
    assert out.shape == (32, 36, 3)
    np.testing.assert_array_equal(t["boxes"], [[6, 10, 16, 20]])
    assert red_under_boxes(out, t["boxes"])


def test_drift_shift_range_is_bounded_by_boxes_and_maxima() -> None:
    # crop limited by the smallest x1 (floor), padding by the maximum
    assert Drift.shift_range(1242, np.array([300.0, 12.7]), 150) == (-150, 12)
    assert Drift.shift_range(1242, np.array([300.0]), 150) == (-150, 150)
    assert Drift.shift_range(1242, np.array([0.0]), 150) == (-150, 0)
    assert Drift.shift_range(1242, np.array([-3.0]), 150) == (-150, 0)  # box already past the edge
    assert Drift.shift_range(1242, np.zeros(0), 150) == (-150, 150)  # no boxes
    assert Drift.shift_range(100, np.zeros(0), 150) == (-150, 99)  # keep at least one pixel


def test_random_drift_never_cuts_a_box_and_pixels_follow() -> None:
    boxes = [(9, 5, 30, 20), (50, 3, 70, 40), (80, 30, 95, 44)]
    image, target = scene(100, 50, boxes)
    drift = Drift((40, 20))
    seen_dx, seen_dy = set(), set()
    for seed in range(200):
        out, t = drift(image, target, np.random.default_rng(seed))
        h, w = out.shape[:2]
        dx, dy = 100 - w, 50 - h
        seen_dx.add(dx)
        seen_dy.add(dy)
        assert -40 <= dx <= 9 and -20 <= dy <= 3
        b = t["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        sizes = target["boxes"][:, 2:] - target["boxes"][:, :2]
        np.testing.assert_array_equal(b[:, 2:] - b[:, :2], sizes)
        np.testing.assert_array_equal(b, target["boxes"] - np.array([dx, dy, dx, dy], np.float32))
        assert red_under_boxes(out, b)
    assert min(seen_dx) < 0 < max(seen_dx) == 9  # both crops and pads, crops up to the bound
    assert min(seen_dy) < 0 < max(seen_dy)


def test_drift_without_objects() -> None:
    image = np.full((20, 30, 3), 9, dtype=np.uint8)
    target = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    for seed in range(20):
        out, t = Drift((50, 50))(image, target, np.random.default_rng(seed))
        assert 1 <= out.shape[0] <= 70 and 1 <= out.shape[1] <= 80
        assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)


def test_drift_does_not_modify_inputs() -> None:
    image, target = scene(40, 30, [(10, 8, 20, 18)])
    image_copy, boxes_copy = image.copy(), target["boxes"].copy()
    Drift().apply(image, target, dx=5, dy=-5)
    np.testing.assert_array_equal(image, image_copy)
    np.testing.assert_array_equal(target["boxes"], boxes_copy)


# --- HorizontalFlip ------------------------------------------------------------------------------


def test_flip_by_hand() -> None:
    image, target = scene(10, 6, [(1, 2, 4, 5)])
    image[0, 0] = GREEN
    out, t = HorizontalFlip.apply(image, target)
    # x -> W - x: (1, 2, 4, 5) -> (10 - 4, 2, 10 - 1, 5)
    np.testing.assert_array_equal(t["boxes"], [[6, 2, 9, 5]])
    assert red_under_boxes(out, t["boxes"])
    np.testing.assert_array_equal(out[0, 9], GREEN)


def test_flip_twice_is_identity() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (7, 13, 3), dtype=np.uint8)
    target = {"boxes": np.array([[0, 1, 13, 7], [2.5, 0, 3.25, 4]], np.float32),
              "labels": np.array([0, 1])}
    once, t1 = HorizontalFlip.apply(image, target)
    twice, t2 = HorizontalFlip.apply(once, t1)
    np.testing.assert_array_equal(twice, image)
    np.testing.assert_array_equal(t2["boxes"], target["boxes"])
    np.testing.assert_array_equal(t1["boxes"][0], [0, 1, 13, 7])  # full-width box maps to itself


def test_flip_probability_extremes() -> None:
    image, target = scene(10, 6, [(1, 2, 4, 5)])
    for seed in range(10):
        _, t = HorizontalFlip(0.0)(image, target, np.random.default_rng(seed))
        np.testing.assert_array_equal(t["boxes"], target["boxes"])
        _, t = HorizontalFlip(1.0)(image, target, np.random.default_rng(seed))
        np.testing.assert_array_equal(t["boxes"], [[6, 2, 9, 5]])


def test_flip_half_the_time() -> None:
    image, target = scene(10, 6, [(1, 2, 4, 5)])
    flips = sum(
        HorizontalFlip(0.5)(image, target, np.random.default_rng(s))[1]["boxes"][0, 0] == 6
        for s in range(400)
    )
    assert 150 < flips < 250


# --- Resize --------------------------------------------------------------------------------------


def test_resize_scales_boxes_by_the_ratios() -> None:
    image, target = scene(20, 10, [(2, 2, 6, 8)])
    out, t = Resize((40, 5))(image, target)
    assert out.shape == (5, 40, 3) and out.dtype == np.uint8
    # x * 40/20 = 2x, y * 5/10 = y/2
    np.testing.assert_array_equal(t["boxes"], [[4, 1, 12, 4]])


def test_resize_kitti_size_to_network() -> None:
    image = np.zeros((375, 1242, 3), np.uint8)
    target = {"boxes": np.array([[621.0, 187.5, 1242.0, 375.0]], np.float32),
              "labels": np.array([0])}
    out, t = Resize((1248, 384))(image, target)
    assert out.shape == (384, 1248, 3)
    np.testing.assert_allclose(t["boxes"], [[624.0, 192.0, 1248.0, 384.0]], rtol=1e-6)


def test_resize_keeps_uniform_colour_and_empty_targets() -> None:
    image = np.full((10, 20, 3), (10, 200, 30), dtype=np.uint8)
    target = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    out, t = Resize((7, 13))(image, target)
    assert out.shape == (13, 7, 3)
    assert (out == (10, 200, 30)).all()
    assert t["boxes"].shape == (0, 4)


# --- Pipelines -----------------------------------------------------------------------------------


def test_build_transforms_contents() -> None:
    assert [type(t) for t in build_transforms((64, 32), train=False).transforms] == [Resize]
    train = build_transforms((64, 32), train=True)
    assert [type(t) for t in train.transforms] == [Drift, HorizontalFlip, Resize]
    off = build_transforms((64, 32), train=True, drift=(0, 0), flip_prob=0.0)
    assert [type(t) for t in off.transforms] == [Resize]


def test_train_pipeline_is_reproducible_and_keeps_content_under_boxes() -> None:
    image, target = scene(120, 60, [(30, 20, 70, 50)])
    pipeline = build_transforms((96, 48), train=True, drift=(30, 15))
    for seed in range(30):
        out1, t1 = pipeline(image, target, np.random.default_rng(seed))
        out2, t2 = pipeline(image, target, np.random.default_rng(seed))
        np.testing.assert_array_equal(out1, out2)
        np.testing.assert_array_equal(t1["boxes"], t2["boxes"])
        assert out1.shape == (48, 96, 3)
        x1, y1, x2, y2 = t1["boxes"][0]
        assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 48
        # the interior of the moved box (1 px margin for the bilinear edge) is red
        inner = out1[int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1]
        assert inner.size and (inner == RED).all()


# --- RandomCrop ----------------------------------------------------------------------------------


def test_crop_by_hand_moves_clips_and_drops_boxes() -> None:
    # boxes: inside after clipping (5/6 visible), cut to a third (dropped), outside (dropped)
    image, target = scene(100, 50, [(10, 10, 30, 40), (40, 5, 50, 20), (90, 0, 100, 10)])
    out, t = RandomCrop((40, 30)).apply(image, target, x0=5, y0=5)
    np.testing.assert_array_equal(out, image[5:35, 5:45])
    # box 0: (10,10,30,40) - (5,5) = (5,5,25,35), clipped to height 30: 20x25 of 20x30 visible
    # box 1: (35,0,45,15) clipped to (35,0,40,15): 5x15 of 10x15 = 0.5 visible -> kept (>= 0.5)
    np.testing.assert_array_equal(t["boxes"], [[5, 5, 25, 30], [35, 0, 40, 15]])
    np.testing.assert_array_equal(t["labels"], [0, 1])
    _, t = RandomCrop((40, 30)).apply(image, target, x0=4, y0=5)
    # box 1, (36,0,46,15), now keeps 4 of 10 columns (0.4 < 0.5): no longer a target
    np.testing.assert_array_equal(t["boxes"], [[6, 5, 26, 30]])
    np.testing.assert_array_equal(t["labels"], [0])


def test_focused_crop_holds_the_object_whole_and_positions_vary() -> None:
    image, target = scene(200, 60, [(150, 30, 170, 55)])
    crop = RandomCrop((64, 40), focus=1.0)
    starts = set()
    for seed in range(200):
        out, t = crop(image, target, np.random.default_rng(seed))
        assert out.shape == (40, 64, 3)
        assert len(t["boxes"]) == 1
        x1, y1, x2, y2 = t["boxes"][0]
        assert (x2 - x1, y2 - y1) == (20, 25)  # whole, not clipped
        assert red_under_boxes(out, t["boxes"])
        starts.add((150 - int(x1), 30 - int(y1)))
    # every window start holding the box: x0 in [170-64, 150] = 45 values, y0 in [55-40, 20] = 6
    assert all(106 <= x0 <= 150 and 15 <= y0 <= 20 for x0, y0 in starts)
    assert len(starts) > 100


def coordinates(width: int, height: int) -> np.ndarray:
    """An image whose pixel (x, y) holds (x, y, 0): a crop's first pixel says where it starts."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = np.arange(width)[None, :]
    image[..., 1] = np.arange(height)[:, None]
    return image


def test_unfocused_crop_reaches_every_window_start() -> None:
    image = coordinates(50, 20)
    target = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    starts = set()
    for seed in range(400):
        out, t = RandomCrop((40, 16), focus=0.0)(image, target, np.random.default_rng(seed))
        assert out.shape == (16, 40, 3) and len(t["boxes"]) == 0
        starts.add((int(out[0, 0, 0]), int(out[0, 0, 1])))
    assert starts == {(x, y) for x in range(11) for y in range(5)}


def test_crop_smaller_than_its_object_holds_the_centre_and_bad_sizes() -> None:
    image = coordinates(100, 40)
    target = {"boxes": np.array([[0, 0, 100, 40]], np.float32), "labels": np.array([2])}
    for seed in range(50):
        out, t = RandomCrop((30, 20), focus=1.0)(image, target, np.random.default_rng(seed))
        x0, y0 = int(out[0, 0, 0]), int(out[0, 0, 1])
        assert x0 <= 50 <= x0 + 30 and y0 <= 20 <= y0 + 20  # the box centre (50, 20) inside
        assert len(t["boxes"]) == 0 and len(t["labels"]) == 0  # 600 of 4000 px visible: dropped
    with pytest.raises(ValueError):
        RandomCrop((0, 10))
    with pytest.raises(ValueError):
        RandomCrop((10, 10), focus=2.0)
    with pytest.raises(ValueError):
        RandomCrop((120, 10))(image, target)


def test_resize_crop_is_resize_then_crop_resampling_only_the_window() -> None:
    # a 100x60 scene with one red box (20,20,40,40), halved to 50x30 and cut 24x16: the box is
    # (10,10,20,20) at the input and whole in the window (focus 1): x0 in [20-24, 10] = [0, 10],
    # y0 in [20-16, 10] = [4, 10]
    image, target = scene(100, 60, [(20, 20, 40, 40)])
    fused = ResizeCrop((50, 30), (24, 16), focus=1.0)
    two = Compose([Resize((50, 30)), RandomCrop((24, 16), focus=1.0)])
    starts = set()
    for seed in range(40):
        out, t = fused(image, target, np.random.default_rng(seed))
        ref, t_ref = two(image, target, np.random.default_rng(seed))
        assert out.shape == ref.shape == (16, 24, 3)
        np.testing.assert_array_equal(t["boxes"], t_ref["boxes"])  # the same window, same boxes
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # Pillow's rounding
        ((x1, y1, x2, y2),) = t["boxes"]
        assert (x2 - x1, y2 - y1) == (10, 10)
        x0, y0 = 10 - int(x1), 10 - int(y1)
        assert 0 <= x0 <= 10 and 4 <= y0 <= 10
        starts.add((x0, y0))
        # halving blends a box's edge pixels with the black around it; the rest stays red
        assert (out[int(y1) + 1:int(y2) - 1, int(x1) + 1:int(x2) - 1] == RED).all()
    assert len(starts) > 10
    with pytest.raises(ValueError):
        ResizeCrop((50, 30), (60, 16))


def test_build_transforms_crops_only_in_training() -> None:
    train = build_transforms((64, 32), train=True, crop=(48, 16))
    assert [type(t) for t in train.transforms] == [Drift, HorizontalFlip, ResizeCrop]
    assert [type(t) for t in build_transforms((64, 32), train=False, crop=(48, 16)).transforms] \
        == [Resize]
    image, target = scene(128, 64, [(40, 20, 80, 50)])
    out, t = train(image, target, np.random.default_rng(0))
    assert out.shape == (16, 48, 3)


def test_compose_passes_the_same_rng() -> None:
    image, target = scene(10, 6, [(1, 2, 4, 5)])
    composed = Compose([HorizontalFlip(0.5), HorizontalFlip(0.5)])
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    _, t = composed(image, target, rng_a)
    first, second = rng_b.random() < 0.5, rng_b.random() < 0.5
    expected = [[6, 2, 9, 5]] if first != second else [[1, 2, 4, 5]]
    np.testing.assert_array_equal(t["boxes"], expected)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Drift((-1, 0))
    with pytest.raises(ValueError):
        HorizontalFlip(1.5)
    with pytest.raises(ValueError):
        Resize((0, 10))
    image, target = scene(10, 6, [])
    with pytest.raises(ValueError):
        Drift().apply(image, target, dx=10, dy=0)


@pytest.mark.parametrize("src, dst", [((1242, 375), (1248, 384)), ((31, 17), (64, 40)),
                                      ((100, 50), (100, 80))])
def test_enlarging_with_opencv_matches_pillow_within_one_level(src, dst):
    pytest.importorskip("cv2")
    from PIL import Image

    from squeezedet.data.transforms import resize_image

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(src[1], src[0], 3), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(image).resize(dst, Image.Resampling.BILINEAR)).astype(int)
    got = resize_image(image, dst)
    assert got.shape == (dst[1], dst[0], 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - pillow).max() <= 1


def test_shrinking_is_pillows_antialiased_bilinear():
    from PIL import Image

    from squeezedet.data.transforms import resize_image

    image = np.zeros((40, 80, 3), np.uint8)
    image[:, ::2] = 255  # one-pixel stripes: shrinking by 2 without antialiasing would alias
    got = resize_image(image, (40, 20))
    expected = np.asarray(Image.fromarray(image).resize((40, 20), Image.Resampling.BILINEAR))
    assert np.array_equal(got, expected)
    assert np.abs(got.astype(int) - 128).max() <= 40  # stripes average towards mid grey


def test_opencv_runs_on_the_calling_thread_so_forked_workers_cannot_inherit_its_pool():
    """OpenCV's thread pool does not survive a fork (a DataLoader worker hung inside OpenCV in a
    demo run): the package sets it to run sequentially on first use, for which OpenCV reports
    one thread, and a worker forked after the parent resized images still resizes."""
    import multiprocessing

    from squeezedet.data.images import opencv

    cv2 = opencv()
    if cv2 is None:
        pytest.skip("OpenCV (the video extra) is not installed")
    assert cv2.getNumThreads() == 1
    # KITTI-sized, so that an OpenCV with threads would run the resize on its pool
    image = np.random.default_rng(0).integers(0, 255, (375, 1242, 3), dtype=np.uint8)
    assert resize_image(image, (1248, 384)).shape == (384, 1248, 3)  # the parent uses OpenCV
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        shape = pool.apply_async(_resized_shape, (image,)).get(timeout=60)
    assert shape == (384, 1248, 3)


def _resized_shape(image: np.ndarray) -> tuple[int, ...]:
    return resize_image(image, (1248, 384)).shape
