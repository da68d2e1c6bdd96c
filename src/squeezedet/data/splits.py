"""Deterministic train/validation splits of a list of image ids."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

from squeezedet.errors import SqueezeDetError


def make_split(
    ids: Sequence[str], val_fraction: float = 0.5, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Deterministic random split of ``ids`` into ``(train, val)``, each sorted.

    The ids are ordered by the SHA-256 of ``"{seed}:{id}"`` and the first
    ``floor(n * val_fraction + 0.5)`` (at least 1, at most ``n - 1``) go to val. The result depends
    only on the ids, the fraction and the seed, not on the NumPy version or the platform.
    """
    if not 0.0 < val_fraction < 1.0:
        raise SqueezeDetError(
            f"the validation fraction must be between 0 and 1 (exclusive), got {val_fraction}"
        )
    unique = sorted(set(ids))
    n = len(unique)
    if n < 2:
        raise SqueezeDetError(f"a split needs at least 2 labelled images, found {n}")
    n_val = min(max(math.floor(n * val_fraction + 0.5), 1), n - 1)
    order = sorted(unique, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    return sorted(order[n_val:]), sorted(order[:n_val])


#: Fraction of the images that goes to validation when a data set has no split of its own.
VAL_FRACTION = 0.2


def resolve_splits(ids: Sequence[str], explicit: Mapping[str, Sequence[str]] | None,
                   rule: str, seed: int = 0) -> tuple[dict[str, list[int]], str]:
    """Sample indices of ``"train"`` and ``"val"`` for samples with ``ids``.

    ``explicit`` maps split names to the ids the data set lists (every listed id must exist; use
    ``rule`` to say where they came from). Without it, :func:`make_split`
    gives a deterministic split with :data:`VAL_FRACTION` of the images in val (with a single
    image, it is in both). Returns ``(splits, rule)``.
    """
    position = {image_id: i for i, image_id in enumerate(ids)}
    if explicit:
        splits = {}
        for name, listed in explicit.items():
            missing = [i for i in listed if i not in position]
            if missing:
                raise SqueezeDetError(f"split {name!r} ({rule}) lists {len(missing)} images "
                                      f"that have no annotation, e.g. {missing[0]!r}")
            splits[name] = [position[i] for i in listed]
        return splits, rule
    if len(ids) < 2:
        every = list(range(len(ids)))
        return {"train": every, "val": list(every)}, "a single image: used for train and val"
    train, val = make_split(ids, VAL_FRACTION, seed)
    return ({"train": [position[i] for i in train], "val": [position[i] for i in val]},
            f"no split given: a deterministic split with {VAL_FRACTION:.0%} of the images "
            "(by SHA-256 of the id) in val")
