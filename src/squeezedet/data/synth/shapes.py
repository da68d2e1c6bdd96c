"""The camera, the drawing primitives and the objects to draw of the synthetic scenes.

Everything drawn by :mod:`squeezedet.data.synth` is a list of :class:`Prim` (filled polygons,
thick poly-lines and ellipse rings) in absolute pixel coordinates of the full image, so that one
list can be drawn on the RGB image, on the per-object mask and on the owner map alike, and its
extent is the object's full (unclipped) 2-D box.

Geometry follows KITTI's camera frame: x to the right, y down, z forward, metres; the ground is
the plane ``y = camera.height_m``; ``rotation_y = 0`` heads along +x and ``-pi/2`` away from the
camera. Cars and boxes are drawn as projected 3-D solids (:mod:`.solids`); pedestrians, cyclists
and most clutter as 2-D figures (:class:`Figure`) standing on the projected foot point, scaled by
``f / z`` (:mod:`.figures`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

Colour = tuple[int, int, int]

# Class-mean dimensions (h, w, l) in metres, close to KITTI's training-set means.
DEFAULT_DIMENSIONS: dict[str, tuple[float, float, float]] = {
    "Car": (1.53, 1.66, 3.9),
    "Pedestrian": (1.76, 0.66, 0.84),
    "Cyclist": (1.74, 0.60, 1.76),
}


@dataclass(frozen=True)
class SceneObject:
    """One object to draw: class, ground position, heading, size and appearance.

    ``x``, ``z``: the bottom centre of its 3-D box in the camera frame (metres; it stands on the
    ground, so ``y`` is the camera height). ``rotation_y``: KITTI's heading about the y axis.
    ``dimensions``: ``(h, w, l)`` in metres. ``colour`` is the body / shirt / rider colour,
    ``colour2`` the wheel hubs / trousers / bicycle frame, ``skin`` the face and hands;
    ``variant`` picks a body style or accessory and ``phase`` the walking or pedalling phase.
    """

    type: str
    x: float
    z: float
    rotation_y: float
    dimensions: tuple[float, float, float] = (0.0, 0.0, 0.0)
    colour: Colour = (170, 30, 30)
    colour2: Colour = (40, 40, 60)
    skin: Colour = (205, 165, 135)
    variant: int = 0
    phase: float = 0.8

    def __post_init__(self) -> None:
        if self.type not in DEFAULT_DIMENSIONS:
            raise ValueError(f"unknown object type {self.type!r}")
        if self.dimensions == (0.0, 0.0, 0.0):
            object.__setattr__(self, "dimensions", DEFAULT_DIMENSIONS[self.type])


@dataclass(frozen=True)
class Camera:
    """Pinhole camera looking horizontally, ``height_m`` above a flat ground.

    The intrinsics are KITTI's (f = 721.5 px, principal point near (609.6, 172.9) at 1242x375)
    scaled with the image size, so that a scene drawn at any size shows the same view and object
    sizes scale with the image. The horizon is the row ``cy``.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    height_m: float = 1.65

    @classmethod
    def for_size(cls, width: int, height: int) -> Camera:
        """KITTI's camera scaled to an image of ``width`` x ``height`` pixels."""
        return cls(
            width=width,
            height=height,
            fx=721.54 * width / 1242.0,
            fy=721.54 * height / 375.0,
            cx=0.4908 * width,
            cy=0.4609 * height,
        )

    def project(self, pts: np.ndarray) -> np.ndarray:
        """Pixel ``(u, v)`` ``[N, 2]`` of camera-frame points ``[N, 3]`` (``z`` > 0, metres)."""
        z = pts[:, 2]
        return np.stack(
            [self.cx + self.fx * pts[:, 0] / z, self.cy + self.fy * pts[:, 1] / z], axis=1
        )

    def ground_row(self, z: np.ndarray | float) -> np.ndarray | float:
        """Image row of the ground at depth ``z`` (metres)."""
        return self.cy + self.fy * self.height_m / z


@dataclass
class Prim:
    """One drawing primitive in pixels.

    ``kind`` is ``"poly"`` (filled polygon, ``pts`` ``[N, 2]``), ``"line"`` (poly-line of
    ``width`` pixels) or ``"ring"`` (ellipse outline of ``width`` pixels, ``pts`` = its bounding
    box ``[[x1, y1], [x2, y2]]``).
    """

    kind: str
    pts: np.ndarray
    fill: Colour
    width: float = 0.0

    def extent(self) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)`` covered by the primitive (line width included)."""
        lo = self.pts.min(axis=0)
        hi = self.pts.max(axis=0)
        pad = self.width / 2.0 if self.kind == "line" else 0.0
        return (float(lo[0] - pad), float(lo[1] - pad), float(hi[0] + pad), float(hi[1] + pad))


def prims_extent(prims: Sequence[Prim]) -> tuple[float, float, float, float]:
    """Union of the extents of ``prims`` as ``(x1, y1, x2, y2)``."""
    ext = np.array([p.extent() for p in prims])
    return (
        float(ext[:, 0].min()), float(ext[:, 1].min()),
        float(ext[:, 2].max()), float(ext[:, 3].max()),
    )


def draw_prims(
    draw: ImageDraw.ImageDraw,
    prims: Sequence[Prim],
    offset: tuple[float, float] = (0.0, 0.0),
    fill: int | Colour | None = None,
) -> None:
    """Draw ``prims`` shifted by ``-offset``; ``fill`` overrides every colour (for masks)."""
    ox, oy = offset
    shift = np.array([ox, oy])
    for p in prims:
        colour = p.fill if fill is None else fill
        pts = p.pts - shift if (ox or oy) else p.pts
        if p.kind == "poly":
            draw.polygon(pts.ravel().tolist(), fill=colour)
        elif p.kind == "line":
            draw.line(pts.ravel().tolist(), fill=colour, width=max(1, int(round(p.width))))
        else:  # ring
            (x1, y1), (x2, y2) = pts
            if x2 - x1 < 1.0 or y2 - y1 < 1.0:
                draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], fill=colour)
            else:
                draw.ellipse([x1, y1, x2, y2], outline=colour, width=max(1, int(round(p.width))))


def shade(colour: Sequence[float], factor: float) -> Colour:
    """``colour`` times ``factor``, clipped to 0..255."""
    r, g, b = colour
    return (int(min(255, max(0, r * factor))), int(min(255, max(0, g * factor))),
            int(min(255, max(0, b * factor))))


def mix(a: Sequence[float], b: Sequence[float], t: float) -> Colour:
    """Linear blend ``(1 - t) a + t b``."""
    out = (int(min(255, max(0, (1 - t) * x + t * y))) for x, y in zip(a, b, strict=True))
    return tuple(out)  # type: ignore[return-value]


def ellipse_pts(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> np.ndarray:
    """``n`` points of an ellipse, ``[n, 2]`` (the four extremes included when 4 divides n)."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def thick_segment(p0: Sequence[float], p1: Sequence[float], w0: float, w1: float) -> np.ndarray:
    """Quadrilateral ``[4, 2]`` around the segment p0-p1, ``w0`` wide at p0 and ``w1`` at p1."""
    a = np.asarray(p0, dtype=float)
    b = np.asarray(p1, dtype=float)
    d = b - a
    n = float(np.hypot(d[0], d[1]))
    perp = np.array([-d[1], d[0]]) / n if n > 1e-9 else np.array([1.0, 0.0])
    return np.stack([a + perp * w0 / 2, b + perp * w1 / 2, b - perp * w1 / 2, a - perp * w0 / 2])


class Figure:
    """Maps a figure's local metres (``u`` along the facing side, ``up`` from the ground) to
    pixels, and collects the figure's primitives."""

    def __init__(self, cam: Camera, x: float, z: float, facing: float, squash: float) -> None:
        self.u0 = cam.cx + cam.fx * x / z
        self.v0 = float(cam.ground_row(z))
        self.kx = cam.fx / z * facing
        self.ky = cam.fy / z
        self.squash = squash
        self.prims: list[Prim] = []

    def px(self, pts: np.ndarray) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(pts, dtype=float))
        return np.stack([self.u0 + self.kx * pts[:, 0], self.v0 - self.ky * pts[:, 1]], axis=1)

    def poly(self, pts: np.ndarray, colour: Colour) -> None:
        self.prims.append(Prim("poly", self.px(pts), colour))

    def limb(self, p0: Sequence[float], p1: Sequence[float], w0: float, w1: float,
             colour: Colour) -> None:
        self.poly(thick_segment(p0, p1, w0, w1), colour)

    def line(self, pts: Sequence[Sequence[float]], width_m: float, colour: Colour) -> None:
        self.prims.append(Prim("line", self.px(np.asarray(pts)), colour,
                               max(1.0, width_m * self.ky)))

    def ellipse(self, cu: float, cup: float, ru: float, rup: float, colour: Colour) -> None:
        self.poly(ellipse_pts(cu, cup, ru, rup), colour)
