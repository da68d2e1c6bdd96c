"""Readers of KITTI, COCO, VOC and YOLO data sets: the same tiny data set written by the tests in
each format (with the quirks of real files) loads to identical boxes and labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from own_data import CLASSES, OBJECTS, SIZES, WRITERS, expected

from squeezedet.config import TrainConfig
from squeezedet.data.dataset import DetectionDataset, collate
from squeezedet.data.formats import detect_format, load_source, open_dataset
from squeezedet.data.kitti import KittiDataset
from squeezedet.data.samples import IGNORE_OCCLUSION, select_classes
from squeezedet.errors import DataError, SqueezeDetError

FORMATS = ("kitti", "coco", "voc", "yolo")


@pytest.fixture(params=FORMATS)
def fmt_root(request, tmp_path) -> tuple[str, Path]:
    return request.param, WRITERS[request.param](tmp_path / request.param)


def test_detects_the_format(fmt_root):
    fmt, root = fmt_root
    assert detect_format(root) == fmt


def test_flat_voc_folder_is_detected(tmp_path):
    root = WRITERS["voc"](tmp_path / "flat", flat=True)
    assert detect_format(root) == "voc"
    assert [s.image_id for s in load_source(root).samples] == ["a", "b", "c"]


def test_unknown_folder_says_what_it_expected(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(SqueezeDetError, match="--format"):
        detect_format(tmp_path / "x")


def test_every_format_loads_the_same_objects(fmt_root):
    fmt, root = fmt_root
    source = load_source(root)
    assert source.format == fmt
    assert source.classes == CLASSES
    by_id = {s.image_id: s for s in source.samples}
    assert sorted(by_id) == ["a", "b", "c"]
    for image_id in OBJECTS:
        sample = by_id[image_id]
        assert sample.image_path.stem == image_id
        regular = [o for o in sample.objects if o.occluded != IGNORE_OCCLUSION]
        boxes, names = expected(image_id)
        np.testing.assert_allclose(np.array([o.box for o in regular]).reshape(-1, 4), boxes,
                                   atol=1e-6)
        assert [o.type for o in regular] == names
        assert all(o.truncated == 0 for o in sample.objects)
        ignored = [o for o in sample.objects if o.occluded == IGNORE_OCCLUSION]
        # YOLO cannot mark the difficult dog; the others keep it as an ignored object
        if fmt == "yolo":
            assert ignored == []
        else:
            want, _ = expected(image_id, with_difficult=True)
            assert [o.box for o in ignored] == [tuple(b) for b in want if
                                                tuple(b) not in map(tuple, boxes)]


def test_network_samples_are_identical_across_formats(tmp_path):
    """dataset[i] (image at network size, boxes scaled, labels, id, orig_size) agree."""
    results = {}
    for fmt in FORMATS:
        source = load_source(WRITERS[fmt](tmp_path / fmt))
        ds = DetectionDataset(source.split("all"), source.classes, input_size=(100, 50))
        results[fmt] = {ds.ids[i]: ds[i] for i in range(len(ds))}
    ref = results["voc"]
    for fmt, got in results.items():
        assert sorted(got) == ["a", "b", "c"], fmt
        for image_id, (image, target) in got.items():
            ref_image, ref_target = ref[image_id]
            assert image.dtype == torch.uint8 and image.shape == (3, 50, 100)
            assert torch.equal(image, ref_image)
            torch.testing.assert_close(target["boxes"], ref_target["boxes"], atol=1e-4, rtol=0)
            assert torch.equal(target["labels"], ref_target["labels"])
            w, h = SIZES[image_id]
            assert target["orig_size"] == (h, w) and target["image_id"] == image_id
    # hand-worked: b is 160x120 -> 100x50: dog (20.5, 30, 80, 110) -> (12.8125, 12.5, 50, 45.8333)
    _, target = ref["b"]
    torch.testing.assert_close(target["boxes"][0], torch.tensor([12.8125, 12.5, 50.0, 45.833333]))
    assert target["labels"].tolist() == [1, 0]
    # the difficult dog of a is no training target
    assert ref["a"][1]["labels"].tolist() == [0]


def test_classes_select_and_order(tmp_path):
    source = load_source(WRITERS["coco"](tmp_path / "coco"))
    assert select_classes(["Dog", "cat"], source.classes) == ("dog", "cat")
    ds = DetectionDataset(source.split("all"), ("dog",), input_size=(100, 50))
    b = ds.ids.index("b")
    assert ds[b][1]["labels"].tolist() == [0]  # only the dog, now label 0
    with pytest.raises(SqueezeDetError, match="its classes are: cat, dog"):
        select_classes(["horse"], source.classes, "root")


def test_explicit_splits(tmp_path):
    voc = load_source(WRITERS["voc"](tmp_path / "voc", split_files=True))
    coco = load_source(WRITERS["coco"](tmp_path / "coco", split_files=True))
    yolo = load_source(WRITERS["yolo"](tmp_path / "yolo", split_folders=True))
    for source in (voc, coco, yolo):
        assert sorted(s.image_id for s in source.split("train")) == ["a", "c"], source.format
        assert [s.image_id for s in source.split("val")] == ["b"], source.format
    assert "ImageSets/Main" in voc.split_rule
    assert "instances_train.json" in coco.split_rule
    assert "images/train" in yolo.split_rule


def test_default_split_is_deterministic_and_disjoint(tmp_path):
    source = load_source(WRITERS["voc"](tmp_path / "voc"))
    train = {s.image_id for s in source.split("train")}
    val = {s.image_id for s in source.split("val")}
    assert train.isdisjoint(val) and train | val == {"a", "b", "c"} and len(val) == 1
    again = load_source(tmp_path / "voc")
    assert {s.image_id for s in again.split("val")} == val


def test_open_dataset_gives_kitti_reader_for_kitti_and_base_for_others(tmp_path):
    kitti = WRITERS["kitti"](tmp_path / "kitti")
    cfg = TrainConfig(input_size=(64, 32), classes=("cat", "dog"), train_split="all",
                      val_split="all")
    train, val = open_dataset(cfg, kitti)
    assert isinstance(train, KittiDataset) and isinstance(val, KittiDataset)
    train, val = open_dataset(cfg, WRITERS["voc"](tmp_path / "voc"))
    assert isinstance(train, DetectionDataset) and train.train and not val.train
    assert train.metric == "ap" and train.classes == ("cat", "dog")
    images, targets = collate([val[i] for i in range(len(val))])
    assert images.shape == (3, 3, 32, 64) and len(targets) == 3
    # ground truth in original pixels, all classes, ignored objects kept
    a = val.ids.index("a")
    assert [o.box for o in val.ground_truth(a)] == [b for _, b, _ in OBJECTS["a"]]
    assert val.image_path(a).name == "a.png"


def test_classes_default_to_the_data(tmp_path):
    cfg = TrainConfig(input_size=(64, 32))
    train, _ = open_dataset(cfg, WRITERS["yolo"](tmp_path / "yolo"), need_val=False)
    assert train.classes == CLASSES


# ---------------------------------------------------------------- errors name file and line


def test_voc_malformed_xml_names_file_and_line(tmp_path):
    root = WRITERS["voc"](tmp_path / "voc")
    (root / "Annotations" / "b.xml").write_text("<annotation>\n<object>\n</annotation>\n")
    with pytest.raises(DataError, match=r"b\.xml:3: not well-formed XML"):
        load_source(root)
    source = load_source(root, skip_bad=True)
    assert [s.image_id for s in source.samples] == ["a", "c"] and len(source.skipped) == 1


def test_voc_bad_coordinate_names_the_object_line(tmp_path):
    root = WRITERS["voc"](tmp_path / "voc")
    text = (root / "Annotations" / "a.xml").read_text().replace("<xmax>190.0", "<xmax>abc")
    (root / "Annotations" / "a.xml").write_text(text)
    with pytest.raises(DataError, match=r"a\.xml:9: <xmax> is not a number"):
        load_source(root)


def test_voc_missing_image(tmp_path):
    root = WRITERS["voc"](tmp_path / "voc")
    (root / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"b\.xml: no image found"):
        load_source(root)


def test_yolo_class_out_of_range_and_unnormalised(tmp_path):
    root = WRITERS["yolo"](tmp_path / "yolo")
    label = root / "labels" / "b.txt"
    label.write_text("1 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"b\.txt:2: class index 2 is not one of 0\.\.1"):
        load_source(root)
    label.write_text("0 50 60 10 10\n")
    with pytest.raises(DataError, match=r"b\.txt:1: coordinates must be normalised"):
        load_source(root)


def test_yolo_polygon_lines_give_their_bounding_box(tmp_path):
    root = WRITERS["yolo"](tmp_path / "yolo")
    (root / "labels" / "b.txt").write_text("0 0.25 0.25 0.5 0.25 0.5 0.75 0.25 0.5\n")
    b = next(s for s in load_source(root).samples if s.image_id == "b")
    assert b.objects[0].box == (40.0, 30.0, 80.0, 90.0)  # 160x120 image


def test_coco_unknown_category_and_bad_json(tmp_path):
    root = WRITERS["coco"](tmp_path / "coco")
    path = root / "annotations" / "instances.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="unknown category_id 99"):
        load_source(root)
    path.write_text('{"images": [\n1,\n')
    with pytest.raises(DataError, match=r"instances\.json:3: not valid JSON"):
        load_source(root)


def test_kitti_with_tiles_goes_through_the_generic_reader(tmp_path):
    root = WRITERS["kitti"](tmp_path / "kitti")
    cfg = TrainConfig(input_size=(32, 32), classes=("cat",), tile=(100, 100), tile_overlap=0.0,
                      train_split="all", val_split="all")
    train, val = open_dataset(cfg, root)
    assert isinstance(train, DetectionDataset) and val.metric == "kitti"
    # a (200x100): 2 tiles; b (160x120): x at 0, 60 and y at 0, 20: 4 tiles; c: 2 tiles
    assert len(train) == 8
    assert train.ids[:2] == ["a@0_0", "a@100_0"]
