"""Drawing primitives, the camera and the shapes of the synthetic scene generator.

Everything drawn by :mod:`squeezedet.data.synth` is a list of :class:`Prim` (filled polygons,
thick poly-lines and ellipse rings) in absolute pixel coordinates of the full image, so that one
list can be drawn on the RGB image, on the per-object mask and on the owner map alike, and its
extent is the object's full (unclipped) 2-D box.

Geometry follows KITTI's camera frame: x to the right, y down, z forward, metres; the ground is
the plane ``y = camera.height_m``; ``rotation_y = 0`` heads along +x and ``-pi/2`` away from the
camera. Cars are drawn as projected 3-D solids (body, tyres, cabin with windows, lights, wheels);
pedestrians and cyclists as 2-D figures standing on the projected foot point, scaled by
``f / z`` and seen from the side, front or back according to the observation angle ``alpha``.
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


# ---------------------------------------------------------------------------------------------
# Solids (cars, boxes) in 3-D


def _frustum(
    xb: tuple[float, float], zb: tuple[float, float], xt: tuple[float, float],
    zt: tuple[float, float], y_bot: float, y_top: float,
) -> tuple[np.ndarray, list[tuple[str, list[int]]]]:
    """Vertices ``[8, 3]`` (object frame, y down) and named faces of a box with a smaller top."""
    verts = np.array([
        [xb[0], y_bot, zb[0]], [xb[1], y_bot, zb[0]], [xb[1], y_bot, zb[1]], [xb[0], y_bot, zb[1]],
        [xt[0], y_top, zt[0]], [xt[1], y_top, zt[0]], [xt[1], y_top, zt[1]], [xt[0], y_top, zt[1]],
    ])
    faces = [
        ("bottom", [0, 1, 2, 3]), ("top", [4, 5, 6, 7]), ("rear", [0, 3, 7, 4]),
        ("front", [1, 2, 6, 5]), ("side0", [0, 1, 5, 4]), ("side1", [3, 2, 6, 7]),
    ]
    return verts, faces


def _to_camera(local: np.ndarray, x: float, y: float, z: float, ry: float) -> np.ndarray:
    """Object-frame points ``[N, 3]`` to the camera frame (KITTI's rotation about y)."""
    c, s = math.cos(ry), math.sin(ry)
    out = np.empty_like(local)
    out[:, 0] = x + c * local[:, 0] + s * local[:, 2]
    out[:, 1] = y + local[:, 1]
    out[:, 2] = z - s * local[:, 0] + c * local[:, 2]
    return out


def _visible_faces(
    cam_verts: np.ndarray, faces: list[tuple[str, list[int]]]
) -> tuple[list[int], np.ndarray]:
    """Indices of the faces seen from the camera (at the origin) and all unit normals ``[F, 3]``.

    Normals point out of the solid; a face is seen when its normal points towards the camera.
    """
    idx = np.array([f[1] for f in faces])
    pts = cam_verts[idx]  # [F, 4, 3]
    fc = pts.mean(axis=1)
    a = pts[:, 1] - pts[:, 0]
    b = pts[:, 2] - pts[:, 0]
    c = pts[:, 3] - pts[:, 0]
    n = np.cross(a, b)
    small = (n * n).sum(axis=1) < 1e-18
    if small.any():  # a degenerate first triangle: use the other one
        n[small] = np.cross(b[small], c[small])
    n /= np.maximum(np.sqrt((n * n).sum(axis=1)), 1e-12)[:, None]
    n[((fc - cam_verts.mean(axis=0)) * n).sum(axis=1) < 0] *= -1.0
    seen = (n * -fc).sum(axis=1) > 1e-9
    return [int(i) for i in np.nonzero(seen)[0]], n


def _lit(colour: Colour, normal: np.ndarray, light: np.ndarray, ambient: float) -> Colour:
    d = normal[0] * light[0] + normal[1] * light[1] + normal[2] * light[2]
    return shade(colour, ambient + (1.0 - ambient) * max(0.0, float(d)))


def solid_prims(
    cam: Camera, verts: np.ndarray, faces: list[tuple[str, list[int]]], pose: tuple[float, ...],
    colour: Colour, light: np.ndarray, ambient: float,
) -> tuple[list[Prim], list[tuple[str, np.ndarray, np.ndarray]]]:
    """Lit visible faces of a solid placed at ``pose = (x, y, z, ry)``.

    Also returns the visible faces as ``(name, camera-frame points [4, 3], normal)``.
    """
    cv = _to_camera(verts, *pose)
    uv = cam.project(cv)
    seen, normals = _visible_faces(cv, faces)
    prims, vis = [], []
    for i in seen:
        name, idx = faces[i]
        prims.append(Prim("poly", uv[idx], _lit(colour, normals[i], light, ambient)))
        vis.append((name, cv[idx], normals[i]))
    return prims, vis


# Car body styles: hood height (fraction of h), cabin x-range at the bottom and at the top
# (fractions of l, the front is +x), cabin half-widths (fractions of w) at bottom and top.
_CAR_STYLES = (
    (0.52, (-0.33, 0.17), (-0.22, 0.02), 0.47, 0.40),  # sedan
    (0.53, (-0.46, 0.16), (-0.43, -0.02), 0.47, 0.41),  # hatchback
    (0.58, (-0.45, 0.20), (-0.44, 0.08), 0.48, 0.43),  # SUV
    (0.50, (-0.47, 0.30), (-0.46, 0.20), 0.48, 0.44),  # van / MPV
)


def car_prims(obj: SceneObject, cam: Camera, light: np.ndarray, ambient: float) -> list[Prim]:
    """A car as a lit 3-D solid: tyres, body, lights, wheels and a cabin with windows."""
    h, w, l = obj.dimensions
    hood, cab_b, cab_t, hw_b, hw_t = _CAR_STYLES[obj.variant % len(_CAR_STYLES)]
    pose = (obj.x, cam.height_m, obj.z, obj.rotation_y)
    r = 0.21 * h
    clear = 0.11 * h
    wheel_x = (-0.31 * l, 0.31 * l)
    prims: list[Prim] = []

    # Tyres (boxes under the body), far ones first.
    tyre_colour: Colour = (22, 22, 24)
    tyres = []
    for xw in wheel_x:
        for z0, z1 in ((-w / 2 + 0.01, -w / 2 + 0.24), (w / 2 - 0.24, w / 2 - 0.01)):
            verts, faces = _frustum((xw - r, xw + r), (z0, z1), (xw - r, xw + r), (z0, z1), 0.0,
                                    -1.6 * r)
            cv = _to_camera(verts, *pose)
            tyres.append((float(np.linalg.norm(cv.mean(axis=0))), verts, faces))
    for _, verts, faces in sorted(tyres, key=lambda t: -t[0]):
        p, _ = solid_prims(cam, verts, faces, pose, tyre_colour, light, 0.8)
        prims += p

    # Body.
    body_verts, body_faces = _frustum(
        (-l / 2, l / 2), (-w / 2, w / 2), (-l / 2 + 0.05 * l, l / 2 - 0.04 * l),
        (-w / 2 + 0.02, w / 2 - 0.02), -clear, -hood * h,
    )
    p, vis = solid_prims(cam, body_verts, body_faces, pose, obj.colour, light, ambient)
    prims += p
    for name, pts, _n in vis:
        if name in ("rear", "front"):
            prims += _car_end_details(cam, pts, name, obj, light)
        elif name in ("side0", "side1"):
            zs = -w / 2 - 0.01 if name == "side0" else w / 2 + 0.01
            for xw in wheel_x:
                for rad, col in ((r, tyre_colour), (0.55 * r, obj.colour2)):
                    t = np.linspace(0.0, 2.0 * math.pi, 16, endpoint=False)
                    loc = np.stack([xw + rad * np.cos(t), -r + rad * np.sin(t),
                                    np.full_like(t, zs)], axis=1)
                    prims.append(Prim("poly", cam.project(_to_camera(loc, *pose)), col))

    # Cabin with windows.
    cab_verts, cab_faces = _frustum(
        (cab_b[0] * l, cab_b[1] * l), (-hw_b * w, hw_b * w), (cab_t[0] * l, cab_t[1] * l),
        (-hw_t * w, hw_t * w), -hood * h, -h,
    )
    p, vis = solid_prims(cam, cab_verts, cab_faces, pose, obj.colour, light, ambient)
    prims += p
    glass_base = (38, 46, 58) if obj.variant % 2 == 0 else (60, 70, 84)
    for name, pts, n in vis:
        if name == "top":
            continue
        centre = pts.mean(axis=0)
        k = 0.80 if name in ("front", "rear") else 0.84
        win = centre + (pts - centre) * k
        glass = _lit(glass_base, n, light, 0.75)
        prims.append(Prim("poly", cam.project(win), glass))
        if name in ("side0", "side1") and obj.variant % 4 != 1:
            mid = np.stack([(win[0] + win[1]) / 2, (win[2] + win[3]) / 2])
            prims.append(Prim("line", cam.project(mid), obj.colour,
                              max(1.0, 0.08 * cam.fx / obj.z)))
    return prims


def _car_end_details(
    cam: Camera, pts: np.ndarray, name: str, obj: SceneObject, light: np.ndarray
) -> list[Prim]:
    """Lights, plate and grille on the visible rear or front face (``pts`` ``[4, 3]``)."""
    # Face corners: 0 bottom-a, 1 bottom-b, 2 top-b, 3 top-a (see _frustum's rear/front order).
    b0, b1, t1, t0 = pts[0], pts[1], pts[2], pts[3]

    def at(s: float, t: float) -> np.ndarray:  # s across (0..1), t up (0..1)
        bottom = b0 + (b1 - b0) * s
        top = t0 + (t1 - t0) * s
        return bottom + (top - bottom) * t

    def quad(s0: float, s1: float, t0_: float, t1_: float) -> np.ndarray:
        return cam.project(np.stack([at(s0, t0_), at(s1, t0_), at(s1, t1_), at(s0, t1_)]))

    out = []
    if name == "rear":
        lamp: Colour = (150, 20, 20) if obj.variant % 3 else (185, 35, 25)
        out.append(Prim("poly", quad(0.03, 0.22, 0.55, 0.85), lamp))
        out.append(Prim("poly", quad(0.78, 0.97, 0.55, 0.85), lamp))
        out.append(Prim("poly", quad(0.38, 0.62, 0.15, 0.38), (215, 215, 200)))
        out.append(Prim("poly", quad(0.0, 1.0, 0.0, 0.12), shade(obj.colour, 0.45)))
    else:
        out.append(Prim("poly", quad(0.04, 0.24, 0.55, 0.8), (225, 225, 205)))
        out.append(Prim("poly", quad(0.76, 0.96, 0.55, 0.8), (225, 225, 205)))
        out.append(Prim("poly", quad(0.3, 0.7, 0.25, 0.6), (30, 30, 32)))
    return out


def box_prims(
    cam: Camera, x: float, z: float, ry: float, size: tuple[float, float, float],
    colour: Colour, light: np.ndarray, ambient: float, lift: float = 0.0,
) -> list[Prim]:
    """A plain lit box ``size = (h, w, l)`` standing on the ground (bins, crates, kiosks)."""
    h, w, l = size
    verts, faces = _frustum((-l / 2, l / 2), (-w / 2, w / 2), (-l / 2, l / 2), (-w / 2, w / 2),
                            -lift, -lift - h)
    prims, _ = solid_prims(cam, verts, faces, (x, cam.height_m, z, ry), colour, light, ambient)
    return prims


# ---------------------------------------------------------------------------------------------
# People in 2-D (metres in a local frame: u to the facing side, up from the ground)


class _Figure:
    """Maps a figure's local metres (``u`` along the facing side, ``up``) to pixels."""

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


def _view(obj: SceneObject) -> tuple[float, float, float]:
    """``(facing sign, side-ness |cos alpha|, front-ness sin alpha)`` of an object."""
    alpha = obj.rotation_y - math.atan2(obj.x, obj.z)
    c, s = math.cos(alpha), math.sin(alpha)
    return (1.0 if c >= 0 else -1.0), abs(c), s


def pedestrian_prims(obj: SceneObject, cam: Camera) -> list[Prim]:
    """A walking person: legs in stride, torso, swinging arms, head (face or hair)."""
    h = obj.dimensions[0]
    facing, side, front = _view(obj)
    f = _Figure(cam, obj.x, obj.z, facing, side)
    k = h / 1.76
    phase = obj.phase
    stride = (0.06 + 0.30 * side) * math.sin(phase) * k
    spread = 0.08 * (1.0 - side) * k
    hip_y, sh_y = 0.52 * h, 0.81 * h
    shoulder_half = (0.20 * (1 - side) + 0.11 * side) * k
    hip_half = (0.13 * (1 - side) + 0.10 * side) * k
    shirt, pants, skin = obj.colour, obj.colour2, obj.skin
    hair = shade(obj.skin, 0.35) if obj.variant % 3 else (30, 24, 20)
    far, near = shade(pants, 0.75), pants
    legs = [(-stride - spread, far), (stride + spread, near)]
    arms = [(0.22 * math.sin(phase) * side * k, shade(shirt, 0.75)),
            (-0.22 * math.sin(phase) * side * k, shirt)]
    def shoe(x: float) -> None:  # sole on the ground (y = 0)
        toe = (0.05 + 0.10 * side) * k
        f.poly(np.array([[x - 0.05 * k, 0.0], [x + toe, 0.0], [x + toe, 0.04 * k],
                         [x - 0.05 * k, 0.07 * k]]), (25, 25, 28))

    # far limbs first
    f.limb((-spread * 0.6, hip_y), (legs[0][0], 0.05 * k), 0.15 * k, 0.10 * k, legs[0][1])
    shoe(legs[0][0])
    f.limb((-shoulder_half * (1 - side), sh_y), (arms[0][0] - shoulder_half * (1 - side),
                                                 0.47 * h), 0.09 * k, 0.08 * k, arms[0][1])
    if obj.variant % 5 == 1:  # backpack on the back
        bp = np.array([[-0.30, 0.55 * h], [-0.08, 0.55 * h], [-0.08, 0.80 * h], [-0.26, 0.78 * h]])
        bp[:, 0] *= k * side + 0.6 * (1 - side)
        f.poly(bp, shade(obj.colour2, 0.6))
    # near leg
    f.limb((spread * 0.6, hip_y), (legs[1][0], 0.05 * k), 0.15 * k, 0.10 * k, legs[1][1])
    shoe(legs[1][0])
    # torso (a coat reaches lower)
    bottom = 0.36 * h if obj.variant % 5 == 2 else hip_y - 0.03 * h
    f.poly(np.array([[-hip_half * (1.25 if obj.variant % 5 == 2 else 1.0), bottom],
                     [hip_half * (1.25 if obj.variant % 5 == 2 else 1.0), bottom],
                     [shoulder_half, sh_y], [shoulder_half * 0.7, sh_y + 0.035 * h],
                     [-shoulder_half * 0.7, sh_y + 0.035 * h], [-shoulder_half, sh_y]]), shirt)
    # near arm and hand
    hand = (arms[1][0] + shoulder_half * (1 - side), 0.47 * h)
    f.limb((shoulder_half * (1 - side), sh_y), hand, 0.09 * k, 0.08 * k, arms[1][1])
    f.ellipse(hand[0], hand[1] - 0.02, 0.04 * k, 0.045 * k, skin)
    if obj.variant % 5 == 3:  # bag
        f.poly(np.array([[hand[0] - 0.12 * k, 0.30 * h], [hand[0] + 0.12 * k, 0.30 * h],
                         [hand[0] + 0.10 * k, 0.45 * h], [hand[0] - 0.10 * k, 0.45 * h]]),
               shade(obj.colour2, 1.2))
    # head: neck, face or hair
    head_c = 0.065 * h
    f.limb((0.0, sh_y), (0.0, h - 2 * head_c), 0.07 * k, 0.07 * k, skin)
    f.ellipse(0.01 * side, h - head_c, 0.052 * h, head_c, skin if front > -0.3 else hair)
    f.poly(np.array([[-0.055 * h, h - head_c], [-0.045 * h, h - 0.3 * head_c],
                     [0.0, h], [0.045 * h, h - 0.3 * head_c], [0.055 * h, h - head_c],
                     [0.0, h - 0.7 * head_c]]), hair)
    return f.prims


def cyclist_prims(obj: SceneObject, cam: Camera) -> list[Prim]:
    """A rider on a bicycle seen from the side or at an angle: two wheels, frame, rider."""
    h, _, l = obj.dimensions
    facing, side, _ = _view(obj)
    squash = max(side, 0.3)
    f = _Figure(cam, obj.x, obj.z, facing * squash, squash)
    k = h / 1.74
    r = 0.34 * k
    hub = l / 2 - r
    tyre: Colour = (20, 20, 22)
    frame = obj.colour2
    rider, pants, skin = obj.colour, shade(obj.colour2, 0.5), obj.skin
    phase = obj.phase
    crank = (-0.04 * l, 0.30 * k)
    seat = (-0.16 * l, 0.93 * k)
    bar = (0.26 * l, 1.02 * k)
    hip = (-0.15 * l, 0.98 * k)
    shoulder = (0.04 * l, 1.40 * k)
    tube = 0.045 * k

    def pedal(ph: float) -> tuple[float, float]:
        return (crank[0] + 0.17 * k * math.cos(ph), crank[1] + 0.17 * k * math.sin(ph))

    def knee(p: tuple[float, float]) -> tuple[float, float]:
        mx, my = (hip[0] + p[0]) / 2, (hip[1] + p[1]) / 2
        dx, dy = p[0] - hip[0], p[1] - hip[1]
        d = math.hypot(dx, dy)
        off = math.sqrt(max(0.46**2 * k * k - (d / 2) ** 2, 0.0))
        nx, ny = dy / d, -dx / d  # perpendicular, pointing forward for a downward leg
        if nx < 0:
            nx, ny = -nx, -ny
        return (mx + nx * off, my + ny * off)

    def leg(ph: float, colour: Colour) -> None:
        p = pedal(ph)
        kn = knee(p)
        f.limb(hip, kn, 0.16 * k, 0.11 * k, colour)
        f.limb(kn, p, 0.11 * k, 0.08 * k, colour)

    def wheel(cu: float) -> None:
        (x1, y1), (x2, y2) = f.px(np.array([[cu - r, 2 * r], [cu + r, 0.0]]))
        box = np.array([[min(x1, x2), y1], [max(x1, x2), y2]])
        f.prims.append(Prim("ring", box, tyre, max(1.0, 0.07 * f.ky)))

    leg(phase + math.pi, shade(pants, 0.7))
    wheel(-hub)
    wheel(hub)
    f.line([(-hub, r), crank, seat, (-hub, r)], tube, frame)
    f.line([seat, (bar[0] - 0.04 * l, 0.85 * k), (hub, r)], tube, frame)
    f.line([crank, (bar[0] - 0.04 * l, 0.85 * k)], tube, frame)
    f.line([(bar[0] - 0.04 * l, 0.85 * k), bar], tube, shade(frame, 0.8))
    f.limb(hip, shoulder, 0.30 * k, 0.26 * k + 0.12 * (1 - side), rider)
    f.limb(shoulder, bar, 0.09 * k, 0.08 * k, shade(rider, 0.85))
    leg(phase, pants)
    head = (shoulder[0] + 0.08 * l, 1.74 * k - 0.11 * k)
    f.limb(shoulder, head, 0.08 * k, 0.08 * k, skin)
    f.ellipse(head[0], head[1], 0.10 * k, 0.11 * k, skin)
    if obj.variant % 2 == 0:  # helmet
        f.poly(np.array([[head[0] - 0.12 * k, head[1]], [head[0] - 0.07 * k, head[1] + 0.09 * k],
                         [head[0], 1.74 * k], [head[0] + 0.08 * k, head[1] + 0.08 * k],
                         [head[0] + 0.12 * k, head[1] + 0.01]]), obj.colour)
    return f.prims
