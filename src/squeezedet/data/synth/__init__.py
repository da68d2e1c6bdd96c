"""Synthetic KITTI-layout data sets of procedurally drawn driving scenes.

:func:`render_scene` draws one road scene with its labels; :func:`generate_dataset` writes ``N``
of them in KITTI's layout (images, labels, a train/val split and a manifest, :mod:`.dataset`).

Scenes hold a road in perspective with lanes and marks, sidewalks, buildings, trees, poles, signs,
shadows and texture, and cars, pedestrians and cyclists of many sizes, colours and poses that
overlap and are cut by the image border (see :mod:`.labels` for how the labels are computed).
Clutter shares the objects' colours and includes look-alikes that are *not* objects (crates and
kiosks in car colours, lamp posts with a globe, parked bicycles without a rider), and lighting,
blur and noise vary, so a detector has to learn shapes.

Determinism: image ``i`` of the data set with seed ``S`` is
``render_scene([S, i], size, scene)``, so the same seed gives byte-identical files and a data set
of 10 images is the first 10 of one of 20. ``density`` (:class:`SceneMix`) puts more or fewer
objects in each scene; the manifest records it when it is not 1.
The camera is KITTI's scaled to the image size, so object sizes scale with the image.

The modules, from the bottom up: :mod:`.shapes` (camera, drawing primitives, the object
description), :mod:`.solids` (cars and boxes in 3-D), :mod:`.figures` (pedestrians, cyclists),
:mod:`.style` (palettes, road layout, lighting), :mod:`.background`, :mod:`.clutter`,
:mod:`.objects` (how many objects, where), :mod:`.labels`, :mod:`.scene` (one scene),
:mod:`.dataset` (a data set on disk), :mod:`.sequence` (scenes in motion, with track ids) and
:mod:`.sequence_files` (sequences on disk, KITTI tracking's layout).
"""

from squeezedet.data.synth.dataset import (
    GENERATOR_VERSION,
    MANIFEST,
    check_size,
    generate_dataset,
    is_current,
    split_ids,
)
from squeezedet.data.synth.labels import label_objects, occlusion_level, truncation
from squeezedet.data.synth.objects import STANDARD_MIX, SceneMix
from squeezedet.data.synth.scene import render_objects, render_scene
from squeezedet.data.synth.shapes import DEFAULT_DIMENSIONS, Camera, SceneObject

__all__ = [
    "DEFAULT_DIMENSIONS", "GENERATOR_VERSION", "MANIFEST", "STANDARD_MIX", "Camera", "SceneMix",
    "SceneObject", "check_size", "generate_dataset", "is_current", "label_objects",
    "occlusion_level", "render_objects", "render_scene", "split_ids", "truncation",
]
