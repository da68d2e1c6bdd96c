"""One synthetic driving scene: background, clutter, objects, labels and lighting.

A scene is drawn by the painter's algorithm from a random but fully seeded description:

1. sky (gradient, clouds), a far skyline, the ground, a straight road in perspective with lanes,
   lane marks, crosswalks, patches and manholes, sidewalks, fences and building façades with
   windows along both sides, plus low-frequency texture;
2. ground shadows under the objects;
3. clutter (poles, lamps, traffic signs and lights, trees, bushes, bins, hydrants, bollards,
   crates and kiosks in car colours, billboards, cones, the odd parked bicycle) and the objects
   (cars, pedestrians, cyclists), all sorted by depth and drawn far to near; an owner map records
   which object (or clutter) is on top at each pixel;
4. cast shadows across the road, global lighting (gain, tint, gamma), blur and pixel noise.

Labels (see :func:`label_objects`): the box is the extent of the object's drawn shape clipped to
``[0, W-1] x [0, H-1]``; truncation is the fraction of the unclipped box's area outside that
rectangle; occlusion comes from the fraction of the object's in-image pixels covered by nearer
objects or clutter (< 0.1 → 0, < 0.5 → 1, otherwise 2); objects whose clipped box is shorter than
5.5 % of the image height become ``DontCare`` regions, and those of which less than 10 % is
visible are not labelled at all.
The 3-D fields are the object's own: ``(h, w, l)``, the bottom centre ``(x, camera height, z)`` on
the ground plane the scene is drawn with, ``rotation_y`` and ``alpha = ry - atan2(x, z)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.synth_shapes import (
    Camera,
    Colour,
    Prim,
    SceneObject,
    _Figure,
    box_prims,
    car_prims,
    cyclist_prims,
    draw_prims,
    ellipse_pts,
    mix,
    pedestrian_prims,
    prims_extent,
    shade,
)
from squeezedet.errors import SqueezeDetError

DONTCARE_HEIGHT = 0.055  # fraction of the image height under which an object is DontCare
MIN_VISIBLE = 0.10  # objects less visible than this are not labelled

CAR_COLOURS: tuple[Colour, ...] = (
    (228, 228, 226), (205, 207, 210), (168, 170, 176), (112, 114, 120), (34, 34, 38),
    (60, 62, 66), (158, 26, 28), (100, 22, 28), (30, 60, 140), (24, 30, 70), (32, 82, 52),
    (190, 170, 130), (212, 180, 42), (200, 104, 34), (120, 160, 200), (92, 62, 42),
)
CLOTH_COLOURS: tuple[Colour, ...] = (
    (30, 30, 38), (40, 44, 80), (120, 120, 126), (225, 225, 220), (170, 30, 40), (40, 80, 170),
    (40, 110, 60), (215, 190, 60), (190, 170, 130), (100, 70, 50), (210, 120, 150),
    (220, 120, 40), (60, 80, 120), (80, 40, 90), (150, 160, 60), (20, 20, 22),
)
SKIN_COLOURS: tuple[Colour, ...] = (
    (236, 200, 170), (215, 170, 135), (190, 140, 105), (150, 105, 75), (105, 70, 50),
)
BUILDING_COLOURS: tuple[Colour, ...] = (
    (200, 185, 160), (160, 80, 60), (140, 140, 140), (225, 220, 205), (180, 160, 120),
    (120, 100, 90), (170, 190, 200), (210, 200, 170), (90, 90, 100), *CAR_COLOURS[::3],
)
SHARED_COLOURS: tuple[Colour, ...] = CAR_COLOURS + CLOTH_COLOURS


def _pick(rng: np.random.Generator, colours: Sequence[Colour], jitter: float = 12.0) -> Colour:
    c = colours[int(rng.integers(len(colours)))]
    j = rng.normal(0.0, jitter, 3)
    return (int(min(255, max(0, c[0] + j[0]))), int(min(255, max(0, c[1] + j[1]))),
            int(min(255, max(0, c[2] + j[2]))))


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def wrap_angle(a: float) -> float:
    """``a`` wrapped to ``[-pi, pi)``."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


@dataclass
class _Style:
    sky_top: Colour
    sky_horizon: Colour
    verge: Colour
    sidewalk: Colour
    road: Colour
    mark: Colour
    light: np.ndarray
    ambient: float
    gain: float
    tint: np.ndarray
    gamma: float
    noise: float
    blur: float


@dataclass
class _Road:
    bounds: list[float]  # lane boundaries, left to right (metres)
    n_opposite: int  # the leftmost lanes with oncoming traffic
    x_left: float  # road edges including parking strips
    x_right: float
    walk_left: float  # outer edges of the sidewalks
    walk_right: float
    build_left: float  # façade planes
    build_right: float


@dataclass
class _Item:
    depth: float
    prims: list[Prim]
    obj: SceneObject | None = None


def _sample_style(rng: np.random.Generator) -> _Style:
    weather = rng.choice(4, p=[0.45, 0.3, 0.15, 0.1])
    sky_top, sky_hor = [
        ((70, 120, 200), (180, 205, 230)),
        ((150, 158, 168), (200, 202, 205)),
        ((110, 150, 200), (230, 215, 190)),
        ((80, 80, 120), (215, 150, 110)),
    ][weather]
    elev = rng.uniform(0.25, 1.1)
    az = rng.uniform(-math.pi, math.pi)
    light = np.array(
        [math.sin(az) * math.cos(elev), -math.sin(elev), math.cos(az) * math.cos(elev)]
    )
    grey = int(rng.uniform(55, 125))
    return _Style(
        sky_top=_pick(rng, [sky_top], 10),
        sky_horizon=_pick(rng, [sky_hor], 10),
        verge=_pick(rng, [(80, 115, 50), (105, 125, 60), (130, 115, 90), (150, 150, 145)], 10),
        sidewalk=_pick(rng, [(150, 150, 150), (180, 175, 165), (135, 125, 115)], 10),
        road=_pick(rng, [(grey, grey, grey + 4), (grey + 5, grey, grey - 5)], 4),
        mark=_pick(rng, [(225, 225, 220), (175, 175, 170)], 6),
        light=light,
        ambient=float(rng.uniform(0.45, 0.75)) if weather != 1 else float(rng.uniform(0.7, 0.9)),
        gain=float(rng.uniform(0.6, 1.25)),
        tint=rng.uniform(0.9, 1.1, 3),
        gamma=float(rng.uniform(0.8, 1.25)),
        noise=float(rng.uniform(1.0, 4.5)),
        blur=float(rng.choice([0.0, 0.0, 0.4, 0.7])),
    )


def _sample_road(rng: np.random.Generator) -> _Road:
    n = int(rng.choice([1, 2, 2, 3, 4]))
    widths = rng.uniform(3.0, 3.8, n)
    two_way = n >= 2 and rng.random() < 0.7
    n_opp = n // 2 if two_way else 0
    ego = int(rng.integers(n_opp, n))
    bounds = np.concatenate([[0.0], np.cumsum(widths)])
    bounds = bounds - (bounds[ego] + widths[ego] / 2 + rng.uniform(-0.4, 0.4))
    park_l = 2.3 if rng.random() < 0.5 else 0.0
    park_r = 2.3 if rng.random() < 0.6 else 0.0
    x_left = float(bounds[0] - park_l)
    x_right = float(bounds[-1] + park_r)
    walk_left = x_left - rng.uniform(1.5, 4.0)
    walk_right = x_right + rng.uniform(1.5, 4.0)
    return _Road(
        bounds=[float(b) for b in bounds],
        n_opposite=n_opp,
        x_left=x_left,
        x_right=x_right,
        walk_left=float(walk_left),
        walk_right=float(walk_right),
        build_left=float(walk_left - rng.uniform(0.0, 6.0)),
        build_right=float(walk_right + rng.uniform(0.0, 6.0)),
    )


# ---------------------------------------------------------------------------------------------
# Background


def _ground_quad(cam: Camera, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    pts = np.array([[x0, cam.height_m, z0], [x1, cam.height_m, z0],
                    [x1, cam.height_m, z1], [x0, cam.height_m, z1]])
    return cam.project(pts)


def _wall_quad(cam: Camera, x: float, z0: float, z1: float, y0: float, y1: float) -> np.ndarray:
    """Quad in the vertical plane ``X = x`` between depths z0, z1 and heights y0, y1 (up, m)."""
    g = cam.height_m
    pts = np.array([[x, g - y0, z0], [x, g - y0, z1], [x, g - y1, z1], [x, g - y1, z0]])
    return cam.project(pts)


def _background(rng: np.random.Generator, cam: Camera, style: _Style, road: _Road) -> Image.Image:
    w, h = cam.width, cam.height
    hor = int(math.ceil(cam.cy))
    arr = np.empty((h, w, 3), dtype=np.float32)
    t = np.linspace(0.0, 1.0, hor, dtype=np.float32)[:, None]
    arr[:hor] = (np.asarray(style.sky_top) * (1 - t) + np.asarray(style.sky_horizon) * t)[:, None]
    arr[hor:] = np.asarray(style.verge, dtype=np.float32)
    img = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(img)
    s = h / 375.0  # pixels per KITTI pixel

    for _ in range(int(rng.integers(0, 6))):  # clouds
        cu, cv = rng.uniform(0, w), rng.uniform(0, cam.cy * 0.6)
        col = mix(style.sky_horizon, (245, 245, 245), rng.uniform(0.2, 0.8))
        for _ in range(4):
            d.polygon(ellipse_pts(cu + rng.normal(0, 30 * s), cv + rng.normal(0, 6 * s),
                                  rng.uniform(20, 60) * s, rng.uniform(6, 14) * s).ravel().tolist(),
                      fill=col)
    # far skyline: blocks and hills hazed towards the horizon colour
    u = -rng.uniform(0, 40 * s)
    while u < w:
        bw = rng.uniform(10, 70) * s
        bh = rng.uniform(3, 45) * s if rng.random() < 0.75 else rng.uniform(2, 10) * s
        col = mix(_pick(rng, BUILDING_COLOURS + ((60, 90, 50),) * 4), style.sky_horizon,
                  rng.uniform(0.3, 0.7))
        d.rectangle([u, cam.cy - bh, u + bw, cam.cy + 1], fill=col)
        u += bw * rng.uniform(0.6, 1.2)

    # ground: sidewalks, road, marks
    zn, zf = 1.0, 400.0
    d.polygon(_ground_quad(cam, road.walk_left, road.walk_right, zn, zf).ravel().tolist(),
              fill=style.sidewalk)
    curb = shade(style.sidewalk, 0.75)
    d.polygon(_ground_quad(cam, road.x_left - 0.25, road.x_right + 0.25, zn, zf).ravel().tolist(),
              fill=curb)
    d.polygon(_ground_quad(cam, road.x_left, road.x_right, zn, zf).ravel().tolist(),
              fill=style.road)
    for _ in range(int(rng.integers(0, 5))):  # asphalt patches
        x0 = rng.uniform(road.x_left, road.x_right)
        z0 = _loguniform(rng, 4, 60)
        q = _ground_quad(cam, x0, x0 + rng.uniform(0.5, 3), z0, z0 + rng.uniform(1, 8))
        d.polygon(q.ravel().tolist(), fill=shade(style.road, rng.uniform(0.7, 1.25)))
    for i, b in enumerate(road.bounds):
        edge = i in (0, len(road.bounds) - 1)
        centre = road.n_opposite > 0 and i == road.n_opposite
        if edge or centre:
            col = (200, 170, 40) if centre and rng.random() < 0.5 else style.mark
            if edge and rng.random() < 0.3:
                continue
            d.polygon(_ground_quad(cam, b - 0.08, b + 0.08, zn, zf).ravel().tolist(), fill=col)
        else:
            period = rng.uniform(8, 14)
            z = rng.uniform(0, period)
            while z < 120:
                q = _ground_quad(cam, b - 0.07, b + 0.07, max(z, zn), z + period * 0.35)
                d.polygon(q.ravel().tolist(), fill=style.mark)
                z += period
    if rng.random() < 0.2:  # crosswalk
        zc = rng.uniform(8, 35)
        x = road.bounds[0] + 0.3
        while x < road.bounds[-1] - 0.5:
            d.polygon(_ground_quad(cam, x, x + 0.5, zc, zc + 3.0).ravel().tolist(), fill=style.mark)
            x += 1.0
    for _ in range(int(rng.integers(0, 3))):  # manholes
        x0, z0 = rng.uniform(road.x_left, road.x_right), _loguniform(rng, 5, 40)
        ang = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        pts = np.stack([x0 + 0.35 * np.cos(ang), np.full_like(ang, cam.height_m),
                        z0 + 0.35 * np.sin(ang)], axis=1)
        d.polygon(cam.project(pts).ravel().tolist(), fill=shade(style.road, 0.6))

    # façades, fences, hedges along both sides, far to near
    for side, xb in ((-1, road.build_left), (1, road.build_right)):
        kind = rng.random()
        normal = np.array([-side, 0.0, 0.0])
        if kind < 0.2:  # fence
            col = _pick(rng, [(90, 90, 95), (120, 90, 60), (170, 170, 170)] + list(CAR_COLOURS))
            xf = xb + side * 0.2
            for y in (0.5, 1.1):
                d.polygon(_wall_quad(cam, xf, 2.0, 200.0, y, y + 0.08).ravel().tolist(), fill=col)
            zp = 2.0
            while zp < 60:
                d.polygon(_wall_quad(cam, xf, zp, zp + 0.1, 0.0, 1.2).ravel().tolist(), fill=col)
                zp += 2.5
        if kind < 0.35:
            continue
        z = 200.0
        segs = []
        while z > 2.0:
            length = rng.uniform(6, 30)
            segs.append((max(z - length, 1.5), z))
            z -= length + (rng.uniform(2, 12) if rng.random() < 0.25 else 0.0)
        for z0, z1 in segs:  # far to near
            x = xb + side * rng.uniform(0, 1.5)
            height = rng.uniform(3.5, 20)
            col = _pick(rng, BUILDING_COLOURS)
            lit = style.ambient + (1 - style.ambient) * max(0.0, float(normal @ style.light))
            front = np.array([0.0, 0.0, -1.0])
            lit_f = style.ambient + (1 - style.ambient) * max(0.0, float(front @ style.light))
            # end wall facing the camera, then the façade
            end = cam.project(np.array([
                [x, cam.height_m, z0], [x + side * 10, cam.height_m, z0],
                [x + side * 10, cam.height_m - height, z0], [x, cam.height_m - height, z0]]))
            d.polygon(end.ravel().tolist(), fill=shade(col, lit_f))
            d.polygon(_wall_quad(cam, x, z0, z1, 0, height).ravel().tolist(), fill=shade(col, lit))
            xw = x - side * 0.02
            glass = _pick(rng, [(40, 50, 60), (70, 85, 100), (150, 170, 185), (30, 30, 30)], 8)
            floor_h = rng.uniform(2.8, 3.6)
            col_w = rng.uniform(2.2, 4.0)
            if rng.random() < 0.5:  # shop front
                d.polygon(_wall_quad(cam, xw, z0 + 0.5, z1 - 0.5, 0.3, 2.6).ravel().tolist(),
                          fill=shade(glass, 0.8))
            zs = np.arange(z0 + 0.8, z1 - 1.2, col_w)
            zs = zs[cam.fy * 1.3 / zs >= 1.5]
            ys = np.arange(1, int(height / floor_h)) * floor_h + 0.8
            if len(zs) and len(ys) and cam.fy * 1.3 / max(z0, 1.0) >= 2.0:
                zz, yy = (a.ravel() for a in np.meshgrid(zs, ys))
                n = len(zz)
                g = cam.height_m
                corners = np.stack([
                    np.stack([np.full(n, xw), g - yy, zz], axis=1),
                    np.stack([np.full(n, xw), g - yy, zz + 1.2], axis=1),
                    np.stack([np.full(n, xw), g - yy - 1.4, zz + 1.2], axis=1),
                    np.stack([np.full(n, xw), g - yy - 1.4, zz], axis=1),
                ], axis=1)
                quads = cam.project(corners.reshape(-1, 3)).reshape(n, 8)
                for quad in quads.tolist():
                    d.polygon(quad, fill=glass)
    return img


def _texture(rng: np.random.Generator, cam: Camera, cell: int, amp: float) -> Image.Image:
    """Smooth multiplicative noise as an ``L`` image: 255 means x1, the mean is x(1 - amp/2).

    Its amplitude is ``amp`` below the horizon and ``amp / 3`` in the sky.
    """
    w, h = cam.width, cam.height
    gh, gw = h // cell + 2, w // cell + 2
    small = rng.random((gh, gw)).astype(np.float32)
    rows = (np.arange(gh) * cell < cam.cy)[:, None]
    a = np.where(rows, amp / 3.0, amp)
    small = 255.0 * (1.0 - a * small)
    img = Image.fromarray(small.astype(np.uint8))
    return img.resize((w, h), Image.Resampling.BILINEAR)


def _multiply(img: Image.Image, factor: Image.Image) -> Image.Image:
    """``img`` times an ``L`` image read as factors 0..1 (255 = unchanged)."""
    return ImageChops.multiply(img, Image.merge("RGB", (factor, factor, factor)))


# ---------------------------------------------------------------------------------------------
# Clutter


def _clutter(rng: np.random.Generator, cam: Camera, style: _Style, road: _Road) -> list[_Item]:
    items: list[_Item] = []
    n = int(rng.integers(4, 16))
    for _ in range(n):
        side = -1 if rng.random() < 0.5 else 1
        z = _loguniform(rng, 3.0, 70.0)
        lo, hi = (road.x_right + 0.3, road.walk_right) if side > 0 else (road.walk_left,
                                                                          road.x_left - 0.3)
        x = float(rng.uniform(lo, hi))
        if abs(cam.cx + cam.fx * x / z - cam.width / 2) > cam.width * 0.75:
            continue
        kind = rng.choice(["pole", "sign", "lamp", "globe", "tlight", "tree", "bush", "bin",
                           "hydrant", "bollards", "crate", "billboard", "cone", "bike"],
                          p=[.08, .13, .08, .06, .05, .13, .08, .09, .05, .05, .09, .05, .04, .02])
        if kind == "cone":
            x = float(rng.uniform(road.x_left, road.x_right))
        items.append(_Item(z, _clutter_prims(rng, str(kind), cam, x, z, side, style)))
    return items


def _clutter_prims(
    rng: np.random.Generator, kind: str, cam: Camera, x: float, z: float, side: int, style: _Style
) -> list[Prim]:
    f = _Figure(cam, x, z, 1.0, 1.0)
    grey = _pick(rng, [(90, 92, 96), (60, 70, 60), (150, 150, 150), (40, 40, 40)], 8)
    if kind in ("pole", "sign", "lamp", "globe", "tlight"):
        hp = {"pole": rng.uniform(3, 9), "sign": rng.uniform(2.2, 3.2), "lamp": rng.uniform(5, 9),
              "globe": rng.uniform(2.0, 3.5), "tlight": rng.uniform(3, 5)}[kind]
        wp = rng.uniform(0.08, 0.2)
        f.poly(np.array([[-wp, 0], [wp, 0], [wp, hp], [-wp, hp]]) * [0.5, 1], grey)
        if kind == "sign":
            shape = rng.integers(4)
            sz = rng.uniform(0.5, 0.9)
            c = (0.0, hp)
            col = _pick(rng, [(190, 30, 30), (30, 70, 170), (30, 120, 60), (230, 190, 40)], 10)
            if shape == 0:
                f.ellipse(c[0], c[1], sz / 2, sz / 2, col)
                f.ellipse(c[0], c[1], sz / 3, sz / 3, (235, 235, 235))
            elif shape == 1:
                f.poly(np.array([[-sz / 2, hp - sz / 2], [sz / 2, hp - sz / 2],
                                 [sz / 2, hp + sz / 2], [-sz / 2, hp + sz / 2]]), col)
            elif shape == 2:
                f.poly(np.array([[-sz / 2, hp - sz / 2.5], [sz / 2, hp - sz / 2.5],
                                 [0, hp + sz / 2]]), col)
            else:
                f.poly(ellipse_pts(0, hp, sz / 2, sz / 2, 8), col)
        elif kind == "lamp":
            arm = -side * rng.uniform(1.0, 2.5)
            f.line([(0, hp), (arm, hp + 0.3)], 0.1, grey)
            f.ellipse(arm, hp + 0.2, 0.35, 0.12, (220, 220, 200))
        elif kind == "globe":
            f.ellipse(0, hp + 0.2, 0.22, 0.22, _pick(rng, [(230, 230, 220), (200, 200, 120)]))
        elif kind == "tlight":
            f.poly(np.array([[-0.2, hp - 0.9], [0.2, hp - 0.9], [0.2, hp + 0.1],
                             [-0.2, hp + 0.1]]), (25, 25, 25))
            for i, col in enumerate(((200, 30, 30), (210, 170, 30), (30, 180, 60))):
                on = rng.random() < 0.4
                f.ellipse(0, hp - 0.1 - 0.3 * i, 0.11, 0.11, col if on else shade(col, 0.35))
    elif kind in ("tree", "bush"):
        greens = [(40, 90, 40), (60, 110, 45), (30, 70, 35), (90, 120, 50), (150, 90, 40),
                  (170, 60, 40)]
        base = _pick(rng, greens, 15)
        if kind == "tree":
            th, tw = rng.uniform(1.8, 3.5), rng.uniform(0.25, 0.5)
            f.poly(np.array([[-tw / 2, 0], [tw / 2, 0], [tw / 3, th + 0.5], [-tw / 3, th + 0.5]]),
                   _pick(rng, [(90, 65, 45), (70, 55, 45)]))
            rc = rng.uniform(1.2, 2.8)
            cy = th + rc * 0.8
        else:
            rc = rng.uniform(0.5, 1.2)
            cy = rc * 0.6
        for _ in range(int(rng.integers(3, 7))):
            f.ellipse(rng.normal(0, rc * 0.4), cy + rng.normal(0, rc * 0.3),
                      rc * rng.uniform(0.5, 0.9), rc * rng.uniform(0.4, 0.8),
                      shade(base, rng.uniform(0.7, 1.3)))
    elif kind in ("bin", "crate"):
        col = _pick(rng, SHARED_COLOURS + ((40, 100, 50), (90, 90, 90)))
        if kind == "bin":
            size = (rng.uniform(0.8, 1.3), rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.9))
        else:
            size = (rng.uniform(0.9, 2.2), rng.uniform(0.8, 2.0), rng.uniform(1.0, 3.0))
        return box_prims(cam, x, z, rng.uniform(-math.pi, math.pi), size, col, style.light,
                         style.ambient)
    elif kind == "hydrant":
        col = _pick(rng, [(190, 30, 30), (220, 190, 40), (60, 90, 160)])
        f.poly(np.array([[-0.12, 0], [0.12, 0], [0.12, 0.6], [-0.12, 0.6]]), col)
        f.ellipse(0, 0.62, 0.14, 0.1, shade(col, 0.8))
        f.poly(np.array([[-0.22, 0.35], [0.22, 0.35], [0.22, 0.45], [-0.22, 0.45]]), col)
    elif kind == "bollards":
        col = _pick(rng, SHARED_COLOURS)
        for i in range(int(rng.integers(2, 6))):
            xo = i * 1.2
            f.poly(np.array([[xo - 0.08, 0], [xo + 0.08, 0], [xo + 0.08, 0.9], [xo - 0.08, 0.9]]),
                   col)
            f.ellipse(xo, 0.9, 0.09, 0.06, shade(col, 1.2))
    elif kind == "billboard":
        bw, bh, lift = rng.uniform(1.5, 3.5), rng.uniform(1.0, 2.2), rng.uniform(0.4, 2.2)
        f.line([(-bw / 3, 0), (-bw / 3, lift)], 0.1, grey)
        f.line([(bw / 3, 0), (bw / 3, lift)], 0.1, grey)
        f.poly(np.array([[-bw / 2, lift], [bw / 2, lift], [bw / 2, lift + bh],
                         [-bw / 2, lift + bh]]), _pick(rng, SHARED_COLOURS))
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(-bw / 3, bw / 3), lift + rng.uniform(0.2, 0.8) * bh
            if rng.random() < 0.5:
                f.ellipse(cx, cy, bh * 0.15, bh * 0.15, _pick(rng, SHARED_COLOURS))
            else:
                f.poly(np.array([[cx - bw / 6, cy - bh / 6], [cx + bw / 6, cy - bh / 6],
                                 [cx + bw / 6, cy + bh / 6], [cx - bw / 6, cy + bh / 6]]),
                       _pick(rng, SHARED_COLOURS))
    elif kind == "cone":
        f.poly(np.array([[-0.18, 0], [0.18, 0], [0.04, 0.7], [-0.04, 0.7]]), (230, 110, 30))
        f.poly(np.array([[-0.11, 0.3], [0.11, 0.3], [0.08, 0.42], [-0.08, 0.42]]),
               (235, 235, 235))
    else:  # parked bicycle without a rider (not a Cyclist)
        fb = _Figure(cam, x, z, rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0), 1.0)
        r = 0.34
        col = _pick(rng, SHARED_COLOURS)
        for cu in (-0.54, 0.54):
            (x1, y1), (x2, y2) = fb.px(np.array([[cu - r, 2 * r], [cu + r, 0.0]]))
            fb.prims.append(Prim("ring", np.array([[min(x1, x2), y1], [max(x1, x2), y2]]),
                                 (20, 20, 22), max(1.0, 0.07 * fb.ky)))
        fb.line([(-0.54, r), (-0.05, 0.3), (-0.15, 0.9), (-0.54, r)], 0.045, col)
        fb.line([(-0.15, 0.9), (0.40, 0.85), (0.54, r)], 0.045, col)
        fb.line([(-0.05, 0.3), (0.40, 0.85), (0.45, 1.0)], 0.045, col)
        return fb.prims
    return f.prims


# ---------------------------------------------------------------------------------------------
# Objects


def _footprint(o: SceneObject) -> np.ndarray:
    """Ground rectangle ``[4, 2]`` (x, z) of an object, with a small margin."""
    _, w, l = o.dimensions
    c, s = math.cos(o.rotation_y), math.sin(o.rotation_y)
    pts = np.array([[-l / 2, -w / 2], [l / 2, -w / 2], [l / 2, w / 2], [-l / 2, w / 2]]) * 1.1
    return np.stack([o.x + c * pts[:, 0] + s * pts[:, 1], o.z - s * pts[:, 0] + c * pts[:, 1]],
                    axis=1)


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
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
    r = _loguniform(rng, 0.03, 0.08) if rng.random() < 0.12 else _loguniform(rng, 0.09, 0.55)
    return cam.fy / cam.height * h / r


def _sample_object(rng: np.random.Generator, kind: str, cam: Camera, road: _Road) -> SceneObject:
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
                           colour=_pick(rng, CAR_COLOURS),
                           colour2=_pick(rng, [(170, 170, 175), (60, 60, 64), (200, 200, 205)]),
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
                           colour=_pick(rng, SHARED_COLOURS),
                           colour2=_pick(rng, CLOTH_COLOURS), skin=_pick(rng, SKIN_COLOURS, 6),
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
                       colour=_pick(rng, SHARED_COLOURS), colour2=_pick(rng, SHARED_COLOURS),
                       skin=_pick(rng, SKIN_COLOURS, 6), variant=int(rng.integers(4)),
                       phase=float(rng.uniform(0, 2 * math.pi)))


def _sample_objects(rng: np.random.Generator, cam: Camera, road: _Road,
                    scene: SceneMix = STANDARD_MIX) -> list[SceneObject]:
    d = scene.density
    kinds = (["Car"] * int(rng.integers(1, 7) * d)
             + ["Pedestrian"] * min(int(rng.poisson(1.7 * d)), int(6 * d))
             + ["Cyclist"] * min(int(rng.poisson(1.3 * d)), int(4 * d)))
    placed: list[SceneObject] = []
    feet: list[np.ndarray] = []
    for kind in kinds:
        for _ in range(10):
            o = _sample_object(rng, kind, cam, road)
            fp = _footprint(o)
            if fp[:, 1].min() < 2.0 or any(_overlap(fp, g) for g in feet):
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


def occlusion_level(hidden_fraction: float) -> int:
    """KITTI occlusion level of an object with ``hidden_fraction`` of its pixels covered."""
    if hidden_fraction < 0.1:
        return 0
    if hidden_fraction < 0.5:
        return 1
    return 2


def truncation(box: Sequence[float], width: int, height: int) -> float:
    """Fraction of the area of ``box`` (x1, y1, x2, y2) outside ``[0, W-1] x [0, H-1]``."""
    x1, y1, x2, y2 = box
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    if area <= 0:
        return 1.0
    iw = max(0.0, min(x2, width - 1.0) - max(x1, 0.0))
    ih = max(0.0, min(y2, height - 1.0) - max(y1, 0.0))
    return float(min(1.0, max(0.0, 1.0 - iw * ih / area)))


def label_objects(img: Image.Image, items: Sequence[_Item], cam: Camera) -> list[KittiObject]:
    """Draw ``items`` far to near on ``img`` (in place) and return the KITTI labels."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    owner = Image.new("L", (w, h), 0)
    odraw = ImageDraw.Draw(owner)
    records = []
    next_id = 1
    for it in sorted(items, key=lambda i: -i.depth):
        draw_prims(draw, it.prims)
        if it.obj is None or next_id > 254:
            draw_prims(odraw, it.prims, fill=255)
            continue
        box = prims_extent(it.prims)
        cx1, cy1 = max(box[0], 0.0), max(box[1], 0.0)
        cx2, cy2 = min(box[2], w - 1.0), min(box[3], h - 1.0)
        if cx2 - cx1 < 1.0 or cy2 - cy1 < 1.0:
            draw_prims(odraw, it.prims, fill=255)
            continue
        ix1, iy1 = int(math.floor(cx1)), int(math.floor(cy1))
        ix2, iy2 = min(int(math.ceil(cx2)) + 1, w), min(int(math.ceil(cy2)) + 1, h)
        mask = Image.new("L", (ix2 - ix1, iy2 - iy1), 0)
        draw_prims(ImageDraw.Draw(mask), it.prims, offset=(ix1, iy1), fill=255)
        draw_prims(odraw, it.prims, fill=next_id)
        records.append((next_id, it.obj, box, (cx1, cy1, cx2, cy2), (ix1, iy1, ix2, iy2),
                        np.asarray(mask) > 0))
        next_id += 1
    own = np.asarray(owner)
    labels, dontcare = [], []
    for oid, obj, box, clipped, (ix1, iy1, ix2, iy2), pix in reversed(records):
        n_in = int(pix.sum())
        n_vis = int((own[iy1:iy2, ix1:ix2][pix] == oid).sum())
        visible = n_vis / n_in if n_in else 0.0
        if visible < MIN_VISIBLE:  # practically hidden: not labelled at all
            continue
        if clipped[3] - clipped[1] < DONTCARE_HEIGHT * h:
            dontcare.append(KittiObject("DontCare", clipped, truncated=-1.0, occluded=-1))
            continue
        ry = wrap_angle(obj.rotation_y)
        labels.append(KittiObject(
            type=obj.type,
            box=clipped,
            truncated=truncation(box, w, h),
            occluded=occlusion_level(1.0 - visible),
            alpha=wrap_angle(ry - math.atan2(obj.x, obj.z)),
            dimensions=obj.dimensions,
            location=(obj.x, cam.height_m, obj.z),
            rotation_y=ry,
        ))
    return labels + dontcare



def render_objects(
    objects: Sequence[SceneObject], size: tuple[int, int] = (1242, 375),
    background: Colour = (128, 128, 128),
) -> tuple[Image.Image, list[KittiObject]]:
    """Draw given objects on a plain background (no clutter, lighting or noise) and label them.

    Useful to check labels against hand-made placements; :func:`render_scene` makes full scenes.
    """
    cam = Camera.for_size(*size)
    img = Image.new("RGB", size, background)
    items = [_Item(o.z, object_prims(o, cam), o) for o in objects]
    return img, label_objects(img, items, cam)


def _as_rng(rng_or_seed: np.random.Generator | int | Sequence[int]) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def render_scene(
    rng_or_seed: np.random.Generator | int | Sequence[int], size: tuple[int, int] = (1242, 375),
    scene: SceneMix = STANDARD_MIX,
) -> tuple[Image.Image, list[KittiObject]]:
    """Draw one random driving scene of ``size = (W, H)`` pixels and return it with its labels.

    The scene is a pure function of the seed (or of the generator's state), the size and the
    object mix ``scene`` (:class:`SceneMix`).
    """
    rng = _as_rng(rng_or_seed)
    w, h = size
    cam = Camera.for_size(w, h)
    style = _sample_style(rng)
    road = _sample_road(rng)
    img = _background(rng, cam, style, road)
    factor = _texture(rng, cam, max(4, w // 60), 0.25)

    objects = _sample_objects(rng, cam, road, scene)
    items = _clutter(rng, cam, style, road)
    shadow = Image.new("L", (w, h), 255)
    sdraw = ImageDraw.Draw(shadow)
    for o in objects:
        items.append(_Item(o.z, object_prims(o, cam, style.light, style.ambient), o))
        fp = _footprint(o)
        pts = np.stack([fp[:, 0], np.full(4, cam.height_m), np.maximum(fp[:, 1], 0.5)], axis=1)
        sdraw.polygon(cam.project(pts).ravel().tolist(), fill=int(255 * rng.uniform(0.4, 0.65)))
    img = _multiply(img, ImageChops.multiply(factor, shadow))
    labels = label_objects(img, items, cam)

    # cast shadows across the road, blur, lighting, noise
    n_shadows = int(rng.integers(0, 4))
    if n_shadows:
        shadow = Image.new("L", (w, h), 255)
        sdraw = ImageDraw.Draw(shadow)
        for _ in range(n_shadows):
            z0 = _loguniform(rng, 4, 50)
            dz = rng.uniform(1, 6)
            x0 = rng.uniform(road.walk_left, road.x_right)
            x1 = x0 + rng.uniform(3, 15)
            n = 8
            xs = np.concatenate([np.linspace(x0, x1, n), np.linspace(x1, x0, n)])
            zs = np.concatenate([z0 + rng.uniform(-0.5, 0.5, n),
                                 z0 + dz + rng.uniform(-0.5, 0.5, n)])
            pts = np.stack([xs, np.full(2 * n, cam.height_m), zs], axis=1)
            sdraw.polygon(cam.project(pts).ravel().tolist(),
                          fill=int(255 * rng.uniform(0.55, 0.8)))
        img = _multiply(img, shadow)
    if style.blur > 0:  # a slight defocus: 3x3 kernel, stronger for larger images
        b = min(1.0, style.blur * h / 375.0)
        img = img.filter(ImageFilter.Kernel((3, 3), [b, 2 * b, b, 2 * b, 4.0, 2 * b, b, 2 * b, b]))
    v = np.arange(256, dtype=np.float64) / 255.0
    table = np.concatenate([
        255.0 * np.clip(v * style.gain * t / 0.88, 0.0, 1.0) ** style.gamma for t in style.tint
    ])
    img = img.point(np.round(table).astype(np.int64).tolist())
    # sensor noise: grain at half resolution, grey or coloured
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    chans = 3 if style.noise > 3.0 else 1
    coarse = rng.standard_normal((h2, w2, chans), dtype=np.float32) * style.noise + 128.5
    coarse = np.clip(coarse, 0, 255).astype(np.uint8)
    grain = Image.fromarray(coarse[:, :, 0] if chans == 1 else coarse)
    grain = grain.resize((w, h), Image.Resampling.NEAREST)
    if chans == 1:
        grain = Image.merge("RGB", (grain, grain, grain))
    return ImageChops.add(img, grain, 1.0, -128), labels
