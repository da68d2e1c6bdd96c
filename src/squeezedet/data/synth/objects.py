"""The objects of a synthetic scene: how many (:class:`SceneMix`), where and how they stand on
the road or sidewalk (never on each other's footprint), and their drawing primitives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from squeezedet.data.synth.figures import cyclist_prims, pedestrian_prims
from squeezedet.data.synth.shapes import Camera, Prim, SceneObject
from squeezedet.data.synth.solids import car_prims
from squeezedet.data.synth.style import (
    CAR_COLOURS,
    CLOTH_COLOURS,
    SHARED_COLOURS,
    SKIN_COLOURS,
    Road,
    loguniform,
    pick,
    wrap_angle,
)
from squeezedet.errors import SqueezeDetError


def footprint(o: SceneObject) -> np.ndarray:
    """Ground rectangle ``[4, 2]`` (x, z) of an object, with a small margin."""
    _, w, l = o.dimensions
    c, s = math.cos(o.rotation_y), math.sin(o.rotation_y)
    pts = np.array([[-l / 2, -w / 2], [l / 2, -w / 2], [l / 2, w / 2], [-l / 2, w / 2]]) * 1.1
    return np.stack([o.x + c * pts[:, 0] + s * pts[:, 1], o.z - s * pts[:, 0] + c * pts[:, 1]],
                    axis=1)


def footprints_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex quads ``[4, 2]`` overlap (separating-axis test)."""
    for poly in (a, b):
        for i in range(4):
            e = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-e[1], e[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


@dataclass(frozen=True)
class SceneMix:
    """How many objects a scene holds; the default draws the standard scenes (byte for byte as
    before this setting existed).

    ``density`` multiplies about the expected number of cars (1-6 by default), pedestrians
    (Poisson 1.7, at most 6) and cyclists (Poisson 1.3, at most 4) and their caps (the car count
    and the caps are rounded down); placements that would overlap another object's footprint are
    still dropped, so the scene fills up rather than piling objects on each other.
    """

    density: float = 1.0

    def __post_init__(self) -> None:
        if not 0.25 <= self.density <= 4.0:  # also refuses NaN
            raise SqueezeDetError(f"scene density (--density) must be in [0.25, 4], got "
                                  f"{self.density}")

    @property
    def is_default(self) -> bool:
        return self == SceneMix()


STANDARD_MIX = SceneMix()


def _sample_depth(rng: np.random.Generator, h: float, cam: Camera) -> float:
    """Depth giving a relative box height ``r`` drawn mostly between 0.09 and 0.55."""
    r = loguniform(rng, 0.03, 0.08) if rng.random() < 0.12 else loguniform(rng, 0.09, 0.55)
    return cam.fy / cam.height * h / r


def sample_object(rng: np.random.Generator, kind: str, cam: Camera, road: Road) -> SceneObject:
    """One object of ``kind`` (Car, Pedestrian, Cyclist) placed and posed at random on ``road``."""
    if kind == "Car":
        variant = int(rng.integers(4))
        hh, ww, ll = [(1.45, 1.75, 4.45), (1.50, 1.70, 3.90), (1.75, 1.85, 4.60),
                      (1.90, 1.85, 4.70)][variant]
        dims = (hh * rng.uniform(0.94, 1.06), ww * rng.uniform(0.95, 1.05),
                ll * rng.uniform(0.92, 1.08))
        z = _sample_depth(rng, dims[0], cam)
        mode = rng.choice(4, p=[0.55, 0.28, 0.09, 0.08])
        b = road.bounds
        if mode == 0:  # driving in a lane
            lane = int(rng.integers(len(b) - 1))
            x = (b[lane] + b[lane + 1]) / 2 + rng.normal(0, 0.3)
            ry = (math.pi / 2 if lane < road.n_opposite else -math.pi / 2) + rng.normal(0, 0.06)
        elif mode == 1:  # parked at either edge
            if rng.random() < 0.5:
                x = road.x_left + dims[1] / 2 + rng.uniform(0.1, 0.5)
            else:
                x = road.x_right - dims[1] / 2 - rng.uniform(0.1, 0.5)
            ry = rng.choice([-1.0, 1.0]) * math.pi / 2 + rng.normal(0, 0.05)
        elif mode == 2:  # crossing
            x = rng.uniform(road.x_left - 4, road.x_right + 4)
            ry = rng.choice([0.0, math.pi]) + rng.normal(0, 0.25)
        else:  # turning
            x = rng.uniform(road.x_left, road.x_right)
            ry = rng.uniform(-math.pi, math.pi)
        return SceneObject("Car", float(x), float(z), wrap_angle(float(ry)), dims,
                           colour=pick(rng, CAR_COLOURS),
                           colour2=pick(rng, [(170, 170, 175), (60, 60, 64), (200, 200, 205)]),
                           variant=variant)
    if kind == "Pedestrian":
        hh = float(np.clip(rng.normal(1.76, 0.09), 1.55, 2.0))
        if rng.random() < 0.08:
            hh = rng.uniform(1.1, 1.45)  # a child
        dims = (hh, float(rng.normal(0.66, 0.05)), float(rng.normal(0.84, 0.08)))
        z = _sample_depth(rng, hh, cam)
        if rng.random() < 0.7:  # on a sidewalk
            if rng.random() < 0.5:
                x = rng.uniform(road.x_right + 0.4, road.walk_right)
            else:
                x = rng.uniform(road.walk_left, road.x_left - 0.4)
            ry = (rng.choice([-1.0, 1.0]) * math.pi / 2 + rng.normal(0, 0.3) if rng.random() < 0.7
                  else rng.uniform(-math.pi, math.pi))
        else:  # crossing the road
            x = rng.uniform(road.x_left, road.x_right)
            ry = rng.choice([0.0, math.pi]) + rng.normal(0, 0.3)
        return SceneObject("Pedestrian", float(x), float(z), wrap_angle(float(ry)), dims,
                           colour=pick(rng, SHARED_COLOURS),
                           colour2=pick(rng, CLOTH_COLOURS), skin=pick(rng, SKIN_COLOURS, 6),
                           variant=int(rng.integers(5)), phase=float(rng.uniform(0, 2 * math.pi)))
    # Cyclist: seen from the side or at an angle, |cos(alpha)| >= 0.45
    dims = (float(rng.normal(1.74, 0.05)), float(rng.normal(0.6, 0.04)),
            float(rng.normal(1.76, 0.06)))
    z = _sample_depth(rng, dims[0], cam)
    u = rng.random()
    if u < 0.5:
        x = rng.uniform(road.x_right - 2.0, road.x_right - 0.5)
    elif u < 0.85:
        x = rng.uniform(road.x_left, road.x_right)
    else:
        x = rng.uniform(road.walk_left, road.walk_right)
    while True:
        alpha = rng.choice([0.0, math.pi]) + rng.normal(0, 0.55)
        if abs(math.cos(alpha)) >= 0.45:
            break
    ry = alpha + math.atan2(x, z)
    return SceneObject("Cyclist", float(x), float(z), wrap_angle(float(ry)), dims,
                       colour=pick(rng, SHARED_COLOURS), colour2=pick(rng, SHARED_COLOURS),
                       skin=pick(rng, SKIN_COLOURS, 6), variant=int(rng.integers(4)),
                       phase=float(rng.uniform(0, 2 * math.pi)))


def sample_objects(rng: np.random.Generator, cam: Camera, road: Road,
                    scene: SceneMix = STANDARD_MIX) -> list[SceneObject]:
    d = scene.density
    kinds = (["Car"] * int(rng.integers(1, 7) * d)
             + ["Pedestrian"] * min(int(rng.poisson(1.7 * d)), int(6 * d))
             + ["Cyclist"] * min(int(rng.poisson(1.3 * d)), int(4 * d)))
    placed: list[SceneObject] = []
    feet: list[np.ndarray] = []
    for kind in kinds:
        for _ in range(10):
            o = sample_object(rng, kind, cam, road)
            fp = footprint(o)
            if fp[:, 1].min() < 2.0 or any(footprints_overlap(fp, g) for g in feet):
                continue
            placed.append(o)
            feet.append(fp)
            break
    return placed


def object_prims(obj: SceneObject, cam: Camera, light: np.ndarray | None = None,
                 ambient: float = 0.6) -> list[Prim]:
    """The drawing primitives of one object (pixels of the full image)."""
    if light is None:
        light = np.array([0.4, -0.7, -0.6]) / np.linalg.norm([0.4, -0.7, -0.6])
    if obj.type == "Car":
        return car_prims(obj, cam, light, ambient)
    if obj.type == "Pedestrian":
        return pedestrian_prims(obj, cam)
    return cyclist_prims(obj, cam)
