"""The small-data augmentations' box arithmetic, worked out by hand."""

import numpy as np
import pytest

from squeezedet.data.augment import (
    ColorJitter,
    Rotate90,
    ScaleCrop,
    VerticalFlip,
    clip_boxes,
    crop_window,
    mosaic,
)


def _target(boxes, labels=None):
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.arange(len(boxes)) if labels is None else np.asarray(labels)
    return {"boxes": boxes, "labels": labels.astype(np.int64), "image_id": "x"}


def _marked(w, h, x, y):
    """A black ``w x h`` image with one white pixel at ``(x, y)``."""
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[y, x] = 255
    return image


def test_vertical_flip_by_hand():
    image = _marked(6, 4, 2, 0)
    out, t = VerticalFlip.apply(image, _target([[1, 0.5, 3, 2]]))
    # H = 4: y1' = 4 - 2 = 2, y2' = 4 - 0.5 = 3.5; pixel row 0 -> row 3
    np.testing.assert_allclose(t["boxes"], [[1, 2, 3, 3.5]])
    assert out[3, 2, 0] == 255 and out[0, 2, 0] == 0


def test_rotate90_once_by_hand():
    # W = 6, H = 4; one counter-clockwise quarter turn: (x, y) -> (y, W - x), image 4 wide, 6 high
    image = _marked(6, 4, 5, 1)  # pixel [5, 6) x [1, 2)
    out, t = Rotate90.apply(image, _target([[5, 1, 6, 2], [1, 0, 3, 4]]), 1)
    assert out.shape == (6, 4, 3)
    np.testing.assert_allclose(t["boxes"], [[1, 0, 2, 1], [0, 3, 4, 5]])
    assert out[0, 1, 0] == 255  # the pixel box (1, 0, 2, 1): row 0, column 1


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotate90_boxes_follow_the_pixels(k):
    image = _marked(7, 5, 4, 3)
    out, t = Rotate90.apply(image, _target([[4, 3, 5, 4]]), k)
    x1, y1, x2, y2 = t["boxes"][0]
    assert (x2 - x1, y2 - y1) == (1, 1)
    assert out[int(y1), int(x1), 0] == 255 and out.sum() == 255 * 3
    assert out.shape[:2] == ((5, 7) if k % 2 == 0 else (7, 5))


def test_rotate90_twice_is_a_half_turn():
    _, t = Rotate90.apply(np.zeros((4, 6, 3), np.uint8), _target([[1, 0.5, 3, 2]]), 2)
    # half turn: (x, y) -> (W - x, H - y) = (6 - x, 4 - y)
    np.testing.assert_allclose(t["boxes"], [[3, 2, 5, 3.5]])


def test_clip_boxes_by_hand():
    boxes = [[-2, 0, 2, 2],    # half inside: kept as (0, 0, 2, 2)
             [-3, 0, 1, 2],    # a quarter inside: dropped at min_visible 0.5
             [8, 8, 12, 9]]    # (8, 8, 10, 9): half inside, kept
    clipped, keep = clip_boxes(np.array(boxes, float), 10, 10, 0.5)
    assert keep.tolist() == [True, False, True]
    np.testing.assert_allclose(clipped, [[0, 0, 2, 2], [8, 8, 10, 9]])


def test_crop_window_pads_outside_the_image():
    image = np.full((2, 2, 3), 9, dtype=np.uint8)
    out = crop_window(image, -1, 0, 3, 3, fill=(1, 2, 3))
    assert out.shape == (3, 3, 3)
    assert (out[0:2, 1:3] == 9).all()
    assert out[0, 0].tolist() == [1, 2, 3] and out[2, 1].tolist() == [1, 2, 3]


def test_scale_crop_zoom_in_by_hand():
    # window (x0, y0, ww, wh) = (10, 20, 50, 25) resized to 100 x 50: scale 2 both ways
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    zoom = ScaleCrop((100, 50))
    target = _target([[20, 25, 30, 35],    # -> (20, 10, 40, 30)
                      [55, 40, 70, 50],    # x 90..120, y 40..60 -> clipped (90, 40, 100, 50): 1/6 left
                      [0, 0, 5, 5]])       # outside the window entirely
    out, t = zoom.apply(image, target, 10, 20, 50, 25)
    assert out.shape == (50, 100, 3)
    np.testing.assert_allclose(t["boxes"], [[20, 10, 40, 30]])
    assert t["labels"].tolist() == [0]


def test_scale_crop_zoom_out_pads_and_shrinks():
    image = np.full((40, 80, 3), 200, dtype=np.uint8)
    zoom = ScaleCrop((80, 40))
    # window 160 x 80 starting at (-40, -20): scale 0.5, the image lands at (20, 10)-(60, 30)
    out, t = zoom.apply(image, _target([[0, 0, 80, 40], [40, 20, 60, 40]]), -40, -20, 160, 80)
    np.testing.assert_allclose(t["boxes"], [[20, 10, 60, 30], [40, 20, 50, 30]])
    assert out[20, 40].tolist() == [200, 200, 200]
    assert out[2, 2].tolist() != [200, 200, 200]  # padding (the mean colour)


def test_scale_crop_random_keeps_boxes_consistent_with_pixels():
    rng = np.random.default_rng(0)
    zoom = ScaleCrop((64, 64), scale=(0.5, 2.0), focus=1.0, min_visible=1.0)
    image = np.zeros((128, 128, 3), dtype=np.uint8)
    image[40:60, 70:90] = 255
    for _ in range(20):
        out, t = zoom(image, _target([[70, 40, 90, 60]]), rng)
        assert out.shape == (64, 64, 3)
        for x1, y1, x2, y2 in t["boxes"]:
            cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
            assert out[cy, cx, 0] > 128  # the box's centre is on the white square


def test_colour_jitter_identity_and_brightness():
    image = np.array([[[100, 50, 10]]], dtype=np.uint8)
    assert ColorJitter.apply(image, 1.0, 1.0, 1.0).tolist() == image.tolist()
    assert ColorJitter.apply(image, 1.5, 1.0, 1.0).tolist() == [[[150, 75, 15]]]
    # saturation 0: every pixel becomes its grey 0.299*100 + 0.587*50 + 0.114*10 = 60.39 -> 60
    assert ColorJitter.apply(image, 1.0, 1.0, 0.0).tolist() == [[[60, 60, 60]]]
    # contrast 0 on one pixel: the pixel's mean grey is the image's, same result
    assert ColorJitter.apply(image, 1.0, 0.0, 1.0).tolist() == [[[60, 60, 60]]]
    rng = np.random.default_rng(0)
    _, t = ColorJitter()(image, _target([[0, 0, 1, 1]]), rng)
    np.testing.assert_allclose(t["boxes"], [[0, 0, 1, 1]])


def test_mosaic_by_hand():
    class FixedCentre:  # the centre (cx, cy) = (60, 30) of a 100 x 40 output
        def __init__(self):
            self.values = iter([60, 30])

        def integers(self, lo, hi, endpoint=False):
            value = next(self.values)
            assert lo <= value <= hi
            return value

    images = [np.full((20, 50, 3), q * 50, dtype=np.uint8) for q in range(4)]
    # each source is 50 x 20, resized to 100 x 40: boxes double
    targets = [_target([[5, 5, 10, 10]], [0]),        # -> (10, 10, 20, 20), in quadrant 0 [0,60)x[0,30)
               _target([[10, 0, 20, 5]], [1]),        # -> (20, 0, 40, 10), outside [60,100)x[0,30)
               _target([[20, 14, 40, 18]], [2]),      # -> (40, 28, 80, 36): clipped to x<60, y>=30
               _target([[35, 15, 45, 20]], [3])]      # -> (70, 30, 90, 40) whole in quadrant 3
    out, t = mosaic(list(zip(images, targets, strict=True)), (100, 40), FixedCentre(),
                    min_visible=0.25)
    # quadrant 2's box: (40, 30, 60, 36) keeps (20*6)/(40*8) = 0.375 of its area
    np.testing.assert_allclose(t["boxes"], [[10, 10, 20, 20], [40, 30, 60, 36], [70, 30, 90, 40]])
    assert t["labels"].tolist() == [0, 2, 3]
    assert out[0, 0, 0] == 0 and out[0, 99, 0] == 50 and out[39, 0, 0] == 100
    assert out[39, 99, 0] == 150 and out[29, 59, 0] == 0 and out[30, 60, 0] == 150


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="zoom scale"):
        ScaleCrop((10, 10), scale=(2.0, 1.0))
    with pytest.raises(ValueError, match="vertical flip"):
        VerticalFlip(1.5)
    with pytest.raises(ValueError, match="brightness"):
        ColorJitter(brightness=1.0)
    with pytest.raises(ValueError, match="4 samples"):
        mosaic([], (10, 10), np.random.default_rng(0))
