"""KITTI data set reader, image loading and the split command, on tiny files written here."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from squeezedet.cli import main
from squeezedet.data.dataset import collate
from squeezedet.data.images import load_image
from squeezedet.data.kitti import KittiDataset, make_split
from squeezedet.errors import DataError, SqueezeDetError

LINE15 = "{} 0.00 0 -1.58 {:.2f} {:.2f} {:.2f} {:.2f} 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"


def label(kind: str, box: tuple[float, float, float, float], score: float | None = None) -> str:
    line = LINE15.format(kind, *box)
    return line if score is None else f"{line} {score}"


def make_root(
    tmp_path: Path,
    samples: dict[str, list[str]],
    size: tuple[int, int] = (40, 20),
    ext: str = ".png",
) -> Path:
    """A KITTI-layout folder: per id an image (W, H = size; pixel (x, y) is RGB (x, y, 7)) and a
    label file with the given lines."""
    root = tmp_path / "kitti"
    (root / "training" / "image_2").mkdir(parents=True, exist_ok=True)
    (root / "training" / "label_2").mkdir(parents=True, exist_ok=True)
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w]
    pixels = np.stack([xs, ys, np.full_like(xs, 7)], axis=2).astype(np.uint8)
    for image_id, lines in samples.items():
        Image.fromarray(pixels).save(root / "training" / "image_2" / f"{image_id}{ext}")
        (root / "training" / "label_2" / f"{image_id}.txt").write_text(
            "".join(f"{line}\n" for line in lines)
        )
    return root


def write_split(root: Path, name: str, ids: list[str]) -> None:
    (root / "ImageSets").mkdir(exist_ok=True)
    (root / "ImageSets" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


# --- labels through the data set ----------------------------------------------------------------


def test_targets_classes_and_ground_truth(tmp_path: Path) -> None:
    root = make_root(tmp_path, {
        "000000": [
            label("Car", (4, 2, 10, 8)),
            label("DontCare", (0, 0, 3, 3)),
            label("pedestrian", (20, 4, 24, 16)),  # lower case still matches
            label("Van", (30, 5, 38, 15)),
            label("Cyclist", (12, 1, 18, 19), score=0.9),  # 16 fields
        ],
    })
    ds = KittiDataset(root, split="all", input_size=(80, 10))
    assert ds.classes == ("Car", "Pedestrian", "Cyclist")
    assert ds.ids == ["000000"] and len(ds) == 1
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 10, 80)
    assert target["image_id"] == "000000"
    assert target["orig_size"] == (20, 40)
    assert target["labels"].dtype == torch.int64 and target["boxes"].dtype == torch.float32
    assert target["labels"].tolist() == [0, 1, 2]
    # input (80, 10) from (40, 20): x * 2, y / 2
    torch.testing.assert_close(
        target["boxes"],
        torch.tensor([[8, 1, 20, 4], [40, 2, 48, 8], [24, 0.5, 36, 9.5]], dtype=torch.float32),
    )
    gt = ds.ground_truth(0)
    assert [o.type for o in gt] == ["Car", "DontCare", "pedestrian", "Van", "Cyclist"]
    assert gt[1].box == (0.0, 0.0, 3.0, 3.0)
    assert gt[4].score == pytest.approx(0.9)
    assert ds.image_path(0) == root / "training" / "image_2" / "000000.png"


def test_class_selection_and_order(tmp_path: Path) -> None:
    root = make_root(tmp_path, {
        "000000": [label("Car", (4, 2, 10, 8)), label("Pedestrian", (20, 4, 24, 16)),
                   label("Cyclist", (1, 1, 2, 2))],
    })
    ds = KittiDataset(root, split=None, classes=("PEDESTRIAN", "car"), input_size=(40, 20))
    assert ds.classes == ("Pedestrian", "Car")  # KITTI's spelling, the user's order
    _, target = ds[0]
    assert target["labels"].tolist() == [1, 0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[4.0, 2, 10, 8], [20, 4, 24, 16]]))
    assert ds.class_counts() == {"Pedestrian": 1, "Car": 1}
    with pytest.raises(SqueezeDetError, match="twice"):
        KittiDataset(root, split=None, classes=("Car", "CAR"))
    with pytest.raises(SqueezeDetError, match="DontCare"):
        KittiDataset(root, split=None, classes=("Car", "DontCare"))


def test_image_without_objects(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"000000": [], "000001": [label("DontCare", (0, 0, 5, 5))]})
    for train in (False, True):
        ds = KittiDataset(root, split="all", input_size=(32, 16), train=train)
        for i in range(2):
            image, target = ds[i]
            assert image.shape == (3, 16, 32)
            assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert len(ds.ground_truth(0)) == 0 and len(ds.ground_truth(1)) == 1
    images, targets = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 16, 32) and images.dtype == torch.uint8
    assert [t["image_id"] for t in targets] == ["000000", "000001"]


def test_eval_image_pixels_at_native_size(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"000000": [label("Car", (4, 2, 10, 8))]})
    image, _ = KittiDataset(root, split="all", input_size=(40, 20))[0]
    # pixel (x, y) was written as RGB (x, y, 7)
    assert image[:, 5, 9].tolist() == [9, 5, 7]
    assert image[:, 19, 39].tolist() == [39, 19, 7]


def test_jpeg_images_are_found(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"000000": [label("Car", (4, 2, 10, 8))]}, ext=".jpg")
    ds = KittiDataset(root, split="all", input_size=(40, 20))
    assert ds.image_path(0).suffix == ".jpg"
    assert ds[0][0].shape == (3, 20, 40)


# --- bad data ------------------------------------------------------------------------------------


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"000000": [label("Car", (4, 2, 10, 8)), "Car 0.0 0 1.0 5 5"]})
    with pytest.raises(DataError, match=r"label_2/000000\.txt:2: expected 15 fields") as info:
        KittiDataset(root, split="all")
    assert info.value.line == 2


def test_inverted_box_names_file_and_line(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"000003": ["", label("Car", (10, 2, 4, 8))]})
    with pytest.raises(DataError, match=r"000003\.txt:2: box .* x2 < x1"):
        KittiDataset(root, split="all")


def test_label_without_image(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"000000": [label("Car", (4, 2, 10, 8))]})
    (root / "training" / "label_2" / "000001.txt").write_text(label("Car", (1, 1, 2, 2)) + "\n")
    with pytest.raises(DataError, match=r"000001\.txt: no image for this label"):
        KittiDataset(root, split="all")


def test_split_id_missing(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"000000": [label("Car", (4, 2, 10, 8))]})
    write_split(root, "val", ["000000", "000042"])
    with pytest.raises(DataError, match=r"ImageSets/val\.txt:2: id 000042 is listed"):
        KittiDataset(root, split="val")
    ds = KittiDataset(root, split="val", skip_bad=True)
    assert ds.ids == ["000000"] and len(ds.skipped) == 1


def test_missing_split_file_tells_what_to_run(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"000000": [], "000001": []})
    with pytest.raises(SqueezeDetError, match="run `squeezedet split"):
        KittiDataset(root, split="train")
    assert len(KittiDataset(root, split="all")) == 2
    assert len(KittiDataset(root, split=None)) == 2


def test_not_a_kitti_folder(tmp_path: Path) -> None:
    with pytest.raises(SqueezeDetError, match="does not exist"):
        KittiDataset(tmp_path / "nowhere", split="all")
    (tmp_path / "x").mkdir()
    with pytest.raises(SqueezeDetError, match="label_2"):
        KittiDataset(tmp_path / "x", split="all")


def test_skip_bad_counts_label_problems(tmp_path: Path) -> None:
    good = [label("Car", (4, 2, 10, 8))]
    root = make_root(tmp_path, {
        "000000": good,
        "000001": ["Car 1 2"],
        "000002": good,
        "000003": [label("Car", (9, 1, 2, 3))],
    })
    (root / "training" / "label_2" / "000004.txt").write_text("")  # no image
    with pytest.raises(DataError, match=r"000001\.txt:1: .*and 2 more bad samples"):
        KittiDataset(root, split="all")
    ds = KittiDataset(root, split="all", skip_bad=True)
    assert ds.ids == ["000000", "000002"]
    assert len(ds.skipped) == 3
    assert "000001.txt:1" in ds.skipped[0] and "000004.txt" in ds.skipped[2]


def test_corrupt_and_empty_images(tmp_path: Path) -> None:
    good = [label("Car", (4, 2, 10, 8))]
    root = make_root(tmp_path, {"000000": good, "000001": good, "000002": good})
    image_dir = root / "training" / "image_2"
    (image_dir / "000001.png").write_bytes(b"this is not a png")
    ds = KittiDataset(root, split="all", input_size=(40, 20))
    assert len(ds) == 3  # images are checked when loaded
    with pytest.raises(DataError, match=r"000001\.png: not a readable image"):
        ds[1]
    (image_dir / "000001.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"000001\.png: image file is empty"):
        ds[1]

    skipping = KittiDataset(root, split="all", input_size=(40, 20), skip_bad=True)
    image, target = skipping[1]  # replaced by the next good sample
    assert target["image_id"] == "000002"
    assert len(skipping.skipped) == 1 and "000001.png" in skipping.skipped[0]
    skipping[1]
    assert len(skipping.skipped) == 1  # a bad sample is recorded once


def test_all_images_bad_with_skip_bad(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"000000": []})
    (root / "training" / "image_2" / "000000.png").write_bytes(b"\x89PNG junk")
    ds = KittiDataset(root, split="all", skip_bad=True)
    with pytest.raises(SqueezeDetError, match="no readable image"):
        ds[0]


def test_index_out_of_range(tmp_path: Path) -> None:
    ds = KittiDataset(make_root(tmp_path, {"000000": []}), split="all", input_size=(8, 8))
    with pytest.raises(IndexError):
        ds[1]
    assert ds[-1][1]["image_id"] == "000000"


# --- image formats (pixel values worked out by hand) ---------------------------------------------


def test_load_grayscale(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    Image.fromarray(np.array([[0, 77], [200, 255]], dtype=np.uint8), mode="L").save(path)
    image = load_image(path)
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], [[0, 77], [200, 255]])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_load_rgba_drops_alpha(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    pixels = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], dtype=np.uint8)
    Image.fromarray(pixels, mode="RGBA").save(path)
    np.testing.assert_array_equal(load_image(path), [[[10, 20, 30], [40, 50, 60]]])


def test_load_palette(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    img = Image.fromarray(np.array([[0, 1, 2]], dtype=np.uint8), mode="P")
    img.putpalette([5, 6, 7, 100, 0, 50, 255, 254, 253])
    img.save(path)
    np.testing.assert_array_equal(load_image(path), [[[5, 6, 7], [100, 0, 50], [255, 254, 253]]])


def test_load_16bit_gray_scales_not_clips(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(np.array([[0, 255, 256, 32768, 65535]], dtype=np.uint16)).save(path)
    image = load_image(path)
    # v >> 8: 0 -> 0, 255 -> 0, 256 -> 1, 32768 -> 128, 65535 -> 255
    np.testing.assert_array_equal(image[0, :, 0], [0, 0, 1, 128, 255])
    np.testing.assert_array_equal(image[0, :, 1], image[0, :, 2])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_load_16bit_rgb(tmp_path: Path) -> None:
    """A 16-bit RGB PNG written byte by byte (Pillow cannot write one)."""
    values = np.array([[[0, 256, 65535], [4660, 32768, 255]]], dtype=">u2")  # 4660 = 0x1234
    raw = b"".join(b"\x00" + row.tobytes() for row in values)  # filter type 0 per row
    ihdr = struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
           + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))
    path = tmp_path / "rgb16.png"
    path.write_bytes(png)
    np.testing.assert_array_equal(load_image(path), [[[0, 1, 255], [0x12, 128, 0]]])


def test_load_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "c.jpg"
    Image.new("RGB", (16, 16), (200, 100, 50)).save(path, quality=95)
    image = load_image(path)
    assert image.shape == (16, 16, 3)
    assert np.abs(image.astype(int) - [200, 100, 50]).max() <= 3


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_image(tmp_path / "empty.png")
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError, match=r"truncated\.png: "):
        load_image(truncated)


def test_rgb_png_decodes_to_the_same_pixels_with_or_without_opencv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    from squeezedet.data import images

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(pixels).save(path)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([pixels, pixels[..., :1]])).save(rgba)
    # which files OpenCV may decode: complete 8-bit RGB PNGs only
    size = path.stat().st_size
    assert images._complete_rgb8_png(path, size)
    assert not images._complete_rgb8_png(rgba, rgba.stat().st_size)  # colour type 6
    cut = tmp_path / "cut.png"
    cut.write_bytes(path.read_bytes()[:-12])  # no IEND chunk: left to Pillow
    assert not images._complete_rgb8_png(cut, size - 12)
    np.testing.assert_array_equal(load_image(path), pixels)  # OpenCV when installed
    np.testing.assert_array_equal(load_image(rgba), pixels)
    np.testing.assert_array_equal(load_image(cut), pixels)
    garbled = bytearray(path.read_bytes())
    garbled[60:90] = bytes(30)  # inside the pixel data: the header and IEND still look right
    bad = tmp_path / "garbled.png"
    bad.write_bytes(bytes(garbled))
    assert images._complete_rgb8_png(bad, len(garbled))
    with pytest.raises(DataError, match=r"garbled\.png: corrupt"):
        load_image(bad)
    assert capfd.readouterr().err == ""  # no "libpng error" from OpenCV's decoder
    monkeypatch.setattr(images, "_CV2", None)  # as without OpenCV: Pillow alone
    np.testing.assert_array_equal(load_image(path), pixels)
    if importlib.util.find_spec("cv2") is not None:
        monkeypatch.setattr(images, "_CV2", False)
        assert images.opencv() is not None
        assert images._opencv_rgb8_png(path) is not None


# --- reproducible augmentation ------------------------------------------------------------------


def _drifting_root(tmp_path: Path) -> Path:
    return make_root(
        tmp_path,
        {f"{i:06d}": [label("Car", (30, 10, 60, 30))] for i in range(6)},
        size=(120, 60),
    )


def test_train_mode_is_reproducible_per_seed_epoch_index(tmp_path: Path) -> None:
    root = _drifting_root(tmp_path)
    a = KittiDataset(root, split="all", input_size=(64, 32), train=True, drift=(20, 10), seed=1)
    b = KittiDataset(root, split="all", input_size=(64, 32), train=True, drift=(20, 10), seed=1)
    boxes_a = [a[i][1]["boxes"] for i in range(6)]
    boxes_b = [b[i][1]["boxes"] for i in reversed(range(6))][::-1]  # order does not matter
    for x, y in zip(boxes_a, boxes_b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    a.set_epoch(1)
    assert any(not torch.equal(a[i][1]["boxes"], boxes_a[i]) for i in range(6))
    a.set_epoch(0)
    torch.testing.assert_close(a[3][1]["boxes"], boxes_a[3], rtol=0, atol=0)
    # samples of one epoch differ from each other (all six images are identical)
    assert len({tuple(x[0].tolist()) for x in boxes_a}) > 1


def test_same_samples_with_loader_workers(tmp_path: Path) -> None:
    root = _drifting_root(tmp_path)
    ds = KittiDataset(root, split="all", input_size=(64, 32), train=True, drift=(20, 10), seed=4)
    ds.set_epoch(2)

    def boxes(workers: int) -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers,
                                             collate_fn=collate)
        return [t["boxes"] for _, targets in loader for t in targets]

    for x, y in zip(boxes(0), boxes(2), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_cached_images_serve_samples_without_the_files(tmp_path: Path) -> None:
    root = _drifting_root(tmp_path)
    plain = KittiDataset(root, split="all", input_size=(64, 32), train=True, drift=(20, 10), seed=3)
    cached = KittiDataset(root, split="all", input_size=(64, 32), train=True, drift=(20, 10), seed=3)
    assert cached.cache_images() == 6 * 60 * 120 * 3  # six 120x60 RGB images, one byte a value
    for path in root.glob("training/image_2/*.png"):
        path.unlink()  # from now on only the cache can serve images
    with pytest.raises(DataError, match="not found|no such|missing"):
        plain[0]  # the files are gone
    first = [cached[i] for i in range(6)]
    again = [cached[i] for i in range(6)]  # the cache is not changed by being used
    for (im_a, t_a), (im_b, t_b) in zip(first, again, strict=True):
        assert torch.equal(im_a, im_b) and torch.equal(t_a["boxes"], t_b["boxes"])
        t_a["boxes"] += 1000  # a caller changing its target does not reach the cache
    assert torch.equal(cached[0][1]["boxes"], again[0][1]["boxes"])


def test_cached_samples_equal_uncached_ones(tmp_path: Path) -> None:
    root = _drifting_root(tmp_path)
    plain = KittiDataset(root, split="all", input_size=(64, 32), train=True, drift=(20, 10), seed=3)
    cached = KittiDataset(root, split="all", input_size=(64, 32), train=True, drift=(20, 10), seed=3)
    cached.cache_images()
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(6):
            (im_a, t_a), (im_b, t_b) = plain[i], cached[i]
            assert torch.equal(im_a, im_b)
            assert torch.equal(t_a["boxes"], t_b["boxes"]) and torch.equal(t_a["labels"], t_b["labels"])


def test_caching_reports_or_skips_a_bad_image(tmp_path: Path) -> None:
    good = [label("Car", (4, 2, 10, 8))]
    root = make_root(tmp_path, {"000000": good, "000001": good})
    (root / "training" / "image_2" / "000001.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"000001\.png: not a readable image"):
        KittiDataset(root, split="all", input_size=(40, 20)).cache_images()
    skipping = KittiDataset(root, split="all", input_size=(40, 20), skip_bad=True)
    skipping.cache_images()
    assert len(skipping.skipped) == 1 and "000001.png" in skipping.skipped[0]
    assert skipping[1][1]["image_id"] == "000000"  # replaced by the next good sample


# --- split ---------------------------------------------------------------------------------------


def test_make_split_is_deterministic_and_disjoint() -> None:
    ids = [f"{i:06d}" for i in range(11)]
    train, val = make_split(ids, 0.5, seed=3)
    assert (train, val) == make_split(list(reversed(ids)), 0.5, seed=3)
    assert len(val) == 6 and len(train) == 5  # floor(5.5 + 0.5) = 6
    assert sorted(train + val) == ids and not set(train) & set(val)
    assert train == sorted(train)
    assert make_split(ids, 0.5, seed=4) != (train, val)
    assert len(make_split(ids, 0.01, seed=0)[1]) == 1  # at least one each
    assert len(make_split(ids, 0.99, seed=0)[0]) == 1
    with pytest.raises(SqueezeDetError):
        make_split(ids, 1.0)
    with pytest.raises(SqueezeDetError):
        make_split(ids[:1], 0.5)


def test_split_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root(tmp_path, {f"{i:06d}": [] for i in range(10)})
    (root / "training" / "label_2" / "000099.txt").write_text("")  # label without image: left out
    assert main(["split", str(root), "--val-fraction", "0.3", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "wrote 7 train and 3 val" in out and "1 label files have no image" in out
    train = (root / "ImageSets" / "train.txt").read_text().split()
    val = (root / "ImageSets" / "val.txt").read_text().split()
    assert (train, val) == make_split([f"{i:06d}" for i in range(10)], 0.3, seed=7)
    assert KittiDataset(root, split="train").ids == train
    assert KittiDataset(root, split="val").ids == val

    assert main(["split", str(root), "--seed", "8"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (root / "ImageSets" / "train.txt").read_text().split() == train  # untouched
    assert main(["split", str(root), "--seed", "8", "--overwrite"]) == 0
    assert (root / "ImageSets" / "val.txt").read_text().split() == make_split(
        [f"{i:06d}" for i in range(10)], 0.5, seed=8)[1]


def test_split_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["split", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("squeezedet split: error:") and err.count("\n") == 1
    root = make_root(tmp_path, {"000000": [], "000001": []})
    assert main(["split", str(root), "--val-fraction", "0"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
