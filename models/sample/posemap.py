"""Gaussian pose maps: one bump per visible joint, at half the crop resolution.

    pose_map(joints, crop_size, sigma, per_joint)   (K, 3) crop joints -> (S/2, S/2) or (K, S/2, S/2) float32
    to_uint8(values)                                [0, 1] float -> the cache's uint8 0..255

The cache build and the nightly inference draw one map per person; the augmentation redraws it.
"""

from __future__ import annotations

import numpy as np

# A bump's 1-D factors are cut where they fall below TAIL (about 9 sigma out): the product of two
# kept factors is then a normal float32 (>= 1e-36), never a denormal, whose arithmetic x86 does
# through slow microcode assists (the far tails cost more than the bumps). What is cut is < 1e-18.
TAIL = 1e-18


def pose_map(joints: np.ndarray, crop_size: int, sigma: float, per_joint: bool = False) -> np.ndarray:
    """Gaussian bumps at the visible joints.

    joints: (K,3) in crop pixel coordinates (crop_size x crop_size); sigma in pose-map pixels.
    Returns (crop_size//2, crop_size//2) float32 in [0,1] (max over joints, as in the paper), or
    (K, crop_size//2, crop_size//2) with `per_joint`. Each bump peaks at 1 on its joint and is 0
    where it would be below TAIL.
    """
    half = crop_size // 2
    coords = np.arange(half, dtype=np.float32)
    joints = np.asarray(joints)
    shown = np.flatnonzero(joints[:, 2] > 0)
    # Pixel centres: a crop pixel i covers [i, i+1); half-res pixel k covers crop [2k, 2k+2).
    # Centres in float64 then float32, as scalar arithmetic on one joint gives.
    cx = ((joints[shown, 0].astype(np.float64) + 0.5) / 2 - 0.5).astype(np.float32)
    cy = ((joints[shown, 1].astype(np.float64) + 0.5) / 2 - 0.5).astype(np.float32)
    # The Gaussian is separable: an outer product of two 1-D bumps, (n, half) each.
    gx = np.exp(-((coords[None, :] - cx[:, None]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((coords[None, :] - cy[:, None]) ** 2) / (2 * sigma**2))
    # Per joint, one running maximum (or channel) over the window where both factors are kept:
    # K full (half, half) maps cost more than the bumps.
    out = np.zeros((len(joints), half, half) if per_joint else (half, half), np.float32)
    for k, row, col in zip(shown, gy, gx, strict=True):
        rows, cols = np.flatnonzero(row >= TAIL), np.flatnonzero(col >= TAIL)
        if rows.size == 0 or cols.size == 0:
            continue
        (r0, r1), (c0, c1) = (rows[0], rows[-1] + 1), (cols[0], cols[-1] + 1)
        bump = np.multiply.outer(row[r0:r1], col[c0:c1])
        if per_joint:
            out[k, r0:r1, c0:c1] = bump
        else:
            window = out[r0:r1, c0:c1]
            np.maximum(window, bump, out=window)
    return out


def to_uint8(values: np.ndarray) -> np.ndarray:
    """[0,1] float -> uint8 0..255 (rounded), the cache's storage form."""
    return np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)
