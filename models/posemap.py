"""Gaussian pose maps: one bump per visible joint, at half the crop resolution."""

from __future__ import annotations

import numpy as np


def pose_map(joints: np.ndarray, crop_size: int, sigma: float, per_joint: bool = False) -> np.ndarray:
    """Gaussian bumps at the visible joints.

    joints: (K,3) in crop pixel coordinates (crop_size x crop_size); sigma in pose-map pixels.
    Returns (crop_size//2, crop_size//2) float32 in [0,1] (max over joints, as in the paper), or
    (K, crop_size//2, crop_size//2) with `per_joint`. Each bump peaks at 1 on its joint.
    """
    half = crop_size // 2
    coords = np.arange(half, dtype=np.float32)
    maps = np.zeros((len(joints), half, half), np.float32)
    # Pixel centres: a crop pixel i covers [i, i+1); half-res pixel k covers crop [2k, 2k+2).
    # The Gaussian is separable: an outer product of two 1-D bumps.
    for k, (x, y, v) in enumerate(joints):
        if v <= 0:
            continue
        cx, cy = (x + 0.5) / 2 - 0.5, (y + 0.5) / 2 - 0.5
        gx = np.exp(-((coords - cx) ** 2) / (2 * sigma**2))
        gy = np.exp(-((coords - cy) ** 2) / (2 * sigma**2))
        maps[k] = gy[:, None] * gx[None, :]
    return maps if per_joint else maps.max(axis=0, initial=0.0)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """[0,1] float -> uint8 0..255 (rounded), the cache's storage form."""
    return np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)
