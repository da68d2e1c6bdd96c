"""Synthetic driving sequences: the scenes of :mod:`.scene` in motion, with ground-truth track ids.

A sequence is one street seen from a parked camera at 10 frames per second (KITTI's rate): the
background, clutter, lighting and cast shadows of one scene stay; the cars, pedestrians and
cyclists move on the ground plane, each at a constant speed along its heading — cars in their
lanes at 4-12 m/s (parked ones stand), pedestrians at 0.9-1.8 m/s (some stand), cyclists at
2.5-6 m/s — with walking and pedalling phases that advance. An object whose next step would run
into another one waits (at most :data:`MAX_WAIT` frames, then it goes on), so queues form and
objects pass behind each other: occlusion comes from the drawing, as in single scenes. Objects
leave when they pass the camera, go far down the road or out of the sides; new ones enter from
out of view, about ``ENTER_RATE * density`` a frame, placed where their path comes into view.

Each frame is drawn and labelled like a single scene (:func:`.labels.label_objects`); every
labelled object carries the id of its track (KITTI tracking counts them from 0), DontCare regions
id -1. KITTI tracking's truncation is an integer level: here 0 below 15 % of the box outside the
image, 1 below 50 %, else 2.

Determinism: sequence ``i`` of seed ``S`` is drawn from ``numpy.random.default_rng([S, i, 2])``
one frame after the other, so the same seed gives the same files and a sequence of 20 frames is
the first 20 of one of 50.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.kitti_tracking import TrackedObject
from squeezedet.data.synth.background import draw_background, multiply, texture
from squeezedet.data.synth.clutter import clutter
from squeezedet.data.synth.labels import label_objects
from squeezedet.data.synth.objects import (
    STANDARD_MIX,
    SceneMix,
    footprint,
    footprints_overlap,
    object_prims,
    sample_object,
    sample_objects,
)
from squeezedet.data.synth.scene import cast_shadows, finish
from squeezedet.data.synth.shapes import Camera, SceneObject
from squeezedet.data.synth.style import Item, Road, Style, sample_road, sample_style

FPS = 10.0
#: speed ranges in metres per second
SPEEDS = {"Car": (4.0, 12.0), "Pedestrian": (0.9, 1.8), "Cyclist": (2.5, 6.0)}
#: new objects per frame at density 1, and the share of each class among them
ENTER_RATE = 0.12
ENTER_MIX = {"Car": 0.5, "Pedestrian": 0.3, "Cyclist": 0.2}
MAX_WAIT = 20
NEAREST, FARTHEST = 2.5, 90.0  # metres: objects leave outside this range of depths


@dataclass
class Mover:
    """One object of a sequence: its track id, where it is and how it moves (per frame)."""

    track_id: int
    obj: SceneObject
    vx: float
    vz: float
    phase_step: float
    shadow: int
    waited: int = 0

    def moved(self, steps: float = 1.0) -> SceneObject:
        return replace(self.obj, x=self.obj.x + steps * self.vx, z=self.obj.z + steps * self.vz,
                       phase=self.obj.phase + steps * self.phase_step)


def truncation_level(fraction: float) -> int:
    """KITTI tracking's integer truncation of a box with ``fraction`` of its area outside."""
    return 0 if fraction < 0.15 else 1 if fraction < 0.5 else 2


def _velocity(rng: np.random.Generator, obj: SceneObject, road: Road) -> tuple[float, float, float]:
    """``(vx, vz, phase step)`` per frame: along the heading ``(cos ry, -sin ry)``, KITTI's."""
    lo, hi = SPEEDS[obj.type]
    speed = rng.uniform(lo, hi)
    parked = obj.type == "Car" and not road.bounds[0] <= obj.x <= road.bounds[-1]
    if parked or (obj.type == "Pedestrian" and rng.random() < 0.15):
        speed = 0.0
    step = speed / FPS
    cadence = {"Car": 0.0, "Pedestrian": 2 * math.pi * 0.9, "Cyclist": 2 * math.pi * 1.1}[obj.type]
    phase_step = cadence / FPS if speed > 0 else 0.0
    return step * math.cos(obj.rotation_y), -step * math.sin(obj.rotation_y), phase_step


def _in_view(obj: SceneObject, cam: Camera) -> bool:
    """Whether the object's bottom centre is within the depth range and near the image."""
    if not NEAREST <= obj.z <= FARTHEST:
        return False
    half = max(obj.dimensions[1], obj.dimensions[2]) / 2
    u_left = cam.cx + cam.fx * (obj.x - half) / obj.z
    u_right = cam.cx + cam.fx * (obj.x + half) / obj.z
    return u_right > 0 and u_left < cam.width


class SequenceWorld:
    """The movers of one sequence and the static scene they move in."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], scene: SceneMix) -> None:
        self.rng, self.scene = rng, scene
        self.cam = Camera.for_size(*size)
        self.style: Style = sample_style(rng)
        self.road: Road = sample_road(rng)
        self.background = draw_background(rng, self.cam, self.style, self.road)
        self.factor = texture(rng, self.cam, max(4, size[0] // 60), 0.25)
        self.movers: list[Mover] = []
        self.next_id = 0
        for obj in sample_objects(rng, self.cam, self.road, scene):
            self._add(obj)
        self.clutter = clutter(rng, self.cam, self.style, self.road)
        self.shadows = cast_shadows(rng, self.cam, self.road)

    def _add(self, obj: SceneObject) -> Mover:
        vx, vz, phase_step = _velocity(self.rng, obj, self.road)
        mover = Mover(self.next_id, obj, vx, vz, phase_step, int(255 * self.rng.uniform(0.4, 0.65)))
        self.movers.append(mover)
        self.next_id += 1
        return mover

    def step(self) -> None:
        """Move everything one frame, let objects leave and enter."""
        feet = [footprint(m.obj) for m in self.movers]
        for i, m in enumerate(self.movers):
            if m.vx == 0 and m.vz == 0:
                continue
            nxt = footprint(m.moved())
            blocked = any(footprints_overlap(nxt, f) for j, f in enumerate(feet) if j != i)
            if blocked and m.waited < MAX_WAIT:
                m.waited += 1
                continue
            m.obj, m.waited = m.moved(), 0
            feet[i] = nxt
        self.movers = [m for m in self.movers if _in_view(m.obj, self.cam)]
        n_new = int(self.rng.poisson(ENTER_RATE * self.scene.density))
        for _ in range(n_new):
            self._enter()

    def _enter(self) -> None:
        """A new moving object, placed where its path comes into view (nothing if it cannot)."""
        kinds = list(ENTER_MIX)
        kind = kinds[int(self.rng.choice(len(kinds), p=list(ENTER_MIX.values())))]
        obj = sample_object(self.rng, kind, self.cam, self.road)
        vx, vz, phase_step = _velocity(self.rng, obj, self.road)
        if vx == 0 and vz == 0:
            return
        probe = Mover(-1, obj, vx, vz, phase_step, 0)
        back = next((k for k in range(1, 200) if not _in_view(probe.moved(-k), self.cam)), None)
        if back is None:
            return
        start = probe.moved(-(back - 1))  # the last place on its path before it is out of view
        if footprint(start)[:, 1].min() < 1.0:
            return
        if any(footprints_overlap(footprint(start), footprint(m.obj)) for m in self.movers):
            return
        mover = self._add(start)
        mover.vx, mover.vz, mover.phase_step = vx, vz, phase_step

    def render(self) -> tuple[Image.Image, list[TrackedObject]]:
        """The current frame and its labels with track ids (frame number 0; see :func:`frames`)."""
        cam, w, h = self.cam, self.cam.width, self.cam.height
        shadow = Image.new("L", (w, h), 255)
        sdraw = ImageDraw.Draw(shadow)
        items = list(self.clutter)
        by_place: dict[tuple[float, float], int] = {}
        for m in self.movers:
            o = m.obj
            items.append(Item(o.z, object_prims(o, cam, self.style.light, self.style.ambient), o))
            fp = footprint(o)
            pts = np.stack([fp[:, 0], np.full(4, cam.height_m), np.maximum(fp[:, 1], 0.5)], axis=1)
            sdraw.polygon(cam.project(pts).ravel().tolist(), fill=m.shadow)
            by_place[(o.x, o.z)] = m.track_id
        img = multiply(self.background, ImageChops.multiply(self.factor, shadow))
        labels = label_objects(img, items, cam)
        if self.shadows is not None:
            img = multiply(img, self.shadows)
        img = finish(img, self.rng, self.style)
        return img, [_tracked(label, by_place, w, h) for label in labels]


def _tracked(label: KittiObject, by_place: dict[tuple[float, float], int], w: int,
             h: int) -> TrackedObject:
    """A label with its track id (found by the object's ground position) and integer truncation."""
    if label.type == "DontCare":
        return TrackedObject(0, -1, label)
    track_id = by_place[(label.location[0], label.location[2])]
    return TrackedObject(0, track_id, replace(label, truncated=float(truncation_level(label.truncated))))


def frames(seed: int, index: int, n_frames: int, size: tuple[int, int] = (1242, 375),
           scene: SceneMix = STANDARD_MIX) -> Iterator[tuple[Image.Image, list[TrackedObject]]]:
    """The ``n_frames`` frames of sequence ``index`` of ``seed``: each image with its labels."""
    world = SequenceWorld(np.random.default_rng([seed, index, 2]), size, scene)
    for f in range(n_frames):
        if f:
            world.step()
        img, labels = world.render()
        yield img, [replace(t, frame=f) for t in labels]
