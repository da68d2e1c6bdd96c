"""The constant-velocity Kalman filter of SORT / DeepSORT / ByteTrack, for many tracks at once.

State per track, 8 numbers: the box centre ``(cx, cy)``, its aspect ratio ``a = w / h`` and height
``h`` (pixels), and their velocities per frame. The measurement is ``(cx, cy, a, h)`` of a detected
box. Noise follows DeepSORT's choice: standard deviations proportional to the box height (position
1/20 of h, velocity 1/160 of h per frame), so a large box may move more pixels per frame than a
small one; the aspect ratio's are fixed (1e-2 for its position, 1e-5 for its velocity, 1e-1 for
its measurement).

Every function takes and returns arrays for M tracks at once (``mean (M, 8)``,
``covariance (M, 8, 8)``) and leaves its inputs unchanged.
"""

from __future__ import annotations

import numpy as np

#: weights of the box height in the position and velocity noise (DeepSORT's values)
STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160

_DIM = 4
#: state transition: position += velocity (one frame)
_MOTION = np.eye(2 * _DIM)
_MOTION[:_DIM, _DIM:] = np.eye(_DIM)
#: measurement: the first four state entries
_UPDATE = np.eye(_DIM, 2 * _DIM)


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """``boxes (N, 4)`` x1y1x2y2 pixels -> ``(N, 4)`` centre x, centre y, w / h, h."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """``(N, 4)`` centre x, centre y, w / h, h -> ``(N, 4)`` x1y1x2y2 pixels."""
    xyah = np.asarray(xyah, dtype=np.float64).reshape(-1, 4)
    w = xyah[:, 2] * xyah[:, 3]
    h = xyah[:, 3]
    return np.stack([xyah[:, 0] - w / 2, xyah[:, 1] - h / 2, xyah[:, 0] + w / 2, xyah[:, 1] + h / 2], axis=1)


def _std(h: np.ndarray, scale: float, aspect: float) -> np.ndarray:
    """(M, 4) standard deviations of (cx, cy, a, h)-like entries for heights ``h (M,)``: ``scale``
    times the height, and the fixed ``aspect`` for the aspect ratio."""
    return np.stack([scale * h, scale * h, np.full_like(h, aspect), scale * h], axis=1)


def initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from ``measurement (M, 4)`` xyah: zero velocity, DeepSORT's initial uncertainty
    (twice the position noise, ten times the velocity noise)."""
    measurement = np.asarray(measurement, dtype=np.float64).reshape(-1, _DIM)
    mean = np.concatenate([measurement, np.zeros_like(measurement)], axis=1)
    h = measurement[:, 3]
    std = np.concatenate([_std(h, 2 * STD_POSITION, 1e-2), _std(h, 10 * STD_VELOCITY, 1e-5)], axis=1)
    covariance = np.stack([np.diag(s ** 2) for s in std]) if len(std) else np.zeros((0, 8, 8))
    return mean, covariance


def predict(mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead for every track: ``mean (M, 8)``, ``covariance (M, 8, 8)``."""
    h = mean[:, 3]
    std = np.concatenate([_std(h, STD_POSITION, 1e-2), _std(h, STD_VELOCITY, 1e-5)], axis=1)
    noise = np.zeros((len(mean), 8, 8))
    idx = np.arange(8)
    noise[:, idx, idx] = std ** 2
    new_mean = mean @ _MOTION.T
    new_cov = _MOTION @ covariance @ _MOTION.T + noise
    return new_mean, new_cov


def update(mean: np.ndarray, covariance: np.ndarray,
           measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct each track ``(M, 8)`` / ``(M, 8, 8)`` with its measured box ``measurement (M, 4)``
    xyah (the standard Kalman update, with measurement noise 1/20 of the box height)."""
    h = mean[:, 3]
    r = _std(h, STD_POSITION, 1e-1) ** 2
    projected_mean = mean @ _UPDATE.T
    projected_cov = _UPDATE @ covariance @ _UPDATE.T
    idx = np.arange(_DIM)
    projected_cov[:, idx, idx] += r
    # gain K = P H^T S^-1, solved instead of inverted (S is symmetric positive definite)
    cross = covariance @ _UPDATE.T  # (M, 8, 4)
    gain = np.linalg.solve(projected_cov, np.transpose(cross, (0, 2, 1))).transpose(0, 2, 1)
    innovation = np.asarray(measurement, dtype=np.float64).reshape(-1, _DIM) - projected_mean
    new_mean = mean + np.einsum("mij,mj->mi", gain, innovation)
    new_cov = covariance - gain @ projected_cov @ np.transpose(gain, (0, 2, 1))
    return new_mean, new_cov
