"""The background of a synthetic scene: sky and clouds, a far skyline, the ground with a road in
perspective (lanes, marks, patches, crosswalks, manholes), sidewalks, fences and building
façades with windows, and the low-frequency texture laid over it all.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from squeezedet.data.synth.shapes import Camera, Colour, ellipse_pts, mix, shade
from squeezedet.data.synth.style import BUILDING_COLOURS, CAR_COLOURS, Road, Style, loguniform, pick


def _ground_quad(cam: Camera, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    pts = np.array([[x0, cam.height_m, z0], [x1, cam.height_m, z0],
                    [x1, cam.height_m, z1], [x0, cam.height_m, z1]])
    return cam.project(pts)


def _wall_quad(cam: Camera, x: float, z0: float, z1: float, y0: float, y1: float) -> np.ndarray:
    """Quad in the vertical plane ``X = x`` between depths z0, z1 and heights y0, y1 (up, m)."""
    g = cam.height_m
    pts = np.array([[x, g - y0, z0], [x, g - y0, z1], [x, g - y1, z1], [x, g - y1, z0]])
    return cam.project(pts)


#: depths (m) between which the ground, the road and its long lines are drawn
_NEAR, _FAR = 1.0, 400.0


def draw_background(rng: np.random.Generator, cam: Camera, style: Style, road: Road) -> Image.Image:
    """The scene's background, far to near: sky, skyline, ground and road, roadsides."""
    w, h = cam.width, cam.height
    hor = int(math.ceil(cam.cy))
    arr = np.empty((h, w, 3), dtype=np.float32)
    t = np.linspace(0.0, 1.0, hor, dtype=np.float32)[:, None]
    arr[:hor] = (np.asarray(style.sky_top) * (1 - t) + np.asarray(style.sky_horizon) * t)[:, None]
    arr[hor:] = np.asarray(style.verge, dtype=np.float32)
    img = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(img)
    _clouds(rng, d, cam, style)
    _skyline(rng, d, cam, style)
    _ground(rng, d, cam, style, road)
    _lane_lines(rng, d, cam, style, road)
    _road_marks(rng, d, cam, style, road)
    for side, xb in ((-1, road.build_left), (1, road.build_right)):
        _roadside(rng, d, cam, style, side, xb)
    return img


def _clouds(rng: np.random.Generator, d: ImageDraw.ImageDraw, cam: Camera, style: Style) -> None:
    s = cam.height / 375.0  # pixels per KITTI pixel
    for _ in range(int(rng.integers(0, 6))):
        cu, cv = rng.uniform(0, cam.width), rng.uniform(0, cam.cy * 0.6)
        col = mix(style.sky_horizon, (245, 245, 245), rng.uniform(0.2, 0.8))
        for _ in range(4):
            d.polygon(ellipse_pts(cu + rng.normal(0, 30 * s), cv + rng.normal(0, 6 * s),
                                  rng.uniform(20, 60) * s, rng.uniform(6, 14) * s).ravel().tolist(),
                      fill=col)


def _skyline(rng: np.random.Generator, d: ImageDraw.ImageDraw, cam: Camera, style: Style) -> None:
    """Far blocks and hills hazed towards the horizon colour."""
    s = cam.height / 375.0  # pixels per KITTI pixel
    u = -rng.uniform(0, 40 * s)
    while u < cam.width:
        bw = rng.uniform(10, 70) * s
        bh = rng.uniform(3, 45) * s if rng.random() < 0.75 else rng.uniform(2, 10) * s
        col = mix(pick(rng, BUILDING_COLOURS + ((60, 90, 50),) * 4), style.sky_horizon,
                  rng.uniform(0.3, 0.7))
        d.rectangle([u, cam.cy - bh, u + bw, cam.cy + 1], fill=col)
        u += bw * rng.uniform(0.6, 1.2)


def _ground(rng: np.random.Generator, d: ImageDraw.ImageDraw, cam: Camera, style: Style,
            road: Road) -> None:
    """Sidewalks, curbs and the road with asphalt patches."""
    zn, zf = _NEAR, _FAR
    d.polygon(_ground_quad(cam, road.walk_left, road.walk_right, zn, zf).ravel().tolist(),
              fill=style.sidewalk)
    curb = shade(style.sidewalk, 0.75)
    d.polygon(_ground_quad(cam, road.x_left - 0.25, road.x_right + 0.25, zn, zf).ravel().tolist(),
              fill=curb)
    d.polygon(_ground_quad(cam, road.x_left, road.x_right, zn, zf).ravel().tolist(),
              fill=style.road)
    for _ in range(int(rng.integers(0, 5))):  # asphalt patches
        x0 = rng.uniform(road.x_left, road.x_right)
        z0 = loguniform(rng, 4, 60)
        q = _ground_quad(cam, x0, x0 + rng.uniform(0.5, 3), z0, z0 + rng.uniform(1, 8))
        d.polygon(q.ravel().tolist(), fill=shade(style.road, rng.uniform(0.7, 1.25)))


def _lane_lines(rng: np.random.Generator, d: ImageDraw.ImageDraw, cam: Camera, style: Style,
                road: Road) -> None:
    """Solid edge and centre lines (some edges left out), dashed lines between the lanes."""
    zn, zf = _NEAR, _FAR
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


def _road_marks(rng: np.random.Generator, d: ImageDraw.ImageDraw, cam: Camera, style: Style,
                road: Road) -> None:
    """The odd crosswalk and manholes."""
    if rng.random() < 0.2:  # crosswalk
        zc = rng.uniform(8, 35)
        x = road.bounds[0] + 0.3
        while x < road.bounds[-1] - 0.5:
            d.polygon(_ground_quad(cam, x, x + 0.5, zc, zc + 3.0).ravel().tolist(), fill=style.mark)
            x += 1.0
    for _ in range(int(rng.integers(0, 3))):  # manholes
        x0, z0 = rng.uniform(road.x_left, road.x_right), loguniform(rng, 5, 40)
        ang = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        pts = np.stack([x0 + 0.35 * np.cos(ang), np.full_like(ang, cam.height_m),
                        z0 + 0.35 * np.sin(ang)], axis=1)
        d.polygon(cam.project(pts).ravel().tolist(), fill=shade(style.road, 0.6))


def _roadside(rng: np.random.Generator, d: ImageDraw.ImageDraw, cam: Camera, style: Style,
              side: int, xb: float) -> None:
    """One side (``side`` -1 left, 1 right) beyond the sidewalk: maybe a fence, and unless the
    side stays open, a row of buildings along the façade plane ``X = xb``, far to near."""
    kind = rng.random()
    if kind < 0.2:  # fence
        col = pick(rng, [(90, 90, 95), (120, 90, 60), (170, 170, 170)] + list(CAR_COLOURS))
        xf = xb + side * 0.2
        for y in (0.5, 1.1):
            d.polygon(_wall_quad(cam, xf, 2.0, 200.0, y, y + 0.08).ravel().tolist(), fill=col)
        zp = 2.0
        while zp < 60:
            d.polygon(_wall_quad(cam, xf, zp, zp + 0.1, 0.0, 1.2).ravel().tolist(), fill=col)
            zp += 2.5
    if kind < 0.35:
        return
    z = 200.0
    segs = []
    while z > 2.0:
        length = rng.uniform(6, 30)
        segs.append((max(z - length, 1.5), z))
        z -= length + (rng.uniform(2, 12) if rng.random() < 0.25 else 0.0)
    for z0, z1 in segs:  # far to near
        _building(rng, d, cam, style, side, xb + side * rng.uniform(0, 1.5), z0, z1)


def _building(rng: np.random.Generator, d: ImageDraw.ImageDraw, cam: Camera, style: Style,
              side: int, x: float, z0: float, z1: float) -> None:
    """A building whose façade is the plane ``X = x`` from depth ``z0`` to ``z1``: its end wall
    facing the camera, the façade, maybe a shop front, and rows of windows."""
    height = rng.uniform(3.5, 20)
    col = pick(rng, BUILDING_COLOURS)
    normal = np.array([-side, 0.0, 0.0])
    lit = style.ambient + (1 - style.ambient) * max(0.0, float(normal @ style.light))
    front = np.array([0.0, 0.0, -1.0])
    lit_f = style.ambient + (1 - style.ambient) * max(0.0, float(front @ style.light))
    end = cam.project(np.array([
        [x, cam.height_m, z0], [x + side * 10, cam.height_m, z0],
        [x + side * 10, cam.height_m - height, z0], [x, cam.height_m - height, z0]]))
    d.polygon(end.ravel().tolist(), fill=shade(col, lit_f))
    d.polygon(_wall_quad(cam, x, z0, z1, 0, height).ravel().tolist(), fill=shade(col, lit))
    xw = x - side * 0.02
    glass = pick(rng, [(40, 50, 60), (70, 85, 100), (150, 170, 185), (30, 30, 30)], 8)
    floor_h = rng.uniform(2.8, 3.6)
    col_w = rng.uniform(2.2, 4.0)
    if rng.random() < 0.5:  # shop front
        d.polygon(_wall_quad(cam, xw, z0 + 0.5, z1 - 0.5, 0.3, 2.6).ravel().tolist(),
                  fill=shade(glass, 0.8))
    zs = np.arange(z0 + 0.8, z1 - 1.2, col_w)
    zs = zs[cam.fy * 1.3 / zs >= 1.5]
    ys = np.arange(1, int(height / floor_h)) * floor_h + 0.8
    if len(zs) and len(ys) and cam.fy * 1.3 / max(z0, 1.0) >= 2.0:
        _windows(d, cam, xw, zs, ys, glass)


def _windows(d: ImageDraw.ImageDraw, cam: Camera, xw: float, zs: np.ndarray, ys: np.ndarray,
             glass: Colour) -> None:
    """1.2 m x 1.4 m windows in the plane ``X = xw`` starting at depths ``zs`` and heights ``ys``."""
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


def texture(rng: np.random.Generator, cam: Camera, cell: int, amp: float) -> Image.Image:
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


def multiply(img: Image.Image, factor: Image.Image) -> Image.Image:
    """``img`` times an ``L`` image read as factors 0..1 (255 = unchanged)."""
    return ImageChops.multiply(img, Image.merge("RGB", (factor, factor, factor)))
