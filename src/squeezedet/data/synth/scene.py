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

The labels are computed while the items are drawn (:mod:`.labels`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from squeezedet.data.kitti_format import KittiObject
from squeezedet.data.synth.background import draw_background, multiply, texture
from squeezedet.data.synth.clutter import clutter
from squeezedet.data.synth.labels import label_objects
from squeezedet.data.synth.objects import STANDARD_MIX, SceneMix, footprint, object_prims, sample_objects
from squeezedet.data.synth.shapes import Camera, Colour, SceneObject
from squeezedet.data.synth.style import Item, Road, Style, loguniform, sample_road, sample_style


def render_objects(
    objects: Sequence[SceneObject], size: tuple[int, int] = (1242, 375),
    background: Colour = (128, 128, 128),
) -> tuple[Image.Image, list[KittiObject]]:
    """Draw given objects on a plain background (no clutter, lighting or noise) and label them.

    Useful to check labels against hand-made placements; :func:`render_scene` makes full scenes.
    """
    cam = Camera.for_size(*size)
    img = Image.new("RGB", size, background)
    items = [Item(o.z, object_prims(o, cam), o) for o in objects]
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
    style = sample_style(rng)
    road = sample_road(rng)
    img = draw_background(rng, cam, style, road)
    factor = texture(rng, cam, max(4, w // 60), 0.25)

    objects = sample_objects(rng, cam, road, scene)
    items = clutter(rng, cam, style, road)
    shadow = Image.new("L", (w, h), 255)
    sdraw = ImageDraw.Draw(shadow)
    for o in objects:
        items.append(Item(o.z, object_prims(o, cam, style.light, style.ambient), o))
        fp = footprint(o)
        pts = np.stack([fp[:, 0], np.full(4, cam.height_m), np.maximum(fp[:, 1], 0.5)], axis=1)
        sdraw.polygon(cam.project(pts).ravel().tolist(), fill=int(255 * rng.uniform(0.4, 0.65)))
    img = multiply(img, ImageChops.multiply(factor, shadow))
    labels = label_objects(img, items, cam)

    shadows = cast_shadows(rng, cam, road)
    return finish(img if shadows is None else multiply(img, shadows), rng, style), labels


def cast_shadows(rng: np.random.Generator, cam: Camera, road: Road) -> Image.Image | None:
    """A multiplicative mask of 0-3 shadows cast across the road (``None`` for none)."""
    n_shadows = int(rng.integers(0, 4))
    if not n_shadows:
        return None
    shadow = Image.new("L", (cam.width, cam.height), 255)
    sdraw = ImageDraw.Draw(shadow)
    for _ in range(n_shadows):
        z0 = loguniform(rng, 4, 50)
        dz = rng.uniform(1, 6)
        x0 = rng.uniform(road.walk_left, road.x_right)
        x1 = x0 + rng.uniform(3, 15)
        n = 8
        xs = np.concatenate([np.linspace(x0, x1, n), np.linspace(x1, x0, n)])
        zs = np.concatenate([z0 + rng.uniform(-0.5, 0.5, n),
                             z0 + dz + rng.uniform(-0.5, 0.5, n)])
        pts = np.stack([xs, np.full(2 * n, cam.height_m), zs], axis=1)
        sdraw.polygon(cam.project(pts).ravel().tolist(), fill=int(255 * rng.uniform(0.55, 0.8)))
    return shadow


def finish(img: Image.Image, rng: np.random.Generator, style: Style) -> Image.Image:
    """The camera's part: blur, global lighting (gain, tint, gamma) and sensor noise."""
    w, h = img.size
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
    return ImageChops.add(img, grain, 1.0, -128)
