"""Weight sharing (Han, Mao, Dally, "Deep Compression", ICLR 2016): a tensor's non-zero entries
replaced by the nearest entry of a small codebook.

The codebook holds at most ``2^bits`` float32 values, sorted ascending: the centroids of a
one-dimensional k-means over the non-zero values (:func:`kmeans_1d`, initialised evenly over their
range, the initialisation Han et al. found best; an empty cluster is moved to the value quantised
worst), or ``2^bits`` evenly spaced levels between their minimum and maximum
(:func:`uniform_levels`). :func:`quantize_tensor` gives the positions, the codebook and one index
per non-zero entry; :func:`dequantize` is its inverse. The ``.sqz`` file format that stores them
is :mod:`squeezedet.codec`.
"""

from __future__ import annotations

import numpy as np
import torch


def kmeans_1d(values: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Sorted float32 centroids (at most ``k``) of a one-dimensional k-means over ``values``.

    Initialised evenly between the minimum and maximum; Lloyd iterations until the centroids stop
    moving (at most ``iters``). In one dimension each cluster is an interval of the sorted values,
    so an iteration costs ``O(k log n)`` with prefix sums. An empty cluster is moved into the
    cluster with the largest squared error (at the upper quartile of its values). With ``k`` or
    fewer distinct values, the distinct values themselves.
    """
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = v.size
    if n == 0:
        return np.zeros(0, np.float32)
    if np.count_nonzero(np.diff(v)) + 1 <= k:
        return np.unique(v).astype(np.float32)
    csum = np.concatenate(([0.0], np.cumsum(v)))
    csq = np.concatenate(([0.0], np.cumsum(v * v)))
    c = np.linspace(v[0], v[-1], k)
    for _ in range(iters):
        # cluster j holds the sorted values [cuts[j], cuts[j + 1])
        cuts = np.concatenate(([0], np.searchsorted(v, (c[1:] + c[:-1]) / 2, side="right"), [n]))
        lo, hi = cuts[:-1], cuts[1:]
        counts = hi - lo
        sums = csum[hi] - csum[lo]
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            sse = (csq[hi] - csq[lo]) - sums * sums / np.maximum(counts, 1)
            for j in empty:
                worst = int(np.argmax(sse))
                new[j] = v[lo[worst] + 3 * (counts[worst] - 1) // 4]
                sse[worst] = -1.0
        new = np.sort(new)
        if np.array_equal(new, c):
            break
        c = new
    return np.unique(c.astype(np.float32))


def uniform_levels(values: np.ndarray, k: int) -> np.ndarray:
    """``k`` evenly spaced float32 levels from the minimum to the maximum of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    distinct = np.unique(v)
    if distinct.size <= k:
        return distinct.astype(np.float32)
    return np.unique(np.linspace(v.min(), v.max(), k).astype(np.float32))


def _nearest(v: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of the sorted ``codebook`` for each value (ties to the lower)."""
    cb = np.asarray(codebook, dtype=np.float64)
    if cb.size == 1:
        return np.zeros(v.shape, dtype=np.int64)
    mids = (cb[1:] + cb[:-1]) / 2
    return np.searchsorted(mids, v, side="left").astype(np.int64)


def quantize_tensor(t: torch.Tensor, bits: int, quantizer: str = "kmeans",
                    iters: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantise the non-zero entries of ``t``.

    Returns ``(mask, codebook, indices)``: ``mask`` bool of ``t.numel()`` (flattened, C order),
    ``codebook`` float32 sorted, ``indices`` uint8 per non-zero entry. The dequantised tensor is
    :func:`dequantize` of these.
    """
    flat = t.detach().to(torch.float32).cpu().numpy().ravel()
    mask = flat != 0
    nz = flat[mask]
    if nz.size == 0:
        return mask, np.zeros(0, np.float32), np.zeros(0, np.uint8)
    k = 2**bits
    codebook = kmeans_1d(nz, k, iters) if quantizer == "kmeans" else uniform_levels(nz, k)
    indices = _nearest(nz.astype(np.float64), codebook).astype(np.uint8)
    return mask, codebook, indices


def dequantize(mask: np.ndarray, codebook: np.ndarray, indices: np.ndarray,
               shape: tuple[int, ...]) -> torch.Tensor:
    """float32 tensor of ``shape``: ``codebook[indices]`` where ``mask``, 0 elsewhere."""
    out = np.zeros(mask.size, dtype=np.float32)
    out[mask] = codebook[indices] if indices.size else 0
    return torch.from_numpy(out.reshape(shape))
