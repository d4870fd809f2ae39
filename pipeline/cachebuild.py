"""Turning person records into cache.h5 samples: decode, crop, encode (plain functions).

BuildCache streams records through a process pool in bounded windows and appends the samples
to resizable, one-sample-per-chunk HDF5 datasets, so memory stays flat whatever the split size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np

from models.masks import coco_instance_mask
from models.sample import CropConfig, person_sample
from pipeline.core import resolve_inside
from pipeline.persons import read_palette_png

# Cache layout: name -> (per-sample shape given crop size S, dtype). `posemap` depends on config.
STR_DTYPE = h5py.string_dtype("utf-8")


def cache_layout(cfg: CropConfig) -> dict[str, tuple[tuple[int, ...], object]]:
    s, half = cfg.size, cfg.size // 2
    posemap_shape = (14, half, half) if cfg.per_joint_posemap else (half, half)
    return {
        "image": ((s, s, 3), np.uint8),
        "mask": ((s, s), np.uint8),
        "posemap": (posemap_shape, np.uint8),
        "prior": ((s, s), np.uint8),
        "joints": ((14, 3), np.float32),
        "affine": ((2, 3), np.float32),
        "image_id": ((), np.int64),
        "instance_id": ((), np.int64),
        "source": ((), STR_DTYPE),
        "orig_size": ((2,), np.int32),
    }


@dataclass
class SampleResult:
    """A built sample, or the reason it could not be built."""

    record_index: int
    sample: dict | None
    problem: dict | None


def decode_image(path: Path, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Read an image as (H,W,3) uint8 RGB; ValueError when it cannot be decoded or its size is off."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("cannot decode image (corrupt or not an image)")
    if height is not None and bgr.shape[:2] != (height, width):
        raise ValueError(f"image is {bgr.shape[1]}x{bgr.shape[0]}, annotation says {width}x{height}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def record_mask(record: dict, root: Path) -> np.ndarray:
    """The ground-truth (H,W) uint8 mask of a person record."""
    m = record["mask"]
    if m["type"] == "coco":
        return coco_instance_mask(m["segmentation"], record["height"], record["width"])
    if m["type"] == "voc":
        obj = read_palette_png(resolve_inside(root, m["object_png"]))
        return (obj == m["instance"]).astype(np.uint8)
    raise ValueError(f"unknown mask type {m['type']!r}")


def build_one(args: tuple[int, dict, str, CropConfig]) -> SampleResult:
    """Pool worker: one record -> one sample (or a problem naming file, record and reason)."""
    index, record, root_str, cfg = args
    root = Path(root_str)
    try:
        path = resolve_inside(root, record["image"])
        if not path.is_file():
            raise FileNotFoundError("image file not found")
        image = decode_image(path, record["height"], record["width"])
        mask = record_mask(record, root)
        sample = person_sample(image, mask, np.asarray(record["keypoints"], np.float32), record["bbox"], cfg)
    except Exception as e:  # noqa: BLE001 - any failure of one record is reported, the batch goes on
        reason = {FileNotFoundError: "missing_image", ValueError: "corrupt_image"}.get(type(e), "sample_error")
        return SampleResult(index, None, {"reason": reason, "file": record.get("image"),
                                          "record": record.get("instance_id"), "detail": str(e)})  # fmt: skip
    sample["image_id"] = np.int64(record["image_id"])
    sample["instance_id"] = np.int64(record["instance_id"])
    sample["source"] = record["dataset"]
    return SampleResult(index, sample, None)


def read_records(path: Path) -> Iterator[dict]:
    """Stream a persons.jsonl file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def windows(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of at most `size` items (bounded memory)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class CacheWriter:
    """Appends samples to an open h5py.File in the cache layout (one sample per chunk)."""

    def __init__(self, h5: h5py.File, cfg: CropConfig, expected: int) -> None:
        self.h5, self.n = h5, 0
        layout = cache_layout(cfg)
        self.names = list(layout)
        for name, (shape, dtype) in layout.items():
            h5.create_dataset(name, shape=(expected, *shape), maxshape=(None, *shape), dtype=dtype,
                              chunks=(1, *shape) if shape else (min(max(expected, 1), 4096),))  # fmt: skip
        h5.attrs["crop_config"] = json.dumps(cfg.to_dict())
        h5.attrs["layout_version"] = 1

    def append(self, sample: dict) -> None:
        for name in self.names:
            ds = self.h5[name]
            if self.n >= ds.shape[0]:
                ds.resize(self.n + 1, axis=0)
            ds[self.n] = sample[name]
        self.n += 1

    def close(self) -> None:
        for name in self.names:
            self.h5[name].resize(self.n, axis=0)
