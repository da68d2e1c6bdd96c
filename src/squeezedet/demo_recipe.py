"""The demo's time budget and the training recipe it picks for the machine: the default budget
(:data:`TOTAL_MINUTES`), what its end takes (:func:`finish_seconds`), the training minutes left
(:func:`training_minutes`), and the ladder of recipes tried until one gives enough steps
(:func:`choose_recipe`). :mod:`squeezedet.demo` times the steps and runs the demo."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: optimiser steps the default recipe (624x192, batch 8) took in 16 minutes on the project's
#: AVX-512/bf16 CPU, where the demo reached mean moderate AP_R40 54-57 with 4,200-5,400 of them
TARGET_STEPS = 4500
#: below this many steps in the time budget the recipe adapts (loaded runs of the fast CPU took
#: 4,210)
MIN_STEPS = 3600
#: the recipes, in order: network input (W, H), batch, scene density and learning rate (None:
#: the demo's 1e-3). The scenes are drawn at the network's input size; the last recipe, for slow
#: machines, draws smaller scenes (a step costs about a quarter) with twice the objects (more to
#: learn from per step). With squeeze batch norm it keeps lr 1e-3 (AVX2-narrowed, 7.5 minutes:
#: 52.7 mean moderate AP_R40, against 50.0 at 5e-4 and 51.0 at 2e-3; without the norms 5e-4 had
#: been best)
LADDER: tuple[tuple[int, int, int, float, float | None], ...] = (
    (624, 192, 8, 1.0, None), (624, 192, 6, 1.0, None), (432, 128, 4, 2.0, None))
#: scenes drawn to time the training steps before the data set is chosen
PROBE_IMAGES = 12
#: the demo's whole time budget by default, minutes: it trains for what is left after timing
#: the machine and drawing the scenes, less :func:`finish_seconds`, so that even a first
#: ``make demo``, which installs the package before (about 1.5 minutes), ends within 20
TOTAL_MINUTES = 18.5
#: seconds the end of the demo takes besides validating (saving, plots, drawing detections)
FINISH_FIXED_S = 20.0
#: what a recipe choice assumes the scenes and the end will take, seconds (the recipe is chosen
#: before the scenes are drawn; the training time is worked out after)
CHOICE_ALLOWANCE_S = 90.0


def finish_seconds(step_s: float | None, batch: int, val_images: int) -> float:
    """What the demo reserves for its end after training, seconds: :data:`FINISH_FIXED_S` plus
    validating ``val_images`` at half a training step's time per ``batch`` images (a forward
    pass costs about a third of a step; decoding and NMS come on top: 400 images measured 8 s at
    a 0.18 s step of batch 4, against the 9 s reserved). Without a measured step (``step_s``
    None: the recipe was not timed) one minute."""
    if step_s is None:
        return 60.0
    return FINISH_FIXED_S + val_images * step_s / batch / 2


def training_minutes(total_min: float, elapsed_s: float, finish_s: float) -> float:
    """Training minutes left in a ``total_min`` budget after ``elapsed_s`` seconds, keeping
    ``finish_s`` for the end; at least a quarter of the budget (a budget already spent still
    trains, and the demo then overruns it)."""
    return max((total_min * 60 - elapsed_s - finish_s) / 60, total_min / 4)


@dataclass(frozen=True)
class Recipe:
    """A training recipe the demo may pick: network input size (= the size the scenes are drawn
    at), batch, scene density, learning rate (``None``: the configuration's), and the step time
    measured (``measured``) or projected from another recipe's by pixels × batch."""

    size: tuple[int, int]
    batch: int
    step_s: float
    measured: bool
    density: float = 1.0
    lr: float | None = None

    def steps(self, seconds: float) -> int:
        return int(seconds / self.step_s)


def choose_recipe(measure: Callable[[tuple[int, int], int], float], seconds: float,
                  ladder: Sequence[tuple[int, int, int, float, float | None]] = LADDER,
                  max_probes: int = 3) -> tuple[Recipe, list[Recipe]]:
    """The first recipe of ``ladder`` whose training steps fit :data:`MIN_STEPS` times into
    ``seconds``, and every recipe timed on the way.

    ``measure(size, batch)`` times a step of a recipe on this machine. The first recipe is
    always measured; when it fits, it is the choice (a fast machine keeps the default). Otherwise
    the next candidates are projected from the last measurement (step time proportional to
    pixels × batch), the first projected to fit :data:`MIN_STEPS` is measured, and so on (at most
    ``max_probes`` measurements); the last measured recipe is taken when none fits. Taking the
    first that fits keeps a machine on the default scenes whenever batch 6 fits.
    """
    w0, h0, b0, d0, lr0 = ladder[0]
    probes = [Recipe((w0, h0), b0, measure((w0, h0), b0), True, d0, lr0)]
    index = 0
    while probes[-1].steps(seconds) < MIN_STEPS and len(probes) < max_probes:
        last = probes[-1]
        cost = last.step_s / (last.size[0] * last.size[1] * last.batch)
        later = ladder[index + 1:]
        if not later:
            break
        pick = next((rung for rung in later
                     if seconds / (cost * rung[0] * rung[1] * rung[2]) >= MIN_STEPS), later[-1])
        index = ladder.index(pick)
        probes.append(Recipe(pick[:2], pick[2], measure(pick[:2], pick[2]), True, *pick[3:]))
    fitting = [r for r in probes if r.steps(seconds) >= MIN_STEPS]
    return (fitting[0] if fitting else probes[-1]), probes
