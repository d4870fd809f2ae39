"""A synthetic cache.h5 for tests and benchmarks (not part of the package)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from models.sample import NUM_JOINTS, CropConfig


def write_synthetic_cache(
    path: str | os.PathLike,
    num_samples: int,
    seed: int = 0,
    size: int = 256,
    pose_channels: int = 1,
) -> Path:
    """Write a small cache.h5 in the BuildCache layout with random, learnable content.

    For tests and benchmarks only: each sample is a random ellipse (the mask) on a noise
    background, the person slightly brighter; the prior is a blurred, shifted ellipse; the pose map
    a bump at its centre; 14 joints on its vertical axis; the crop config as BuildCache writes it.
    Returns the path. Image (N,size,size,3); pose map at size/2.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    half = size // 2
    hy, hx = np.mgrid[0:half, 0:half].astype(np.float32)
    image = rng.integers(0, 160, (num_samples, size, size, 3), dtype=np.uint8)
    mask = np.zeros((num_samples, size, size), np.uint8)
    prior = np.zeros((num_samples, size, size), np.uint8)
    pose_shape = (num_samples, half, half) if pose_channels == 1 else (num_samples, pose_channels, half, half)
    posemap = np.zeros(pose_shape, np.uint8)
    centres = []
    for i in range(num_samples):
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        ry, rx = rng.uniform(0.2, 0.4, 2) * size
        centres.append((cy, cx, ry))
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        mask[i] = inside
        image[i][inside] = np.clip(image[i][inside].astype(np.int16) + 80, 0, 255).astype(np.uint8)
        shift_y, shift_x = rng.uniform(-0.05, 0.05, 2) * size
        dist = ((yy - cy - shift_y) / ry) ** 2 + ((xx - cx - shift_x) / rx) ** 2
        prior[i] = np.clip(np.rint(254.0 * np.exp(-dist)), 1, 254).astype(np.uint8)
        bump = np.exp(-((hy - cy / 2) ** 2 + (hx - cx / 2) ** 2) / (2 * (size / 32) ** 2))
        posemap[i] = np.rint(255.0 * bump).astype(np.uint8)
    # joints on the ellipse's vertical axis, all visible (full augmentation redraws from them)
    joints = np.zeros((num_samples, NUM_JOINTS, 3), np.float32)
    for i, (cy, cx, ry) in enumerate(centres):
        joints[i, :, 0] = cx
        joints[i, :, 1] = cy + np.linspace(-0.8, 0.8, NUM_JOINTS) * ry
        joints[i, :, 2] = 2
    affine = np.tile(np.eye(2, 3, dtype=np.float32), (num_samples, 1, 1))
    chunks = {
        "image": (1, size, size, 3),
        "mask": (1, size, size),
        "prior": (1, size, size),
        "posemap": (1,) + pose_shape[1:],
    }
    with h5py.File(path, "w") as h5:
        for name, data in (("image", image), ("mask", mask), ("prior", prior), ("posemap", posemap)):
            h5.create_dataset(name, data=data, chunks=chunks[name])
        h5.create_dataset("joints", data=joints)
        h5.create_dataset("affine", data=affine)
        h5.create_dataset("image_id", data=np.arange(num_samples, dtype=np.int64))
        h5.create_dataset("instance_id", data=np.arange(num_samples, dtype=np.int64))
        h5.create_dataset("source", data=np.array(["synthetic"] * num_samples, dtype=h5py.string_dtype()))
        h5.create_dataset("orig_size", data=np.full((num_samples, 2), size, np.int32))
        h5.attrs["crop_size"] = size
        h5.attrs["crop_config"] = json.dumps(CropConfig(size=size, per_joint_posemap=pose_channels > 1).to_dict())
        h5.attrs["synthetic_seed"] = seed
    return path
