"""Lit 3-D solids of the synthetic scenes: cars (tyres, body, lights, wheels, a cabin with
windows) and plain boxes (bins, crates, kiosks), projected face by face.

A solid is a :func:`_frustum` (a box whose top may be smaller than its bottom) in the object's
frame (x forward, y down, z to the side), placed at ``(x, y, z, rotation_y)`` in the camera frame;
the faces turned towards the camera are drawn, each shaded by the sun (``light``) over an
``ambient`` floor.
"""

from __future__ import annotations

import math

import numpy as np

from squeezedet.data.synth.shapes import Camera, Colour, Prim, SceneObject, shade


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
