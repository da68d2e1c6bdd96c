"""What a synthetic scene is drawn from: the colour palettes, the road's layout and the scene's
style (sky, ground colours, sun, lighting, blur, noise), all drawn from the scene's generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from squeezedet.data.synth.shapes import Colour, Prim, SceneObject

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


def pick(rng: np.random.Generator, colours: Sequence[Colour], jitter: float = 12.0) -> Colour:
    c = colours[int(rng.integers(len(colours)))]
    j = rng.normal(0.0, jitter, 3)
    return (int(min(255, max(0, c[0] + j[0]))), int(min(255, max(0, c[1] + j[1]))),
            int(min(255, max(0, c[2] + j[2]))))


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def wrap_angle(a: float) -> float:
    """``a`` wrapped to ``[-pi, pi)``."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


@dataclass
class Style:
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
class Road:
    bounds: list[float]  # lane boundaries, left to right (metres)
    n_opposite: int  # the leftmost lanes with oncoming traffic
    x_left: float  # road edges including parking strips
    x_right: float
    walk_left: float  # outer edges of the sidewalks
    walk_right: float
    build_left: float  # façade planes
    build_right: float


@dataclass
class Item:
    depth: float
    prims: list[Prim]
    obj: SceneObject | None = None


def sample_style(rng: np.random.Generator) -> Style:
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
    return Style(
        sky_top=pick(rng, [sky_top], 10),
        sky_horizon=pick(rng, [sky_hor], 10),
        verge=pick(rng, [(80, 115, 50), (105, 125, 60), (130, 115, 90), (150, 150, 145)], 10),
        sidewalk=pick(rng, [(150, 150, 150), (180, 175, 165), (135, 125, 115)], 10),
        road=pick(rng, [(grey, grey, grey + 4), (grey + 5, grey, grey - 5)], 4),
        mark=pick(rng, [(225, 225, 220), (175, 175, 170)], 6),
        light=light,
        ambient=float(rng.uniform(0.45, 0.75)) if weather != 1 else float(rng.uniform(0.7, 0.9)),
        gain=float(rng.uniform(0.6, 1.25)),
        tint=rng.uniform(0.9, 1.1, 3),
        gamma=float(rng.uniform(0.8, 1.25)),
        noise=float(rng.uniform(1.0, 4.5)),
        blur=float(rng.choice([0.0, 0.0, 0.4, 0.7])),
    )


def sample_road(rng: np.random.Generator) -> Road:
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
    return Road(
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
