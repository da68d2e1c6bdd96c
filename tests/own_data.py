"""One tiny data set that the tests write in each format (KITTI, COCO, VOC, YOLO), with the quirks
of real files, and the boxes every reader must give back.

Three images: ``a`` (200x100 PNG), ``b`` (160x120 JPEG), ``c`` (200x100 PNG, no objects). Classes
``cat`` and ``dog``. The dog in ``a`` is "difficult" (VOC ``difficult``, COCO ``iscrowd``, KITTI
``occluded`` 3; YOLO cannot say so and leaves it out).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = {"a": (200, 100), "b": (160, 120), "c": (200, 100)}
EXT = {"a": ".png", "b": ".jpg", "c": ".png"}
# id -> [(class, (x1, y1, x2, y2) continuous pixels, difficult)]
OBJECTS: dict[str, list[tuple[str, tuple[float, float, float, float], bool]]] = {
    "a": [("cat", (10.0, 20.0, 60.0, 80.0), False), ("dog", (100.0, 10.0, 190.0, 90.0), True)],
    "b": [("dog", (20.5, 30.0, 80.0, 110.0), False), ("cat", (0.0, 0.0, 40.0, 40.0), False)],
    "c": [],
}
CLASSES = ("cat", "dog")


def expected(image_id: str, with_difficult: bool = False) -> tuple[np.ndarray, list[str]]:
    """Boxes ``[N, 4]`` and class names of the regular (not difficult) objects of an image."""
    objs = [(c, b) for c, b, d in OBJECTS[image_id] if with_difficult or not d]
    return np.array([b for _, b in objs], dtype=np.float32).reshape(-1, 4), [c for c, _ in objs]


def _image(path: Path, image_id: str) -> None:
    w, h = SIZES[image_id]
    rng = np.random.default_rng(len(image_id) + ord(image_id))
    arr = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def write_voc(root: Path, flat: bool = False, split_files: bool = False) -> Path:
    """VOC with quirks: ``a.xml`` names ``a.jpg`` (the file is ``a.png``); ``b.xml`` has no
    ``<size>`` and a float ``xmin``; ``c.xml`` has no ``filename`` and a zero size."""
    ann = root if flat else root / "Annotations"
    imgs = root if flat else root / "JPEGImages"
    ann.mkdir(parents=True, exist_ok=True)
    for image_id in OBJECTS:
        _image(imgs / f"{image_id}{EXT[image_id]}", image_id)
    w, h = SIZES["a"]
    (ann / "a.xml").write_text(f"""<annotation>
  <folder>VOC2007</folder>
  <filename>a.jpg</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  <object>
    <name> cat </name><pose>Unspecified</pose>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>60</xmax><ymax>80</ymax></bndbox>
  </object>
  <object>
    <name>dog</name><truncated>0</truncated><difficult> 1 </difficult>
    <bndbox><xmin>101.0</xmin><ymin>11.0</ymin><xmax>190.0</xmax><ymax>90.0</ymax></bndbox>
  </object>
</annotation>
""")
    (ann / "b.xml").write_text("""<annotation>
  <filename>b.png</filename>
  <object><name>dog</name><difficult>0</difficult>
    <bndbox><xmin>21.5</xmin><ymin>31</ymin><xmax>80</xmax><ymax>110</ymax></bndbox></object>
  <object><name>cat</name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object>
</annotation>
""")
    (ann / "c.xml").write_text("""<annotation>
  <size><width>0</width><height>0</height><depth>3</depth></size>
</annotation>
""")
    if split_files:
        sets = root / "ImageSets" / "Main"
        sets.mkdir(parents=True)
        (sets / "train.txt").write_text("a\nc\n")
        (sets / "val.txt").write_text("b\n")
    return root


def write_coco(root: Path, split_files: bool = False) -> Path:
    """COCO with category ids 3 (cat) and 7 (dog), the difficult dog as ``iscrowd``."""
    cat_id = {"cat": 3, "dog": 7}

    def payload(ids: list[str]) -> dict:
        images, anns = [], []
        for n, image_id in enumerate(ids, start=10):
            _image(root / "images" / f"{image_id}{EXT[image_id]}", image_id)
            w, h = SIZES[image_id]
            images.append({"id": n, "file_name": f"{image_id}{EXT[image_id]}", "width": w,
                           "height": h})
            for c, (x1, y1, x2, y2), d in OBJECTS[image_id]:
                anns.append({"id": len(anns) + 1, "image_id": n, "category_id": cat_id[c],
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": int(d),
                             "area": (x2 - x1) * (y2 - y1)})
        cats = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]  # not in id order
        return {"images": images, "annotations": anns, "categories": cats}

    (root / "annotations").mkdir(parents=True, exist_ok=True)
    if split_files:
        for name, ids in (("train", ["a", "c"]), ("val", ["b"])):
            (root / "annotations" / f"instances_{name}.json").write_text(json.dumps(payload(ids)))
    else:
        (root / "annotations" / "instances.json").write_text(json.dumps(payload(list(OBJECTS))))
    return root


def write_yolo(root: Path, split_folders: bool = False) -> Path:
    """YOLO: ``classes.txt``; ``c`` has no label file; the difficult dog is not written."""
    for image_id in OBJECTS:
        split = ("val" if image_id == "b" else "train") if split_folders else ""
        _image(root / "images" / split / f"{image_id}{EXT[image_id]}", image_id)
        if image_id == "c":
            continue
        w, h = SIZES[image_id]
        lines = []
        for c, (x1, y1, x2, y2), d in OBJECTS[image_id]:
            if d:
                continue
            values = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
            lines.append(f"{CLASSES.index(c)} " + " ".join(repr(v) for v in values))
        label = root / "labels" / split / f"{image_id}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


def write_kitti(root: Path) -> Path:
    """KITTI layout; the difficult dog has ``occluded`` 3."""
    for image_id in OBJECTS:
        _image(root / "training" / "image_2" / f"{image_id}{EXT[image_id]}", image_id)
        lines = [f"{c} 0.00 {3 if d else 0} -10 {x1} {y1} {x2} {y2} -1 -1 -1 -1000 -1000 -1000 -10"
                 for c, (x1, y1, x2, y2), d in OBJECTS[image_id]]
        label = root / "training" / "label_2" / f"{image_id}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(line + "\n" for line in lines))
    return root


WRITERS = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo, "kitti": write_kitti}
