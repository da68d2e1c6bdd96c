"""People of the synthetic scenes as 2-D figures: pedestrians and cyclists.

A figure is drawn in local metres (``u`` along the side it faces, ``up`` from the ground) on the
projected foot point, scaled by ``f / z`` and squashed by how much of its side is seen, so it is
seen from the side, front or back according to the observation angle ``alpha``.
"""

from __future__ import annotations

import math

import numpy as np

from squeezedet.data.synth.shapes import Camera, Colour, Figure, Prim, SceneObject, shade


def _view(obj: SceneObject) -> tuple[float, float, float]:
    """``(facing sign, side-ness |cos alpha|, front-ness sin alpha)`` of an object."""
    alpha = obj.rotation_y - math.atan2(obj.x, obj.z)
    c, s = math.cos(alpha), math.sin(alpha)
    return (1.0 if c >= 0 else -1.0), abs(c), s


def pedestrian_prims(obj: SceneObject, cam: Camera) -> list[Prim]:
    """A walking person: legs in stride, torso, swinging arms, head (face or hair)."""
    h = obj.dimensions[0]
    facing, side, front = _view(obj)
    f = Figure(cam, obj.x, obj.z, facing, side)
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
    f = Figure(cam, obj.x, obj.z, facing * squash, squash)
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
