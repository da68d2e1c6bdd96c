"""Deterministic train/validation splits of a list of image ids."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

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
