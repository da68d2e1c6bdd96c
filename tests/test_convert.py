"""Converting between formats keeps images, boxes, labels, ignored flags and the split."""

from __future__ import annotations

import numpy as np
import pytest
from own_data import OBJECTS, WRITERS

from squeezedet.cli import main
from squeezedet.data.formats import detect_format, load_source, write_source
from squeezedet.data.kitti import KittiDataset
from squeezedet.data.samples import IGNORE_OCCLUSION
from squeezedet.errors import SqueezeDetError


def objects_of(source):
    """id -> sorted (type, box rounded to 1e-3, ignored) of every object."""
    return {s.image_id: sorted((o.type, tuple(np.round(o.box, 3)), o.occluded == IGNORE_OCCLUSION)
                               for o in s.objects) for s in source.samples}


@pytest.mark.parametrize("target", ["kitti", "coco", "voc", "yolo"])
def test_voc_to_every_format_and_back(tmp_path, target):
    src = load_source(WRITERS["voc"](tmp_path / "src", split_files=True))
    summary = write_source(src, target, tmp_path / target)
    assert summary["images"] == {"train": 2, "val": 1} and summary["classes"] == ["cat", "dog"]
    assert detect_format(tmp_path / target) == target
    out = load_source(tmp_path / target)
    assert out.classes == ("cat", "dog")
    assert sorted(s.image_id for s in out.split("train")) == ["a", "c"]
    assert [s.image_id for s in out.split("val")] == ["b"]
    want = objects_of(src)
    if target == "yolo":  # no "difficult" flag: the difficult dog is dropped
        assert summary["dropped_ignored"] == 1
        want = {k: [o for o in v if not o[2]] for k, v in want.items()}
    assert objects_of(out) == want
    back = tmp_path / f"{target}_voc"
    write_source(out, "voc", back)
    assert objects_of(load_source(back)) == want


def test_kitti_output_feeds_the_kitti_reader(tmp_path):
    src = load_source(WRITERS["coco"](tmp_path / "coco"))
    write_source(src, "kitti", tmp_path / "k")
    ds = KittiDataset(tmp_path / "k", "all", classes=("cat", "dog"), input_size=(200, 100))
    a = ds.ids.index("a")
    assert [o.box for o in ds.ground_truth(a)] == [b for _, b, _ in OBJECTS["a"]]
    assert [o.occluded for o in ds.ground_truth(a)] == [0, IGNORE_OCCLUSION]


def test_convert_command_selects_classes(tmp_path, capsys):
    root = WRITERS["voc"](tmp_path / "voc")
    assert main(["convert", "--from", "voc", "--to", "yolo", "--classes", "dog", str(root),
                 str(tmp_path / "y")]) == 0
    assert "converted voc -> yolo" in capsys.readouterr().out
    out = load_source(tmp_path / "y")
    assert out.classes == ("dog",)
    assert (tmp_path / "y" / "classes.txt").read_text() == "dog\n"
    assert {o.type for s in out.samples for o in s.objects} == {"dog"}


def test_refuses_a_non_empty_destination(tmp_path):
    src = load_source(WRITERS["voc"](tmp_path / "voc"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(SqueezeDetError, match="not empty"):
        write_source(src, "kitti", tmp_path / "busy")
    assert main(["convert", "--to", "kitti", str(tmp_path / "voc"), str(tmp_path / "busy")]) == 2
