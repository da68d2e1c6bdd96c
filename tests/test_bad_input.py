"""The corpus of bad inputs: every subcommand, every data format (KITTI, COCO, VOC, YOLO).

Each case makes its own broken input in a temporary folder, runs ``squeezedet.cli.main`` in this
process and asserts the exit status, that no traceback was printed, and that the message names
the file (and line) or the setting at fault. Cases that must succeed are valid but unusual inputs
(grayscale, RGBA, 16-bit and palette images, CRLF line ends, byte-order marks, empty label files,
polygons). The table is :data:`CASES`; `test_corpus_covers_every_command_and_format` keeps it
complete.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from own_data import WRITERS
from PIL import Image
from tiny_data import make_tiny_kitti

import squeezedet
from squeezedet.checkpoint import save_checkpoint
from squeezedet.cli import COMMANDS, main

# ------------------------------------------------------------------ the shared, valid inputs


@dataclass
class World:
    """Valid inputs built once; every case copies what it breaks."""

    root: Path
    kitti: Path  # make_tiny_kitti: 4 images 128x64, ImageSets with every id in train and val
    coco: Path
    voc: Path
    yolo: Path
    ckpt: Path  # a 64x32 SqueezeDet checkpoint
    images: Path  # a folder of two PNG photos
    labels: Path  # KITTI label files for evaluate
    results: Path  # KITTI result files for evaluate


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    kitti = make_tiny_kitti(root / "kitti", n=4, size=(128, 64))
    formats = {name: WRITERS[name](root / name) for name in ("coco", "voc", "yolo")}
    model = squeezedet.create_model("squeezedet", input_size=(64, 32))
    ckpt = root / "model.pt"
    save_checkpoint({"model": model.state_dict(), "meta": model.metadata(), "config": {}}, ckpt)
    images = root / "photos"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 80, 3), 60 * i, np.uint8)).save(images / f"p{i}.png")
    labels, results = root / "labels", root / "results"
    labels.mkdir()
    results.mkdir()
    for i in range(2):
        (labels / f"{i:06d}.txt").write_text(
            "Car 0.00 0 -10 10 10 60 40 -1 -1 -1 -1000 -1000 -1000 -10\n")
        (results / f"{i:06d}.txt").write_text(
            "Car 0 0 -10 10 10 60 40 -1 -1 -1 -1000 -1000 -1000 -10 0.9\n")
    return World(root, kitti, formats["coco"], formats["voc"], formats["yolo"], ckpt, images,
                 labels, results)


# ------------------------------------------------------------------ helpers for the cases


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


KITTI_LINE = "Car 0.00 0 0.00 {} 1.50 1.60 3.90 1.00 1.50 20.00 0.00\n"


def kitti_line(box: tuple[float, float, float, float], cls: str = "Car") -> str:
    return KITTI_LINE.replace("Car", cls).format(" ".join(f"{v:.2f}" for v in box))


TRAIN = ["--steps", "1", "--input-size", "64x32", "--batch-size", "2", "--quiet"]


def train(data: Path, out: Path, *extra: str) -> list[str]:
    """``squeezedet train`` on ``data`` into ``out``; ``key=value`` settings in ``extra`` go last."""
    options = [e for e in extra if "=" not in e or e.startswith("-")]
    settings = [e for e in extra if "=" in e and not e.startswith("-")]
    return ["train", "--data", str(data), "--out", str(out), *TRAIN, *options, "workers=0",
            *settings]


def truncated_png(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbled_png(path: Path) -> None:
    """Header and end intact, compressed pixels broken: only decoding finds it."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    for i in range(start + 2, min(start + 200, len(data) - 20)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def coco_json(root: Path) -> Path:
    return root / "annotations" / "instances.json"


def edit_coco(root: Path, change: Callable[[dict], None]) -> Path:
    path = coco_json(root)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def set_xml(root: Path, name: str, text: str) -> Path:
    path = root / "Annotations" / name
    path.write_text(text)
    return path


VOC_OBJECT = """<annotation>
  <filename>a.png</filename>
  <size><width>200</width><height>100</height><depth>3</depth></size>
  <object>
    <name>cat</name>
    <bndbox>{}</bndbox>
  </object>
</annotation>
"""


def voc_box(xmin: str = "11", ymin: str = "21", xmax: str = "60", ymax: str = "80") -> str:
    return VOC_OBJECT.format(f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
                             f"<ymax>{ymax}</ymax>")


# ------------------------------------------------------------------ the table

#: A case builds its input under ``t`` and returns ``(argv, substrings the message must hold)``.
Make = Callable[[Path, World], tuple[list[str], list[str]]]


@dataclass(frozen=True)
class Case:
    id: str
    command: str
    formats: tuple[str, ...]  # data formats it exercises ("" for none)
    make: Make
    code: int = 2


CASES: list[Case] = []


def case(id: str, command: str, formats: str = "", code: int = 2) -> Callable[[Make], Make]:
    def register(make: Make) -> Make:
        CASES.append(Case(id, command, tuple(f for f in formats.split(",") if f), make, code))
        return make
    return register


# --- train: KITTI data ---------------------------------------------------------------------------


def _kitti_label(t: Path, w: World, text: str, name: str = "000001") -> tuple[Path, Path]:
    d = copy(w.kitti, t / "d")
    label = d / "training" / "label_2" / f"{name}.txt"
    label.write_text(text)
    return d, label


@case("train-kitti-few-fields", "train", "kitti")
def _(t, w):
    d, label = _kitti_label(t, w, "Car 0 0 1 2 3\n")
    return train(d, t / "r"), [f"{label}:1", "15 fields"]


@case("train-kitti-not-a-number", "train", "kitti")
def _(t, w):
    d, label = _kitti_label(t, w, kitti_line((1, 2, 30, 40)) + kitti_line((1, 2, 30, 40))
                            .replace("0.00 0 0.00", "0.00 zero 0.00"))
    return train(d, t / "r"), [f"{label}:2", "'zero' is not a number"]


@case("train-kitti-nan", "train", "kitti")
def _(t, w):
    d, label = _kitti_label(t, w, KITTI_LINE.format("nan 2 30 40"))
    return train(d, t / "r"), [f"{label}:1", "NaN"]


@case("train-kitti-inverted-box", "train", "kitti")
def _(t, w):
    d, label = _kitti_label(t, w, "\n" + kitti_line((50, 2, 30, 40)))
    return train(d, t / "r"), [f"{label}:2", "x2 < x1"]


@case("train-kitti-label-without-image", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    (d / "training" / "image_2" / "000002.png").unlink()
    return train(d, t / "r"), [str(d / "training" / "label_2" / "000002.txt"), "no image"]


@case("train-kitti-corrupt-image", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    (d / "training" / "image_2" / "000003.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return train(d, t / "r"), [str(d / "training" / "image_2" / "000003.png"), "image"]


@case("train-kitti-empty-image", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    (d / "training" / "image_2" / "000001.png").write_bytes(b"")
    return train(d, t / "r"), [str(d / "training" / "image_2" / "000001.png"), "empty"]


@case("train-kitti-text-as-image", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    (d / "training" / "image_2" / "000001.png").write_text("not an image at all\n")
    return train(d, t / "r"), [str(d / "training" / "image_2" / "000001.png"),
                               "not a readable image"]


@case("train-kitti-truncated-png", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    truncated_png(d / "training" / "image_2" / "000002.png")
    return train(d, t / "r"), [str(d / "training" / "image_2" / "000002.png"), "truncated"]


@case("train-kitti-split-lists-missing-id", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    (d / "ImageSets" / "val.txt").write_text("000000\n000999\n")
    return train(d, t / "r"), [f"{d / 'ImageSets' / 'val.txt'}:2", "000999"]


@case("train-kitti-split-two-fields", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    (d / "ImageSets" / "train.txt").write_text("000000 000001\n")
    return train(d, t / "r"), [f"{d / 'ImageSets' / 'train.txt'}:1", "one image id per line"]


@case("train-kitti-split-duplicate", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    (d / "ImageSets" / "train.txt").write_text("000000\n000001\n000000\n")
    return train(d, t / "r"), [f"{d / 'ImageSets' / 'train.txt'}:3", "listed twice"]


@case("train-kitti-no-val-split", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    (d / "ImageSets" / "val.txt").unlink()
    return train(d, t / "r"), [str(d / "ImageSets" / "val.txt"), "squeezedet split"]


@case("train-kitti-binary-label", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    label = d / "training" / "label_2" / "000000.txt"
    label.write_bytes(b"\xff\xfe\x00C\x00a\x00r\x80\x81")
    return train(d, t / "r"), [str(label), "cannot read"]


@case("train-kitti-classes-match-nothing", "train", "kitti")
def _(t, w):
    return train(w.kitti, t / "r", "--classes", "Car,Bus"), ["--classes", "'Bus'", "no object"]


@case("train-kitti-many-bad-listed-together", "train", "kitti")
def _(t, w):
    d = make_tiny_kitti(t / "d", n=26, size=(64, 32))
    for i in range(1, 26):
        (d / "training" / "label_2" / f"{i:06d}.txt").write_text("Car 1 2\n")
    return train(d, t / "r"), ["25 bad samples", "000001.txt:1", "000020.txt:1",
                               "... and 5 more"]


@case("train-kitti-missing-folder", "train", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    shutil.rmtree(d / "training" / "image_2")
    return train(d, t / "r", "--format", "kitti"), [str(d / "training" / "image_2"), "missing"]


@case("train-kitti-bad-image-with-skip-bad-still-needs-images", "train", "kitti")
def _(t, w):
    d = make_tiny_kitti(t / "d", n=1, size=(64, 32))
    (d / "training" / "image_2" / "000000.png").write_bytes(b"junk")
    return train(d, t / "r", "--skip-bad"), ["training split has no images"]


# --- train: COCO ---------------------------------------------------------------------------------


@case("train-coco-bad-json", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    coco_json(d).write_text('{\n  "images": [\n    {"id": 1,,}\n  ]\n}\n')
    return train(d, t / "r"), [f"{coco_json(d)}:3", "not valid JSON"]


@case("train-coco-no-images", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data.pop("images"))
    return train(d, t / "r", "--format", "coco"), [str(coco_json(d)), "'images'"]


@case("train-coco-unknown-category", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data["annotations"][0].update(category_id=99))
    return train(d, t / "r"), [str(coco_json(d)), "unknown category_id 99"]


@case("train-coco-unknown-image", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data["annotations"][1].update(image_id=1234))
    return train(d, t / "r"), [str(coco_json(d)), "annotation 2 (image 1234): unknown image_id"]


@case("train-coco-negative-width", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data["annotations"][0].update(bbox=[50, 10, -20, 30]))
    return train(d, t / "r"), [str(coco_json(d)), "annotation 1", "x2 < x1"]


@case("train-coco-nan-box", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data["annotations"][0].update(bbox=[float("nan"), 10, 20, 30]))
    return train(d, t / "r"), [str(coco_json(d)), "NaN"]


@case("train-coco-missing-image-file", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    (d / "images" / "b.jpg").unlink()
    return train(d, t / "r"), [str(coco_json(d)), "'b.jpg' not found"]


@case("train-coco-bad-width", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data["images"][0].update(width="wide"))
    return train(d, t / "r"), [str(coco_json(d)), "width and height must be whole numbers"]


@case("train-coco-size-does-not-fit", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data["images"][0].update(width=400, height=200))
    return train(d, t / "r"), [str(coco_json(d)), "400x200", "a.png is 200x100"]


@case("train-coco-corrupt-image", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    (d / "images" / "c.png").write_bytes(b"GIF89a broken")
    return train(d, t / "r"), [str(d / "images" / "c.png"), "image"]


@case("train-coco-two-files", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    shutil.copy(coco_json(d), d / "annotations" / "instances_other.json")
    return train(d, t / "r"), [str(d), "several COCO files"]


@case("train-coco-class-not-in-data", "train", "coco")
def _(t, w):
    return train(w.coco, t / "r", "--classes", "bird"), ["no class 'bird'", "cat, dog"]


@case("train-coco-no-bbox-no-polygon", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data["annotations"][0].pop("bbox"))
    return train(d, t / "r"), [str(coco_json(d)), "no 'bbox'"]


@case("train-coco-annotation-not-an-object", "train", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data["annotations"].append(17))
    return train(d, t / "r"), [str(coco_json(d)), "malformed annotation"]


# --- train: VOC ----------------------------------------------------------------------------------


@case("train-voc-malformed-xml", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    path = set_xml(d, "a.xml", "<annotation>\n  <object>\n    <name>cat</name>\n  </objec>\n")
    return train(d, t / "r"), [f"{path}:4", "not well-formed"]


@case("train-voc-no-bndbox", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    path = set_xml(d, "a.xml", VOC_OBJECT.format("").replace("<bndbox></bndbox>", ""))
    return train(d, t / "r"), [f"{path}:4", "no <bndbox>"]


@case("train-voc-coordinate-not-a-number", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    path = set_xml(d, "a.xml", voc_box(xmin="ten"))
    return train(d, t / "r"), [f"{path}:4", "<xmin> is not a number"]


@case("train-voc-missing-coordinate", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    path = set_xml(d, "a.xml", VOC_OBJECT.format("<xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"))
    return train(d, t / "r"), [f"{path}:4", "<ymax> is missing"]


@case("train-voc-no-name", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    path = set_xml(d, "a.xml", voc_box().replace("<name>cat</name>", ""))
    return train(d, t / "r"), [f"{path}:4", "no <name>"]


@case("train-voc-wrong-root", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    path = set_xml(d, "a.xml", "<html><body/></html>\n")
    return train(d, t / "r"), [f"{path}:1", "root element is <html>"]


@case("train-voc-missing-image", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    (d / "JPEGImages" / "b.jpg").unlink()
    return train(d, t / "r"), [str(d / "Annotations" / "b.xml"), "no image found"]


@case("train-voc-size-does-not-fit", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    path = set_xml(d, "a.xml", voc_box().replace("<width>200</width><height>100</height>",
                                                 "<width>100</width><height>200</height>"))
    return train(d, t / "r"), [str(path), "100x200", "a.png is 200x100"]


@case("train-voc-inverted-box", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    path = set_xml(d, "a.xml", voc_box(xmin="90", xmax="60"))
    return train(d, t / "r"), [f"{path}:4", "x2 < x1"]


@case("train-voc-split-unknown-id", "train", "voc")
def _(t, w):
    d = WRITERS["voc"](t / "d", split_files=True)
    (d / "ImageSets" / "Main" / "val.txt").write_text("b\nzebra\n")
    return train(d, t / "r"), [f"{d / 'ImageSets' / 'Main' / 'val.txt'}:2", "zebra"]


@case("train-voc-corrupt-image", "train", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    truncated_png(d / "JPEGImages" / "a.png")
    return train(d, t / "r"), [str(d / "JPEGImages" / "a.png"), "truncated"]


@case("train-voc-class-not-in-data", "train", "voc")
def _(t, w):
    return train(w.voc, t / "r", "--classes", "cat,bird"), ["no class 'bird'"]


# --- train: YOLO ---------------------------------------------------------------------------------


def _yolo_label(t: Path, w: World, text: str, name: str = "a") -> tuple[Path, Path]:
    d = copy(w.yolo, t / "d")
    label = d / "labels" / f"{name}.txt"
    label.write_text(text)
    return d, label


@case("train-yolo-class-out-of-range", "train", "yolo")
def _(t, w):
    d, label = _yolo_label(t, w, "0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n")
    return train(d, t / "r"), [f"{label}:2", "class index 5"]


@case("train-yolo-not-numbers", "train", "yolo")
def _(t, w):
    d, label = _yolo_label(t, w, "cat 0.5 0.5 0.2 0.2\n")
    return train(d, t / "r"), [f"{label}:1", "expected numbers"]


@case("train-yolo-too-few-fields", "train", "yolo")
def _(t, w):
    d, label = _yolo_label(t, w, "0 0.5 0.5\n")
    return train(d, t / "r"), [f"{label}:1", "5 fields"]


@case("train-yolo-pixels-not-normalised", "train", "yolo")
def _(t, w):
    d, label = _yolo_label(t, w, "0 100 50 20 20\n")
    return train(d, t / "r"), [f"{label}:1", "normalised"]


@case("train-yolo-nan", "train", "yolo")
def _(t, w):
    d, label = _yolo_label(t, w, "0 nan 0.5 0.2 0.2\n")
    return train(d, t / "r"), [f"{label}:1", "NaN"]


@case("train-yolo-bad-names", "train", "yolo")
def _(t, w):
    d = copy(w.yolo, t / "d")
    (d / "data.yaml").write_text("names: 5\n")
    return train(d, t / "r"), [str(d / "data.yaml"), "'names' must be a list"]


@case("train-yolo-corrupt-image", "train", "yolo")
def _(t, w):
    d = copy(w.yolo, t / "d")
    (d / "images" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return train(d, t / "r"), [str(d / "images" / "b.jpg"), "image"]


@case("train-yolo-empty-image", "train", "yolo")
def _(t, w):
    d = copy(w.yolo, t / "d")
    (d / "images" / "c.png").write_bytes(b"")
    return train(d, t / "r"), [str(d / "images" / "c.png"), "empty"]


@case("train-yolo-list-names-missing-image", "train", "yolo")
def _(t, w):
    d = copy(w.yolo, t / "d")
    (d / "train.txt").write_text("images/a.png\nimages/gone.png\n")
    (d / "val.txt").write_text("images/b.jpg\n")
    return train(d, t / "r"), [str(d / "images" / "gone.png"), "not found"]


@case("train-yolo-class-not-in-data", "train", "yolo")
def _(t, w):
    return train(w.yolo, t / "r", "--classes", "bird"), ["no class 'bird'"]


@case("train-yolo-class-without-objects", "train", "yolo")
def _(t, w):
    d = copy(w.yolo, t / "d")
    (d / "classes.txt").write_text("cat\ndog\nbird\n")
    return train(d, t / "r", "--classes", "cat,bird"), ["--classes", "'bird'", "no object"]


@case("train-yolo-unreadable-label", "train", "yolo")
def _(t, w):
    d = copy(w.yolo, t / "d")
    (d / "labels" / "b.txt").write_bytes(b"\x80\x81\x82 0.5\n")
    return train(d, t / "r"), [str(d / "labels" / "b.txt"), "cannot read"]


# --- train: settings and paths --------------------------------------------------------------------


def _setting(id: str, override: str, *expect: str) -> None:
    @case(f"train-setting-{id}", "train")
    def _(t, w):
        return train(w.kitti, t / "r", override), list(expect)


_setting("lr-nan", "lr=nan", "lr must be a finite number")
_setting("lr-zero", "lr=0", "lr must be positive")
_setting("lr-inf", "lr=inf", "lr must be a finite number")
_setting("learning-rate-alias", "learning_rate=0.1", "'learning_rate'", "did you mean 'lr'")
_setting("batch-alias", "batch=4", "'batch'", "did you mean 'batch_size'")
_setting("keep-prob", "keep_prob=0.5", "'keep_prob'", "dropout = 1 - keep_prob")
_setting("dropout-one", "dropout=1", "dropout must be in [0, 1)")
_setting("nms-zero", "nms_iou=0", "nms_iou must be in (0, 1]")
_setting("nms-above-one", "nms_iou=1.5", "nms_iou must be in (0, 1]")
_setting("momentum", "momentum=1.2", "momentum must be in [0, 1)")
_setting("weight-decay", "weight_decay=-1e-4", "weight_decay cannot be negative")
_setting("optimizer", "optimizer=adam", "optimizer must be 'sgd' or 'adamw'")
_setting("normalization", "normalization=imagenet", "normalization must be")
_setting("data-format", "data_format=pascal", "data_format must be")
_setting("anchors", "anchors=[[10,0]]", "anchors must be (w, h) shapes")
_setting("seed", "seed=-3", "seed must be >= 0")
_setting("not-a-number", "lr=fast", "bad value 'fast' for lr")
_setting("no-equals", "lr0.1", "must look like key=value")
_setting("time-limit-nan", "time_limit_min=nan", "time_limit_min must be a finite number")
_setting("lr-decay", "lr_decay=0", "lr_decay must be in (0, 1]")
_setting("classes-twice", "classes=Car,car", "classes are listed twice")
_setting("device", "device=gpu7", "unknown device 'gpu7'")


@case("train-anchor-file-missing", "train")
def _(t, w):
    return train(w.kitti, t / "r", "--anchors", str(t / "a.yaml")), [str(t / "a.yaml"),
                                                                     "anchor file not found"]


@case("train-pretrained-missing", "train", "kitti")
def _(t, w):
    return train(w.kitti, t / "r", f"pretrained={t / 'sq.pth'}"), [str(t / "sq.pth"), "not found"]


@case("train-batch-size-zero", "train")
def _(t, w):
    return ["train", "--data", str(w.kitti), "--out", str(t / "r"), "--batch-size", "0"], \
        ["batch_size must be positive"]


@case("train-unknown-model", "train")
def _(t, w):
    return train(w.kitti, t / "r", "--model", "squeezedett"), ["squeezedett"]


@case("train-config-file-unknown-key", "train")
def _(t, w):
    cfg = t / "c.yaml"
    cfg.write_text("learning_rate: 0.01\n")
    return train(w.kitti, t / "r", "--config", str(cfg)), [str(cfg), "did you mean 'lr'"]


@case("train-config-file-bad-yaml", "train")
def _(t, w):
    cfg = t / "c.yaml"
    cfg.write_text("lr: [0.1\n")
    return train(w.kitti, t / "r", "--config", str(cfg)), [str(cfg), "not valid YAML"]


@case("train-config-file-missing", "train")
def _(t, w):
    return train(w.kitti, t / "r", "--config", str(t / "none.yaml")), [
        str(t / "none.yaml"), "not found"]


@case("train-out-is-a-file", "train")
def _(t, w):
    (t / "r").write_text("I am a file")
    return train(w.kitti, t / "r"), ["--out", str(t / "r"), "is a file"]


@case("train-out-below-a-file", "train")
def _(t, w):
    (t / "f").write_text("I am a file")
    return train(w.kitti, t / "f" / "run"), ["--out", str(t / "f"), "is a file"]


@case("train-resume-without-run", "train")
def _(t, w):
    # the run folder is named with what is missing there (issue 18: a folder with config.yaml alone
    # is started from it)
    return ["train", "--resume", str(t / "nothing")], [f"{t / 'nothing'}: nothing to resume",
                                                       "no last.pt or config.yaml"]


@case("train-resume-corrupt-checkpoint", "train")
def _(t, w):
    (t / "run").mkdir()
    (t / "run" / "last.pt").write_bytes(b"PK\x03\x04 broken zip")
    return ["train", "--resume", str(t / "run")], [str(t / "run" / "last.pt"),
                                                   "not a readable checkpoint"]


@case("train-data-missing", "train")
def _(t, w):
    return train(t / "nowhere", t / "r"), [str(t / "nowhere"), "does not exist"]


@case("train-format-undetectable", "train")
def _(t, w):
    (t / "d").mkdir()
    (t / "d" / "notes.md").write_text("hi")
    return train(t / "d", t / "r"), [str(t / "d"), "cannot tell the format"]


@case("train-tile-too-small", "train", "voc")
def _(t, w):
    return train(w.voc, t / "r", "--tile", "8x8"), ["tile must be (W, H), each at least 16"]


# --- anchors -------------------------------------------------------------------------------------


def anchors(data: Path, out: Path, *extra: str) -> list[str]:
    return ["anchors", "--data", str(data), "--input-size", "64x32", "--k", "2", "--out", str(out),
            *extra]


@case("anchors-kitti-bad-line", "anchors", "kitti")
def _(t, w):
    d, label = _kitti_label(t, w, "\n\nCar 1 2 3\n", "000002")
    return anchors(d, t / "a.yaml"), [f"{label}:3", "15 fields"]


@case("anchors-coco-bad-json", "anchors", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    coco_json(d).write_text('{"images": [}')
    return anchors(d, t / "a.yaml"), [f"{coco_json(d)}:1", "not valid JSON"]


@case("anchors-voc-bad-xml", "anchors", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    path = set_xml(d, "b.xml", "<annotation>\n<object>\n")
    return anchors(d, t / "a.yaml"), [str(path), "not well-formed"]


@case("anchors-yolo-bad-class", "anchors", "yolo")
def _(t, w):
    d, label = _yolo_label(t, w, "7 0.5 0.5 0.1 0.1\n", "b")
    return anchors(d, t / "a.yaml"), [f"{label}:1", "class index 7"]


@case("anchors-classes-not-in-data", "anchors", "voc")
def _(t, w):
    return anchors(w.voc, t / "a.yaml", "--classes", "bird"), ["no class 'bird'"]


@case("anchors-out-is-a-folder", "anchors", "voc")
def _(t, w):
    return anchors(w.voc, t), ["--out", str(t), "is a folder"]


@case("anchors-out-below-a-file", "anchors", "voc")
def _(t, w):
    (t / "f").write_text("x")
    return anchors(w.voc, t / "f" / "a.yaml"), ["--out", "is a file"]


@case("anchors-class-without-boxes", "anchors", "yolo")
def _(t, w):
    d = copy(w.yolo, t / "d")
    (d / "classes.txt").write_text("cat\ndog\nbird\n")
    return anchors(d, t / "a.yaml", "--classes", "cat,bird"), ["--classes", "'bird'"]


@case("anchors-k-zero", "anchors", "voc")
def _(t, w):
    return anchors(w.voc, t / "a.yaml", "--k", "0"), ["--k must be at least 1"]


@case("anchors-bad-input-size", "anchors", "voc")
def _(t, w):
    return ["anchors", "--data", str(w.voc), "--input-size", "big", "--out", str(t / "a.yaml")], \
        ["--input-size", "'big'"]


@case("anchors-overlap", "anchors", "voc")
def _(t, w):
    return anchors(w.voc, t / "a.yaml", "--tile", "64x64", "--overlap", "1.5"), [
        "--overlap must be in [0, 1)"]


@case("anchors-unknown-split", "anchors", "yolo")
def _(t, w):
    return anchors(w.yolo, t / "a.yaml", "--split", "test"), ["no split 'test'"]


@case("anchors-data-missing", "anchors")
def _(t, w):
    return anchors(t / "nowhere", t / "a.yaml"), [str(t / "nowhere"), "does not exist"]


# --- convert -------------------------------------------------------------------------------------


@case("convert-kitti-bad-line", "convert", "kitti")
def _(t, w):
    d, label = _kitti_label(t, w, kitti_line((1, 2, 3, 4)) + "Car x\n")
    return ["convert", "--to", "yolo", str(d), str(t / "o")], [f"{label}:2", "15 fields"]


@case("convert-coco-unknown-category", "convert", "coco")
def _(t, w):
    d = copy(w.coco, t / "d")
    edit_coco(d, lambda data: data["annotations"][2].update(category_id=5))
    return ["convert", "--to", "voc", str(d), str(t / "o")], [str(coco_json(d)),
                                                              "unknown category_id 5"]


@case("convert-voc-no-image", "convert", "voc")
def _(t, w):
    d = copy(w.voc, t / "d")
    (d / "JPEGImages" / "a.png").unlink()
    return ["convert", "--to", "coco", str(d), str(t / "o")], [str(d / "Annotations" / "a.xml"),
                                                               "no image found"]


@case("convert-yolo-bad-line", "convert", "yolo")
def _(t, w):
    d, label = _yolo_label(t, w, "0 0.5 0.5 0.1 0.1\n0 0.5\n")
    return ["convert", "--to", "kitti", str(d), str(t / "o")], [f"{label}:2", "5 fields"]


@case("convert-dest-not-empty", "convert", "voc")
def _(t, w):
    (t / "o").mkdir()
    (t / "o" / "x").write_text("x")
    return ["convert", "--to", "yolo", str(w.voc), str(t / "o")], [str(t / "o"), "not empty"]


@case("convert-dest-is-a-file", "convert", "voc")
def _(t, w):
    (t / "o").write_text("x")
    return ["convert", "--to", "yolo", str(w.voc), str(t / "o")], ["DST", str(t / "o"), "is a file"]


@case("convert-dest-below-a-file", "convert", "coco")
def _(t, w):
    (t / "o").write_text("x")
    return ["convert", "--to", "yolo", str(w.coco), str(t / "o" / "p")], ["DST", "is a file"]


@case("convert-classes-not-in-data", "convert", "yolo")
def _(t, w):
    return ["convert", "--to", "voc", "--classes", "bird", str(w.yolo), str(t / "o")], [
        "no class 'bird'"]


@case("convert-class-without-objects", "convert", "yolo")
def _(t, w):
    d = copy(w.yolo, t / "d")
    (d / "classes.txt").write_text("cat\ndog\nbird\n")
    return ["convert", "--to", "voc", "--classes", "bird", str(d), str(t / "o")], [
        "--classes", "no object of class 'bird'"]


@case("predict-torchscript-garbage", "predict")
def _(t, w):
    model = t / "m.torchscript"
    model.write_bytes(b"PK\x03\x04 not a zip")
    meta = squeezedet.create_model("squeezedet", input_size=(64, 32)).metadata()
    (t / "m.torchscript.json").write_text(json.dumps(meta))
    return ["predict", "--weights", str(model), "--source", str(w.images), "--out", str(t / "o"),
            "--no-progress", "--device", "cpu"], [str(model), "not a loadable TorchScript file"]


@case("predict-openvino-bin-missing", "predict")
def _(t, w):
    pytest.importorskip("openvino")
    model = t / "m.xml"
    model.write_text('<?xml version="1.0"?>\n<net name="m" version="11"><layers/></net>\n')
    meta = squeezedet.create_model("squeezedet", input_size=(64, 32)).metadata()
    (t / "m.xml.json").write_text(json.dumps(meta))
    return ["predict", "--weights", str(model), "--source", str(w.images), "--out", str(t / "o"),
            "--backend", "openvino", "--no-progress"], [str(model), "m.bin", "missing"]


@case("convert-unknown-source-format", "convert", "voc")
def _(t, w):
    return ["convert", "--from", "pascal", "--to", "yolo", str(w.voc), str(t / "o")], [
        "unknown data format 'pascal'"]


@case("convert-source-missing", "convert")
def _(t, w):
    return ["convert", "--to", "yolo", str(t / "none"), str(t / "o")], [str(t / "none")]


# --- predict -------------------------------------------------------------------------------------

CPU = ["--device", "cpu", "--backend", "torch", "--no-progress"]


def predict(weights: Path, source: Path | str, out: Path, *extra: str) -> list[str]:
    return ["predict", "--weights", str(weights), "--source", str(source), "--out", str(out),
            *CPU, *extra]


@case("predict-weights-missing", "predict")
def _(t, w):
    return predict(t / "none.pt", w.images, t / "o"), [str(t / "none.pt"), "not found"]


@case("predict-weights-corrupt", "predict")
def _(t, w):
    (t / "m.pt").write_bytes(b"\x80\x02 not a checkpoint")
    return predict(t / "m.pt", w.images, t / "o"), [str(t / "m.pt"), "not a readable checkpoint"]


@case("predict-weights-not-squeezedet", "predict")
def _(t, w):
    import torch

    torch.save({"state_dict": {}}, t / "m.pt")
    return predict(t / "m.pt", w.images, t / "o"), [str(t / "m.pt"), "not a SqueezeDet checkpoint"]


@case("predict-weights-unknown-type", "predict")
def _(t, w):
    (t / "m.h5").write_bytes(b"x")
    return predict(t / "m.h5", w.images, t / "o"), [str(t / "m.h5"), "unknown weights type"]


@case("predict-onnx-garbage", "predict")
def _(t, w):
    pytest.importorskip("onnxruntime")
    model = t / "m.onnx"
    model.write_bytes(b"this is no protobuf")
    meta = squeezedet.create_model("squeezedet", input_size=(64, 32)).metadata()
    (t / "m.onnx.json").write_text(json.dumps(meta))
    return ["predict", "--weights", str(model), "--source", str(w.images), "--out", str(t / "o"),
            "--backend", "onnxruntime", "--no-progress"], [str(model)]


@case("predict-openvino-garbage", "predict")
def _(t, w):
    pytest.importorskip("openvino")
    model = t / "m.xml"
    model.write_text("<net>broken")
    meta = squeezedet.create_model("squeezedet", input_size=(64, 32)).metadata()
    (t / "m.xml.json").write_text(json.dumps(meta))
    return ["predict", "--weights", str(model), "--source", str(w.images), "--out", str(t / "o"),
            "--backend", "openvino", "--no-progress"], [str(model)]


@case("predict-exported-without-metadata", "predict")
def _(t, w):
    (t / "m.onnx").write_bytes(b"x")
    return ["predict", "--weights", str(t / "m.onnx"), "--source", str(w.images), "--out",
            str(t / "o"), "--no-progress"], [str(t / "m.onnx.json"), "metadata file not found"]


@case("predict-source-missing", "predict")
def _(t, w):
    return predict(w.ckpt, t / "none", t / "o"), [str(t / "none"), "no such file"]


@case("predict-empty-folder", "predict")
def _(t, w):
    (t / "in").mkdir()
    return predict(w.ckpt, t / "in", t / "o"), [str(t / "in"), "no image files"]


@case("predict-empty-list", "predict")
def _(t, w):
    (t / "list.txt").write_text("# nothing here\n\n")
    return predict(w.ckpt, t / "list.txt", t / "o"), [str(t / "list.txt"), "empty"]


@case("predict-out-is-a-file", "predict")
def _(t, w):
    (t / "o").write_text("x")
    return predict(w.ckpt, w.images, t / "o"), ["--out", str(t / "o"), "is a file"]


@case("predict-out-below-a-file", "predict")
def _(t, w):
    (t / "o").write_text("x")
    return predict(w.ckpt, w.images, t / "o" / "deeper"), ["--out", "is a file"]


@case("predict-kitti-folder-is-a-file", "predict")
def _(t, w):
    (t / "o").mkdir()
    (t / "o" / "kitti").write_text("x")
    return predict(w.ckpt, w.images, t / "o", "--save-kitti"), [str(t / "o" / "kitti"),
                                                                 "is a file"]


@case("predict-every-image-corrupt", "predict", code=1)
def _(t, w):
    (t / "in").mkdir()
    (t / "in" / "a.png").write_bytes(b"\x89PNG nope")
    (t / "in" / "b.jpg").write_bytes(b"")
    return predict(w.ckpt, t / "in", t / "o"), [str(t / "in" / "a.png"), str(t / "in" / "b.jpg"),
                                                "none of the 2 images could be read"]


@case("predict-conf-out-of-range", "predict")
def _(t, w):
    return predict(w.ckpt, w.images, t / "o", "--conf", "2"), ["--conf", "between 0 and 1"]


@case("predict-batch-size-zero", "predict")
def _(t, w):
    return predict(w.ckpt, w.images, t / "o", "--batch-size", "0"), ["--batch-size"]


@case("predict-tile-not-a-size", "predict")
def _(t, w):
    return predict(w.ckpt, w.images, t / "o", "--tile", "big"), ["--tile", "'big'"]


@case("predict-video-unreadable", "predict")
def _(t, w):
    pytest.importorskip("cv2")
    (t / "v.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    return predict(w.ckpt, t / "v.mp4", t / "o"), [str(t / "v.mp4"), "OpenCV cannot open"]


@case("predict-unknown-device", "predict")
def _(t, w):
    return ["predict", "--weights", str(w.ckpt), "--source", str(w.images), "--out", str(t / "o"),
            "--device", "tpu9"], ["'tpu9'"]


# --- track ---------------------------------------------------------------------------------------


def track(weights: Path, source: Path | str, out: Path, *extra: str) -> list[str]:
    return ["track", str(source), "--weights", str(weights), "--out", str(out), "--backend",
            "torch", "--device", "cpu", "--no-progress", *extra]


@case("track-source-missing", "track")
def _(t, w):
    return track(w.ckpt, t / "none.mp4", t / "o"), [str(t / "none.mp4"), "no such file"]


@case("track-empty-folder", "track")
def _(t, w):
    (t / "in").mkdir()
    return track(w.ckpt, t / "in", t / "o"), [str(t / "in"), "no image files"]


@case("track-every-frame-corrupt", "track")
def _(t, w):
    (t / "0001").mkdir()
    (t / "0001" / "000000.png").write_bytes(b"\x89PNG nope")
    return track(w.ckpt, t / "0001", t / "o"), [str(t / "0001" / "000000.png"),
                                                 "0001: no frame could be read ("]


@case("track-weights-missing", "track")
def _(t, w):
    return track(t / "none.pt", w.images, t / "o"), [str(t / "none.pt"), "not found"]


@case("track-low-above-high", "track")
def _(t, w):
    return track(w.ckpt, w.images, t / "o", "--low", "0.8", "--high", "0.5"), [
        "tracker thresholds", "low_threshold (0.8) must not exceed high_threshold (0.5)"]


@case("track-out-is-a-file", "track")
def _(t, w):
    (t / "o").write_text("")
    return track(w.ckpt, w.images, t / "o"), ["--out", str(t / "o"), "is a file"]


@case("track-realtime-sequential", "track")
def _(t, w):
    return track(w.ckpt, w.images, t / "o", "--realtime", "--sequential"), [
        "--realtime", "leave out --sequential"]


@case("track-max-frames-zero", "track")
def _(t, w):
    return track(w.ckpt, w.images, t / "o", "--max-frames", "0"), ["--max-frames"]


# --- evaluate ------------------------------------------------------------------------------------


def evaluate(labels: Path, results: Path, *extra: str) -> list[str]:
    return ["evaluate", "--labels", str(labels), "--detections", str(results), "--no-errors",
            *extra]


@case("evaluate-labels-missing", "evaluate", "kitti")
def _(t, w):
    return evaluate(t / "none", w.results), [str(t / "none")]


@case("evaluate-results-missing", "evaluate", "kitti")
def _(t, w):
    return evaluate(w.labels, t / "none"), [str(t / "none"), "not found"]


@case("evaluate-json-is-a-folder", "evaluate", "kitti")
def _(t, w):
    return evaluate(w.labels, w.results, "--json", str(t)), ["--json", str(t), "is a folder"]


@case("evaluate-json-below-a-file", "evaluate", "kitti")
def _(t, w):
    (t / "f").write_text("x")
    return evaluate(w.labels, w.results, "--json", str(t / "f" / "ap.json")), ["--json",
                                                                               "is a file"]


@case("evaluate-plots-is-a-file", "evaluate", "kitti")
def _(t, w):
    (t / "p").write_text("x")
    return evaluate(w.labels, w.results, "--plots", str(t / "p")), ["--plots", "is a file"]


@case("evaluate-malformed-result", "evaluate", "kitti")
def _(t, w):
    r = copy(w.results, t / "r")
    (r / "000001.txt").write_text("Car 0 0 -10 10 10 60 40 -1 -1 -1 -1000 -1000 -1000 -10 0.9\n"
                                  "Car 0 0 -10 10 10\n")
    return evaluate(w.labels, r), [f"{r / '000001.txt'}:2"]


@case("evaluate-result-without-score", "evaluate", "kitti")
def _(t, w):
    r = copy(w.results, t / "r")
    (r / "000000.txt").write_text("Car 0 0 -10 10 10 60 40 -1 -1 -1 -1000 -1000 -1000 -10\n")
    return evaluate(w.labels, r), [f"{r / '000000.txt'}:1", "score"]


@case("evaluate-malformed-label", "evaluate", "kitti")
def _(t, w):
    g = copy(w.labels, t / "g")
    (g / "000000.txt").write_text("Car one\n")
    return evaluate(g, w.results), [f"{g / '000000.txt'}:1"]


@case("evaluate-split-missing", "evaluate", "kitti")
def _(t, w):
    return evaluate(w.labels, w.results, "--split", str(t / "val.txt")), [str(t / "val.txt"),
                                                                           "not found"]


@case("evaluate-empty-classes", "evaluate", "kitti")
def _(t, w):
    return evaluate(w.labels, w.results, "--classes", ","), ["--classes is empty"]


_TRACK_LINE = "0 1 Car 0 0 -10 10 10 60 50 -1 -1 -1 -1000 -1000 -1000 -10"


def _tracking_dirs(t: Path, gt: str, res: str) -> tuple[Path, Path]:
    (t / "label_02").mkdir(parents=True)
    (t / "res").mkdir()
    (t / "label_02" / "0000.txt").write_text(gt)
    (t / "res" / "0000.txt").write_text(res)
    return t / "label_02", t / "res"


@case("evaluate-tracking-malformed-result", "evaluate")
def _(t, w):
    pytest.importorskip("trackeval")
    gt, res = _tracking_dirs(t, _TRACK_LINE + "\n", _TRACK_LINE + " 0.9\n0 2 Car 0 0\n")
    return ["evaluate", "--tracking", "--labels", str(gt), "--detections", str(res)], [
        f"{res / '0000.txt'}:2", "17 fields"]


@case("evaluate-tracking-bad-frame", "evaluate")
def _(t, w):
    pytest.importorskip("trackeval")
    gt, res = _tracking_dirs(t, _TRACK_LINE.replace("0 1", "x 1", 1) + "\n", "")
    return ["evaluate", "--tracking", "--labels", str(gt), "--detections", str(res)], [
        f"{gt / '0000.txt'}:1", "frame 'x'"]


@case("evaluate-tracking-cyclist", "evaluate")
def _(t, w):
    pytest.importorskip("trackeval")
    gt, res = _tracking_dirs(t, _TRACK_LINE + "\n", "")
    return ["evaluate", "--tracking", "--labels", str(gt), "--detections", str(res), "--classes",
            "Cyclist"], ["only Car and Pedestrian"]


# --- export --------------------------------------------------------------------------------------


def export(weights: Path, *extra: str) -> list[str]:
    return ["export", "--weights", str(weights), "--format", "torchscript", *extra]


def import_weights(*args: object) -> list[str]:
    return ["import-weights", *(str(a) for a in args)]


@case("import-weights-file-missing", "import-weights")
def _(t, w):
    return import_weights("--from", "pytorch-port", t / "none.pth", "--out", t / "m.pt"), [
        str(t / "none.pth")]


@case("import-weights-pth-garbage", "import-weights")
def _(t, w):
    (t / "port.pth").write_bytes(b"not a torch file")
    return import_weights("--from", "pytorch-port", t / "port.pth", "--out", t / "m.pt"), [
        str(t / "port.pth")]


@case("import-weights-pth-wrong-tensors", "import-weights")
def _(t, w):
    import torch

    torch.save({"conv1.weight": torch.zeros(3, 3)}, t / "port.pth")
    return import_weights("--from", "pytorch-port", t / "port.pth", "--out", t / "m.pt"), [
        str(t / "port.pth")]


@case("import-weights-tf-folder-without-index", "import-weights")
def _(t, w):
    (t / "ckpt").mkdir()
    return import_weights("--from", "original", t / "ckpt", "--out", t / "m.pt"), [str(t / "ckpt")]


@case("import-weights-bad-input-size", "import-weights")
def _(t, w):
    return import_weights("--from", "original", t / "x", "--out", t / "m.pt", "--input-size",
                          "big"), ["--input-size"]


@case("import-weights-out-below-a-file", "import-weights")
def _(t, w):
    (t / "f").write_text("x")
    return import_weights("--from", "original", t / "x", "--out", t / "f" / "m.pt"), [
        "--out", "is a file"]


@case("import-weights-unknown-source", "import-weights")
def _(t, w):
    return import_weights("--from", "caffe", t / "x", "--out", t / "m.pt"), ["--from"]


def compress(*args: object) -> list[str]:
    return ["compress", "--quiet", *(str(a) for a in args)]


@case("compress-weights-missing", "compress")
def _(t, w):
    return compress("--weights", t / "none.pt", "--out", t / "m.sqz"), [str(t / "none.pt")]


@case("compress-weights-corrupt", "compress")
def _(t, w):
    (t / "m.pt").write_bytes(b"garbage")
    return compress("--weights", t / "m.pt", "--out", t / "m.sqz"), [str(t / "m.pt")]


@case("compress-sparsity-above-one", "compress")
def _(t, w):
    return compress("--weights", w.ckpt, "--out", t / "m.sqz", "--sparsity", "1.5"), ["sparsity"]


@case("compress-bits-zero", "compress")
def _(t, w):
    return compress("--weights", w.ckpt, "--out", t / "m.sqz", "--bits", "0"), ["bits"]


@case("compress-evaluate-without-data", "compress")
def _(t, w):
    return compress("--weights", w.ckpt, "--out", t / "m.sqz", "--evaluate"), ["--evaluate",
                                                                              "--data"]


@case("compress-out-is-a-folder", "compress")
def _(t, w):
    (t / "m.sqz").mkdir()
    return compress("--weights", w.ckpt, "--out", t / "m.sqz"), ["--out", "is a folder"]


@case("export-weights-missing", "export")
def _(t, w):
    return export(t / "none.pt", "--output", str(t / "m.torchscript")), [str(t / "none.pt"),
                                                                         "not found"]


@case("export-weights-corrupt", "export")
def _(t, w):
    (t / "m.pt").write_bytes(b"garbage")
    return export(t / "m.pt", "--output", str(t / "m.torchscript")), [str(t / "m.pt"),
                                                                      "not a readable checkpoint"]


@case("export-output-is-a-folder", "export")
def _(t, w):
    (t / "m.torchscript").mkdir()
    return export(w.ckpt, "--output", str(t / "m.torchscript")), ["output", "is a folder"]


@case("export-output-below-a-file", "export")
def _(t, w):
    (t / "f").write_text("x")
    return export(w.ckpt, "--output", str(t / "f" / "m.torchscript")), ["output", "is a file"]


@case("export-output-wrong-suffix", "export")
def _(t, w):
    return export(w.ckpt, "--output", str(t / "m.onnx")), [str(t / "m.onnx"), ".torchscript"]


@case("export-calib-images-zero", "export")
def _(t, w):
    return ["export", "--weights", str(w.ckpt), "--format", "onnx", "--precision", "int8",
            "--calib-images", "0"], ["calib_images must be at least 1"]


@case("export-precision-unsupported", "export")
def _(t, w):
    return ["export", "--weights", str(w.ckpt), "--format", "onnx", "--precision", "bf16",
            "--output", str(t / "m.onnx")], ["bf16"]


@case("export-parity-data-missing", "export")
def _(t, w):
    return export(w.ckpt, "--output", str(t / "m.torchscript"), "--parity-data",
                  str(t / "none")), ["parity_data", str(t / "none")]


@case("export-max-ap-drop-nan", "export")
def _(t, w):
    return export(w.ckpt, "--output", str(t / "m.torchscript"), "--max-ap-drop", "nan"), [
        "max_ap_drop must be a number >= 0"]


@case("export-accuracy-data-not-kitti", "export")
def _(t, w):
    return export(w.ckpt, "--output", str(t / "m.torchscript"), "--accuracy-data",
                  str(w.voc)), ["accuracy_data", str(w.voc)]


@case("export-executorch-dynamic-batch", "export")
def _(t, w):
    return ["export", "--weights", str(w.ckpt), "--format", "executorch", "--dynamic-batch",
            "--output", str(t / "m.pte")], ["ExecuTorch", "batch 1", "dynamic_batch"]


@case("export-web-ort-web-missing", "export")
def _(t, w):
    return ["export", "--weights", str(w.ckpt), "--format", "web", str(t / "site"), "--ort-web",
            str(t / "none")], [f"--ort-web {t / 'none'}", "ONNX Runtime Web not found", "make web"]


@case("export-out-dir-not-web", "export")
def _(t, w):
    return export(w.ckpt, str(t / "site")), [f"OUT_DIR {t / 'site'}", "only --format web"]


# --- benchmark -----------------------------------------------------------------------------------


def bench(*extra: str) -> list[str]:
    return ["benchmark", "--input-size", "64x32", "--runs", "1", "--warmup", "0", "--backends",
            "torch:fp32", "--in-process", *extra]


@case("benchmark-threads-zero", "benchmark")
def _(t, w):
    return bench("--threads", "0"), ["threads must be at least 1"]


@case("benchmark-batch-zero", "benchmark")
def _(t, w):
    return bench("--batch", "0"), ["batch must be at least 1"]


@case("benchmark-unknown-row", "benchmark")
def _(t, w):
    return bench("--backends", "tensorrt:fp32"), ["'tensorrt:fp32'"]


@case("benchmark-image-missing", "benchmark")
def _(t, w):
    return bench("--image", str(t / "none.png")), [str(t / "none.png"), "not found"]


@case("benchmark-image-corrupt", "benchmark")
def _(t, w):
    (t / "x.jpg").write_bytes(b"\xff\xd8 nope")
    return bench("--image", str(t / "x.jpg")), [str(t / "x.jpg"), "image"]


@case("benchmark-weights-missing", "benchmark")
def _(t, w):
    return bench("--weights", str(t / "none.pt")), [str(t / "none.pt"), "not found"]


@case("benchmark-json-is-a-folder", "benchmark")
def _(t, w):
    return bench("--json", str(t)), ["--json", "is a folder"]


@case("benchmark-bad-input-size", "benchmark")
def _(t, w):
    return bench("--input-size", "64by32"), ["'64by32'"]


# --- info, synth, split, demo --------------------------------------------------------------------


@case("info-unknown-model", "info")
def _(t, w):
    return ["info", "--model", "yolov8"], ["yolov8"]


@case("info-bad-size", "info")
def _(t, w):
    return ["info", "--input-size", "1248"], ["'1248'", "WIDTHxHEIGHT"]


@case("info-tiny-size", "info")
def _(t, w):
    return ["info", "--input-size", "8x8"], ["at least 16"]


@case("info-no-classes", "info")
def _(t, w):
    return ["info", "--num-classes", "0"], ["--num-classes must be at least 1"]


@case("synth-out-is-a-file", "synth")
def _(t, w):
    (t / "o").write_text("x")
    return ["synth", "--out", str(t / "o"), "--images", "1", "--size", "128x64", "-q"], [
        "--out", str(t / "o"), "is a file"]


@case("synth-out-below-a-file", "synth")
def _(t, w):
    (t / "o").write_text("x")
    return ["synth", "--out", str(t / "o" / "d"), "--images", "1", "--size", "128x64", "-q"], [
        "--out", "is a file"]


@case("synth-zero-images", "synth")
def _(t, w):
    return ["synth", "--out", str(t / "o"), "--images", "0", "-q"], ["number of images"]


@case("synth-negative-seed", "synth")
def _(t, w):
    return ["synth", "--out", str(t / "o"), "--images", "1", "--seed", "-1", "-q"], ["seed"]


@case("synth-bad-size", "synth")
def _(t, w):
    return ["synth", "--out", str(t / "o"), "--size", "wide", "-q"], ["'wide'"]


@case("synth-val-fraction", "synth")
def _(t, w):
    return ["synth", "--out", str(t / "o"), "--images", "1", "--val-fraction", "1", "-q"], [
        "validation fraction"]


@case("synth-sequence-zero-frames", "synth")
def _(t, w):
    return ["synth", "--sequence", "--out", str(t / "o"), "--frames", "0", "-q"], [
        "number of frames"]


@case("synth-frames-without-sequence", "synth")
def _(t, w):
    return ["synth", "--out", str(t / "o"), "--frames", "5", "-q"], ["go with --sequence"]


@case("split-root-missing", "split", "kitti")
def _(t, w):
    return ["split", str(t / "none")], [str(t / "none"), "does not exist"]


@case("split-not-kitti", "split", "voc")
def _(t, w):
    return ["split", str(w.voc)], [str(w.voc), "not a KITTI-layout data set"]


@case("split-exists", "split", "kitti")
def _(t, w):
    return ["split", str(w.kitti)], [str(w.kitti / "ImageSets" / "train.txt"), "--overwrite"]


@case("split-val-fraction", "split", "kitti")
def _(t, w):
    d = copy(w.kitti, t / "d")
    return ["split", str(d), "--overwrite", "--val-fraction", "1.5"], ["1.5"]


def demo(t: Path, *extra: str) -> list[str]:
    return ["demo", "--out", str(t / "demo"), "--num-images", "4", "--minutes", "0.01",
            "--quiet", *extra]


@case("demo-out-is-a-file", "demo")
def _(t, w):
    (t / "demo").write_text("x")
    return demo(t), ["--out", str(t / "demo"), "is a file"]


@case("demo-bad-size", "demo")
def _(t, w):
    return demo(t, "--size", "huge"), ["'huge'"]


@case("demo-minutes-zero", "demo")
def _(t, w):
    return demo(t, "--minutes", "0"), ["--minutes must be a positive number"]


@case("demo-minutes-nan", "demo")
def _(t, w):
    return demo(t, "--minutes", "nan"), ["--minutes must be a positive number"]


@case("demo-no-images", "demo")
def _(t, w):
    return demo(t, "--num-images", "0"), ["--num-images must be at least 1"]


@case("demo-photos-missing", "demo")
def _(t, w):
    return demo(t, "--images", str(t / "none.jpg")), [str(t / "none.jpg")]


@case("demo-setting-alias", "demo")
def _(t, w):
    return demo(t, "learning_rate=0.1"), ["'learning_rate'", "did you mean 'lr'"]


@case("demo-setting-nan", "demo")
def _(t, w):
    return demo(t, "lr=nan"), ["lr must be a finite number"]


# --- valid but unusual inputs: they must work ---------------------------------------------------


def _unusual_kitti(root: Path) -> Path:
    """KITTI layout, 64x32 images: grayscale, RGBA, 16-bit, palette and grayscale-JPEG images;
    CRLF and byte-order-mark label files, an empty label file, DontCare and Van objects, one box
    partly outside its image (clipped) and one wholly outside (left out)."""
    img, lab = root / "training" / "image_2", root / "training" / "label_2"
    img.mkdir(parents=True)
    lab.mkdir(parents=True)
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (32, 64), dtype=np.uint8)
    Image.fromarray(gray, "L").save(img / "000000.png")
    Image.fromarray(rng.integers(0, 255, (32, 64, 4), dtype=np.uint8), "RGBA").save(img / "000001.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(img / "000002.png")  # 16-bit
    Image.fromarray(gray, "L").convert("P").save(img / "000003.png")
    Image.fromarray(gray, "L").save(img / "000004.jpg")
    box = kitti_line((4, 4, 30, 28))
    (lab / "000000.txt").write_bytes((box + kitti_line((40, 2, 60, 30), "Pedestrian"))
                                     .replace("\n", "\r\n").encode())
    (lab / "000001.txt").write_bytes("\ufeff".encode() + (box + kitti_line((0, 0, 9, 9), "Van"))
                                     .encode())
    (lab / "000002.txt").write_text("")
    (lab / "000003.txt").write_text(box + kitti_line((50, 10, 70, 20), "Cyclist")
                                    + kitti_line((70, 10, 90, 20)) + kitti_line((1, 1, 5, 5),
                                                                                "DontCare"))
    (lab / "000004.txt").write_text(box)
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "train.txt").write_text("000000\r\n000001\r\n000002\r\n000003\r\n")
    (root / "ImageSets" / "val.txt").write_bytes("\ufeff000004\n000003\n".encode())
    return root


def _unusual_coco(root: Path) -> Path:
    """COCO with a byte-order mark, annotations given only as polygons, an image with no
    annotation, RGBA and 16-bit images."""
    WRITERS["coco"](root)
    data = json.loads(coco_json(root).read_text())
    for ann in data["annotations"]:
        x, y, w, h = ann.pop("bbox")
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    coco_json(root).write_bytes(b"\xef\xbb\xbf" + json.dumps(data, indent=1)
                                .replace("\n", "\r\n").encode())
    rgba = np.zeros((100, 200, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "images" / "a.png")
    Image.fromarray(np.full((100, 200), 40000, np.uint16)).save(root / "images" / "c.png")
    return root


def _unusual_voc(root: Path) -> Path:
    """VOC with byte-order marks and CRLF in the XML, grayscale images."""
    WRITERS["voc"](root)
    for xml in (root / "Annotations").glob("*.xml"):
        xml.write_bytes(b"\xef\xbb\xbf" + xml.read_bytes().replace(b"\n", b"\r\n"))
    Image.fromarray(np.zeros((100, 200), np.uint8), "L").save(root / "JPEGImages" / "a.png")
    return root


def _unusual_yolo(root: Path) -> Path:
    """YOLO with a byte-order mark in classes.txt and a label file, CRLF, a polygon line, an
    empty label file and a palette image."""
    WRITERS["yolo"](root)
    (root / "classes.txt").write_bytes(b"\xef\xbb\xbfcat\r\ndog\r\n")
    (root / "labels" / "a.txt").write_bytes(b"\xef\xbb\xbf0 0.1 0.2 0.3 0.2 0.3 0.8 0.1 0.8\r\n")
    (root / "labels" / "c.txt").write_text("")
    Image.fromarray(np.zeros((100, 200), np.uint8), "L").convert("P").save(root / "images" / "c.png")
    return root


UNUSUAL = {"kitti": _unusual_kitti, "coco": _unusual_coco, "voc": _unusual_voc,
           "yolo": _unusual_yolo}
# Worked out from the files above: KITTI has 4 ids in train.txt and 2 in val.txt (one shared);
# own_data's 3 images split 2 / 1. Objects written by convert: KITTI's 8 lines minus DontCare;
# own_data's 4 objects (YOLO: 3, the difficult dog is not in YOLO files, and a.txt's polygon is one
# cat). Training boxes for anchors: KITTI's Cars of the train split, 4 less the one outside its
# image; own_data's train split has 2 non-difficult boxes.
SPLITS = {"kitti": "4 train, 2 val", "coco": "2 train, 1 val", "voc": "2 train, 1 val",
          "yolo": "2 train, 1 val"}
OBJECTS = {"kitti": 8, "coco": 4, "voc": 4, "yolo": 3}
BOXES = {"kitti": 3, "coco": 2, "voc": 2, "yolo": 2}


for _fmt, _make in UNUSUAL.items():
    def _register(fmt: str = _fmt, make: Callable[[Path], Path] = _make) -> None:
        @case(f"ok-train-check-data-{fmt}-unusual", "train", fmt, code=0)
        def _(t, w):
            d = make(t / "d")
            return ["train", "--data", str(d), "--check-data", "--input-size", "64x32"], [
                f"data check of {d} ({fmt}): {SPLITS[fmt]} images in"]

        @case(f"ok-convert-{fmt}-unusual", "convert", fmt, code=0)
        def _(t, w):
            d = make(t / "d")
            to = "voc" if fmt != "voc" else "coco"
            return ["convert", "--to", to, str(d), str(t / "o")], [f"{OBJECTS[fmt]} objects"]

        @case(f"ok-anchors-{fmt}-unusual", "anchors", fmt, code=0)
        def _(t, w):
            d = make(t / "d")
            classes = ["--classes", "Car"] if fmt == "kitti" else []
            return anchors(d, t / "a.yaml", "--k", "1", *classes), [f"{BOXES[fmt]} training boxes"]
    _register()


@case("ok-predict-gray-rgba-16bit", "predict", code=0)
def _(t, w):
    d = _unusual_kitti(t / "d")
    return predict(w.ckpt, d / "training" / "image_2", t / "o", "--no-draw"), []


@case("ok-evaluate-crlf-bom", "evaluate", "kitti", code=0)
def _(t, w):
    r = copy(w.results, t / "r")
    for f in r.glob("*.txt"):
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes().replace(b"\n", b"\r\n"))
    return evaluate(w.labels, r, "--json", str(t / "ap.json")), []


# ------------------------------------------------------------------ running the table


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c: Case, world: World, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    argv, expected = c.make(tmp_path, world)
    code, out, err = _run(argv, capsys)
    assert "Traceback" not in out + err
    assert code == c.code, f"exit {code}, stderr: {err}"
    if c.code == 2:
        # one error line, naming the command: the CLI's "squeezedet <command>: error: <message>"
        # (argparse's own errors read the same after their usage lines; a message may go on to
        # list the files at fault, one a line)
        lines = [line for line in err.splitlines() if "error:" in line]
        assert len(lines) == 1, err
        assert lines[0].startswith(f"squeezedet {c.command}: error: "), err
    for text in expected:
        assert text in out + err, f"{text!r} not in: {err or out}"


def test_corpus_covers_every_command_and_format() -> None:
    bad = [c for c in CASES if c.code != 0]
    assert len(bad) >= 100
    assert {c.command for c in bad} == set(COMMANDS)
    for fmt in ("kitti", "coco", "voc", "yolo"):
        assert sum(fmt in c.formats for c in bad) >= 8, fmt
        assert {c.command for c in CASES if fmt in c.formats and c.code == 0} >= {"train",
                                                                                 "convert"}
    assert len({c.id for c in CASES}) == len(CASES)
