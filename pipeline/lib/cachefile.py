"""cache.h5, the file: its layout, the writer of its samples, the index over shards, and its readers.

Layout (`cache_layout`; S = [crop] size, one sample per chunk; attrs hold the crop config)::

    image        (N, S, S, 3) uint8    the person's crop, RGB
    mask         (N, S, S) uint8       ground truth at crop size (0/1)
    posemap      (N, S/2, S/2) uint8   Gaussian joints (N, 14, S/2, S/2 with per_joint_posemap)
    prior        (N, S, S) uint8       skeleton prior * 255
    joints       (N, 14, 3) float32    crop pixels (x, y, v)
    affine       (N, 2, 3) float32     image -> crop (paste_back inverts it)
    image_id, instance_id (N,) int64   source (N,) str      orig_size (N, 2) int32

    cache_layout(cfg)                                   dataset name -> (per-sample shape, dtype)
    CacheWriter(h5, cfg, expected)                      appends samples, each written as whole chunks
    write_shard_index(target, shard_files)              cache.h5 as virtual datasets over shards
    shard_file_name(shard, shards)                      ``cache-00000-of-00004.h5``
    cache_files(path)                                   the files holding a cache's samples
    cache_samples(path, names, indices, stop)           samples, only the datasets named
    cache_ids(path) / cache_size(path)                  instance ids and crop size / sample count

Each sample is written as whole chunks of the one-sample-per-chunk datasets that readers index at
random (the scalars a chunk of 4096 at a time), so memory stays flat whatever the split size. A
split can be written as N shard files (each a contiguous range of persons.jsonl) plus an index
``cache.h5`` whose datasets are HDF5 virtual datasets over the shards: readers open the index as
one ordinary file, with the samples in persons.jsonl order exactly as an unsharded build. The
samples are made by lib/cachebuild.py; the training reader (models/dataset.CacheDataset) reads the
same layout on the science side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np

from models.sample import CropConfig
from pipeline.lib.files import atomic_path

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


def shard_file_name(shard: int, shards: int) -> str:
    """``cache-00000-of-00004.h5``: the file of shard `shard` of `shards`."""
    return f"cache-{shard:05d}-of-{shards:05d}.h5"


class CacheWriter:
    """Appends samples to an open h5py.File in the cache layout (one sample per chunk).

    A sample's arrays are exactly one chunk of their datasets, so each is written as that chunk
    (``id.write_direct_chunk``: no selection, conversion or chunk cache; measured ~0.25 ms a sample
    against ~2.5 ms for ``ds[n] = value`` per dataset). The scalar datasets (``image_id``,
    ``instance_id``, ``source``; chunks of up to 4096 samples) are buffered and written one whole
    chunk per call.
    """

    def __init__(self, h5: h5py.File, cfg: CropConfig, expected: int) -> None:
        self.h5, self.n, self.capacity = h5, 0, expected
        layout = cache_layout(cfg)
        self.names = list(layout)
        self.shapes = {name: shape for name, (shape, _) in layout.items()}
        self.dtypes = {name: dtype for name, (_, dtype) in layout.items()}
        self.scalar_chunk = min(max(expected, 1), 4096)
        for name, (shape, dtype) in layout.items():
            h5.create_dataset(
                name,
                shape=(expected, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(1, *shape) if shape else (self.scalar_chunk,),
            )
        h5.attrs["crop_config"] = json.dumps(cfg.to_dict())
        h5.attrs["layout_version"] = 1
        self.datasets = {name: h5[name] for name in self.names}
        self.chunked = [name for name in self.names if self.shapes[name]]  # one sample = one chunk
        self.pending: dict[str, list] = {name: [] for name in self.names if not self.shapes[name]}

    def append(self, sample: dict) -> None:
        """Write one sample (a dict with every dataset of the layout) as row n."""
        if self.n >= self.capacity:  # more samples than expected: grow
            self.capacity = max(self.n + 1, 2 * self.capacity)
            for ds in self.datasets.values():
                ds.resize(self.capacity, axis=0)
        chunks = {name: np.asarray(sample[name]) for name in self.chunked}
        for name, value in chunks.items():  # all checked before any is written: no half-written row
            if value.shape != self.shapes[name]:  # a direct chunk write does not check what it is given
                raise ValueError(f"sample {name!r} has shape {value.shape}, the cache holds {self.shapes[name]}")
        for name, value in chunks.items():
            value = np.ascontiguousarray(value, self.dtypes[name])
            self.datasets[name].id.write_direct_chunk((self.n,) + (0,) * value.ndim, value)
        for name, values in self.pending.items():
            values.append(sample[name])
        self.n += 1
        if self.n % self.scalar_chunk == 0:
            self.flush()

    def flush(self) -> None:
        """Write the buffered scalars (rows n - buffered .. n-1)."""
        for name, values in self.pending.items():
            if values:
                dtype = object if self.dtypes[name] is STR_DTYPE else self.dtypes[name]
                self.datasets[name][self.n - len(values) : self.n] = np.array(values, dtype=dtype)
                values.clear()

    def close(self) -> None:
        self.flush()
        for ds in self.datasets.values():
            ds.resize(self.n, axis=0)


SHARD_FILES_ATTR = "shard_files"


def write_shard_index(target: Path, shard_files: list[Path], attrs: dict[str, object] | None = None) -> int:
    """Write `target` (atomic): every cache dataset as an HDF5 virtual dataset over `shard_files`, in order.

    The shards must sit in target's folder; they are referenced by bare file name (HDF5 resolves such
    names beside the index file), so the folder can move. The attribute ``shard_files`` (JSON list)
    names them all. Returns the number of samples.
    """
    target = Path(target)
    for path in shard_files:
        if Path(path).resolve().parent != target.resolve().parent:
            raise ValueError(f"shard {path} is not in the index's folder {target.parent}")
    counts, layout, file_attrs = [], {}, {}
    for path in shard_files:
        with h5py.File(path, "r") as h5:
            counts.append(int(h5["image"].shape[0]))
            if not layout:  # shapes and dtypes from the first shard (all shards share one crop config)
                layout = {name: (h5[name].shape[1:], h5[name].dtype) for name in h5}
                file_attrs = {k: v for k, v in h5.attrs.items() if k != "records"}
    total = sum(counts)
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as h5:
        for name, (shape, dtype) in layout.items():
            if total == 0:  # a virtual dataset cannot be empty
                h5.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype)
                continue
            vlayout = h5py.VirtualLayout(shape=(total, *shape), dtype=dtype)
            offset = 0
            for path, n in zip(shard_files, counts, strict=True):
                if n:  # an empty selection cannot be mapped
                    vlayout[offset : offset + n] = h5py.VirtualSource(
                        Path(path).name, name, shape=(n, *shape), dtype=dtype
                    )
                offset += n
            h5.create_virtual_dataset(name, vlayout)
        for key, value in {**file_attrs, **(attrs or {})}.items():
            h5.attrs[key] = value
        h5.attrs[SHARD_FILES_ATTR] = json.dumps([Path(p).name for p in shard_files])
        h5.attrs["shard_sizes"] = json.dumps(counts)
    return total


def cache_files(path: Path | str) -> list[Path]:
    """The files holding a cache's samples: the shards of a sharded index, else the file itself.

    Raises FileNotFoundError naming the cache and the missing shard (HDF5 would silently read a
    missing shard's samples as zeros).
    """
    path = Path(path)
    with h5py.File(path, "r") as h5:
        names = json.loads(h5.attrs[SHARD_FILES_ATTR]) if SHARD_FILES_ATTR in h5.attrs else None
    if names is None:
        return [path]
    files = [path.parent / name for name in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"cache {path}: shard files missing: {missing}")
    return files


def cache_samples(
    path: str | Path, names: tuple[str, ...], indices: Iterable[int] | None = None, stop: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Stream samples of a cache.h5, only the datasets in `names` (see cache_layout): every sample in
    order, the first `stop`, or those at `indices`."""
    with h5py.File(path, "r") as h5:
        count = h5["image"].shape[0]
        order = indices if indices is not None else range(count if stop is None else min(stop, count))
        for i in order:
            yield {name: h5[name][int(i)] for name in names}


def cache_size(path: str | Path) -> int:
    """Number of samples in a cache.h5."""
    with h5py.File(path, "r") as h5:
        return int(h5["image"].shape[0])


def cache_ids(path: str | Path) -> tuple[np.ndarray, int]:
    """Instance ids (N,) of a cache.h5 and its crop size S."""
    with h5py.File(path, "r") as h5:
        return h5["instance_id"][:], int(h5["image"].shape[1])
