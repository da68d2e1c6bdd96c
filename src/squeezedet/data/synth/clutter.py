"""Clutter of a synthetic scene: poles, lamps, signs, traffic lights, trees, bushes, bins,
hydrants, bollards, billboards, cones, and look-alikes that are *not* objects (crates and kiosks
in car colours, lamp posts with a globe, parked bicycles without a rider).
"""

from __future__ import annotations

import math

import numpy as np

from squeezedet.data.synth.shapes import Camera, Colour, Figure, Prim, ellipse_pts, shade
from squeezedet.data.synth.solids import box_prims
from squeezedet.data.synth.style import SHARED_COLOURS, Item, Road, Style, loguniform, pick


def clutter(rng: np.random.Generator, cam: Camera, style: Style, road: Road) -> list[Item]:
    """4 to 15 clutter items on the sidewalks (cones on the road); those far out of view dropped."""
    items: list[Item] = []
    n = int(rng.integers(4, 16))
    for _ in range(n):
        side = -1 if rng.random() < 0.5 else 1
        z = loguniform(rng, 3.0, 70.0)
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
        items.append(Item(z, _clutter_prims(rng, str(kind), cam, x, z, side, style)))
    return items


def _clutter_prims(
    rng: np.random.Generator, kind: str, cam: Camera, x: float, z: float, side: int, style: Style
) -> list[Prim]:
    """The primitives of one clutter item of ``kind`` standing at ``(x, z)``."""
    f = Figure(cam, x, z, 1.0, 1.0)
    grey = pick(rng, [(90, 92, 96), (60, 70, 60), (150, 150, 150), (40, 40, 40)], 8)
    if kind in ("pole", "sign", "lamp", "globe", "tlight"):
        _post(rng, f, kind, side, grey)
    elif kind in ("tree", "bush"):
        _greenery(rng, f, kind)
    elif kind in ("bin", "crate"):
        col = pick(rng, SHARED_COLOURS + ((40, 100, 50), (90, 90, 90)))
        if kind == "bin":
            size = (rng.uniform(0.8, 1.3), rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.9))
        else:
            size = (rng.uniform(0.9, 2.2), rng.uniform(0.8, 2.0), rng.uniform(1.0, 3.0))
        return box_prims(cam, x, z, rng.uniform(-math.pi, math.pi), size, col, style.light,
                         style.ambient)
    elif kind == "hydrant":
        col = pick(rng, [(190, 30, 30), (220, 190, 40), (60, 90, 160)])
        f.poly(np.array([[-0.12, 0], [0.12, 0], [0.12, 0.6], [-0.12, 0.6]]), col)
        f.ellipse(0, 0.62, 0.14, 0.1, shade(col, 0.8))
        f.poly(np.array([[-0.22, 0.35], [0.22, 0.35], [0.22, 0.45], [-0.22, 0.45]]), col)
    elif kind == "bollards":
        col = pick(rng, SHARED_COLOURS)
        for i in range(int(rng.integers(2, 6))):
            xo = i * 1.2
            f.poly(np.array([[xo - 0.08, 0], [xo + 0.08, 0], [xo + 0.08, 0.9], [xo - 0.08, 0.9]]),
                   col)
            f.ellipse(xo, 0.9, 0.09, 0.06, shade(col, 1.2))
    elif kind == "billboard":
        _billboard(rng, f, grey)
    elif kind == "cone":
        f.poly(np.array([[-0.18, 0], [0.18, 0], [0.04, 0.7], [-0.04, 0.7]]), (230, 110, 30))
        f.poly(np.array([[-0.11, 0.3], [0.11, 0.3], [0.08, 0.42], [-0.08, 0.42]]),
               (235, 235, 235))
    else:  # parked bicycle without a rider (not a Cyclist)
        return _bicycle(rng, cam, x, z)
    return f.prims


def _post(rng: np.random.Generator, f: Figure, kind: str, side: int, grey: Colour) -> None:
    """A pole, and on top of it a sign, a lamp on an arm, a globe or traffic lights."""
    hp = {"pole": rng.uniform(3, 9), "sign": rng.uniform(2.2, 3.2), "lamp": rng.uniform(5, 9),
          "globe": rng.uniform(2.0, 3.5), "tlight": rng.uniform(3, 5)}[kind]
    wp = rng.uniform(0.08, 0.2)
    f.poly(np.array([[-wp, 0], [wp, 0], [wp, hp], [-wp, hp]]) * [0.5, 1], grey)
    if kind == "sign":
        shape = rng.integers(4)
        sz = rng.uniform(0.5, 0.9)
        c = (0.0, hp)
        col = pick(rng, [(190, 30, 30), (30, 70, 170), (30, 120, 60), (230, 190, 40)], 10)
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
        f.ellipse(0, hp + 0.2, 0.22, 0.22, pick(rng, [(230, 230, 220), (200, 200, 120)]))
    elif kind == "tlight":
        f.poly(np.array([[-0.2, hp - 0.9], [0.2, hp - 0.9], [0.2, hp + 0.1],
                         [-0.2, hp + 0.1]]), (25, 25, 25))
        for i, col in enumerate(((200, 30, 30), (210, 170, 30), (30, 180, 60))):
            on = rng.random() < 0.4
            f.ellipse(0, hp - 0.1 - 0.3 * i, 0.11, 0.11, col if on else shade(col, 0.35))


def _greenery(rng: np.random.Generator, f: Figure, kind: str) -> None:
    """A tree (trunk and crown) or a bush: a few overlapping ellipses of one green or brown."""
    greens = [(40, 90, 40), (60, 110, 45), (30, 70, 35), (90, 120, 50), (150, 90, 40),
              (170, 60, 40)]
    base = pick(rng, greens, 15)
    if kind == "tree":
        th, tw = rng.uniform(1.8, 3.5), rng.uniform(0.25, 0.5)
        f.poly(np.array([[-tw / 2, 0], [tw / 2, 0], [tw / 3, th + 0.5], [-tw / 3, th + 0.5]]),
               pick(rng, [(90, 65, 45), (70, 55, 45)]))
        rc = rng.uniform(1.2, 2.8)
        cy = th + rc * 0.8
    else:
        rc = rng.uniform(0.5, 1.2)
        cy = rc * 0.6
    for _ in range(int(rng.integers(3, 7))):
        f.ellipse(rng.normal(0, rc * 0.4), cy + rng.normal(0, rc * 0.3),
                  rc * rng.uniform(0.5, 0.9), rc * rng.uniform(0.4, 0.8),
                  shade(base, rng.uniform(0.7, 1.3)))


def _billboard(rng: np.random.Generator, f: Figure, grey: Colour) -> None:
    """A board on two legs with a few discs and squares in the objects' colours."""
    bw, bh, lift = rng.uniform(1.5, 3.5), rng.uniform(1.0, 2.2), rng.uniform(0.4, 2.2)
    f.line([(-bw / 3, 0), (-bw / 3, lift)], 0.1, grey)
    f.line([(bw / 3, 0), (bw / 3, lift)], 0.1, grey)
    f.poly(np.array([[-bw / 2, lift], [bw / 2, lift], [bw / 2, lift + bh],
                     [-bw / 2, lift + bh]]), pick(rng, SHARED_COLOURS))
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(-bw / 3, bw / 3), lift + rng.uniform(0.2, 0.8) * bh
        if rng.random() < 0.5:
            f.ellipse(cx, cy, bh * 0.15, bh * 0.15, pick(rng, SHARED_COLOURS))
        else:
            f.poly(np.array([[cx - bw / 6, cy - bh / 6], [cx + bw / 6, cy - bh / 6],
                             [cx + bw / 6, cy + bh / 6], [cx - bw / 6, cy + bh / 6]]),
                   pick(rng, SHARED_COLOURS))


def _bicycle(rng: np.random.Generator, cam: Camera, x: float, z: float) -> list[Prim]:
    """A parked bicycle without a rider (a look-alike, not a Cyclist)."""
    fb = Figure(cam, x, z, rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0), 1.0)
    r = 0.34
    col = pick(rng, SHARED_COLOURS)
    for cu in (-0.54, 0.54):
        (x1, y1), (x2, y2) = fb.px(np.array([[cu - r, 2 * r], [cu + r, 0.0]]))
        fb.prims.append(Prim("ring", np.array([[min(x1, x2), y1], [max(x1, x2), y2]]),
                             (20, 20, 22), max(1.0, 0.07 * fb.ky)))
    fb.line([(-0.54, r), (-0.05, 0.3), (-0.15, 0.9), (-0.54, r)], 0.045, col)
    fb.line([(-0.15, 0.9), (0.40, 0.85), (0.54, r)], 0.045, col)
    fb.line([(-0.05, 0.3), (0.40, 0.85), (0.45, 1.0)], 0.045, col)
    return fb.prims
