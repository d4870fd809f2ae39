"""cache.h5: person records turned into fixed-size training and evaluation samples.

Layout (`cache_layout`; S = [crop] size, one sample per chunk; attrs hold the crop config)::

    image        (N, S, S, 3) uint8    the person's crop, RGB
    mask         (N, S, S) uint8       ground truth at crop size (0/1)
    posemap      (N, S/2, S/2) uint8   Gaussian joints (N, 14, S/2, S/2 with per_joint_posemap)
    prior        (N, S, S) uint8       skeleton prior * 255
    joints       (N, 14, 3) float32    crop pixels (x, y, v)
    affine       (N, 2, 3) float32     image -> crop (paste_back inverts it)
    image_id, instance_id (N,) int64   source (N,) str      orig_size (N, 2) int32

    build_cache_file(records, root, target, cfg, ...)   records start .. stop-1 -> one file (atomic)
    write_shard_index(target, shard_files)              cache.h5 as virtual datasets over shards
    cache_files(path)                                   the files holding a cache's samples
    cache_samples(path, names, indices, stop)           samples, only the datasets named
    cache_ids(path) / cache_size(path)                  instance ids and crop size / sample count

BuildCache streams records through a process pool with a bounded number of records in flight and
appends the samples to one-sample-per-chunk HDF5 datasets, so memory stays flat whatever the split
size. A split can be written as N shard files (each a contiguous range of persons.jsonl) plus an
index ``cache.h5`` whose datasets are HDF5 virtual datasets over the shards: readers open the index
as one ordinary file, with the samples in persons.jsonl order exactly as an unsharded build.
The training reader (models/dataset.CacheDataset) reads the same layout on the science side.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from models.sample import CropConfig, person_sample
from pipeline.lib.files import atomic_path, resolve_inside
from pipeline.lib.images import read_rgb
from pipeline.lib.pools import bounded_imap
from pipeline.lib.records import RecordError, count_records, read_records, record_mask

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
    """Read an image as (H,W,3) uint8 RGB; RecordError when it cannot be decoded or its size is off."""
    image = read_rgb(path)
    if image is None:
        raise RecordError("corrupt_image", "cannot decode image (corrupt or not an image)")
    if height is not None and image.shape[:2] != (height, width):
        raise RecordError(
            "size_mismatch", f"image is {image.shape[1]}x{image.shape[0]}, annotation says {width}x{height}"
        )
    return image


def build_one(args: tuple[int, dict, str, CropConfig]) -> SampleResult:
    """Pool worker: one record -> one sample (or a problem naming file, record and reason)."""
    index, record, root_str, cfg = args
    root = Path(root_str)
    try:
        try:
            path = resolve_inside(root, record["image"])
        except ValueError as e:
            raise RecordError("unsafe_path", str(e)) from None
        if not path.is_file():
            raise RecordError("missing_image", "image file not found")
        image = decode_image(path, record["height"], record["width"])
        mask = record_mask(record, root)
        sample = person_sample(image, mask, np.asarray(record["keypoints"], np.float32), record["bbox"], cfg)
    except Exception as e:  # noqa: BLE001 - any failure of one record is reported, the batch goes on
        reason = e.reason if isinstance(e, RecordError) else "sample_error"
        return SampleResult(
            index,
            None,
            {"reason": reason, "file": record.get("image"), "record": record.get("instance_id"), "detail": str(e)},
        )
    sample["image_id"] = np.int64(record["image_id"])
    sample["instance_id"] = np.int64(record["instance_id"])
    sample["source"] = record["dataset"]
    return SampleResult(index, sample, None)


def shard_range(total: int, shard: int, shards: int) -> tuple[int, int]:
    """Records [start, stop) of shard `shard` of `shards`: contiguous, sizes differ by at most one.

    Contiguous ranges keep the concatenated shards in persons.jsonl order, so N shards read as
    one dataset hold the same samples in the same order as one unsharded cache.
    """
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: need shards >= 1 and 0 <= shard < shards")
    return total * shard // shards, total * (shard + 1) // shards


def shard_file_name(shard: int, shards: int) -> str:
    """``cache-00000-of-00004.h5``: the file of shard `shard` of `shards`."""
    return f"cache-{shard:05d}-of-{shards:05d}.h5"


class CacheWriter:
    """Appends samples to an open h5py.File in the cache layout (one sample per chunk)."""

    def __init__(self, h5: h5py.File, cfg: CropConfig, expected: int) -> None:
        self.h5, self.n = h5, 0
        layout = cache_layout(cfg)
        self.names = list(layout)
        for name, (shape, dtype) in layout.items():
            h5.create_dataset(
                name,
                shape=(expected, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(1, *shape) if shape else (min(max(expected, 1), 4096),),
            )
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


def build_cache_file(
    records_path: Path,
    root: Path,
    target: Path,
    cfg: CropConfig,
    *,
    processes: int = 2,
    window: int = 64,
    start: int = 0,
    stop: int | None = None,
    attrs: dict[str, object] | None = None,
    max_problems: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Records start .. stop-1 of persons.jsonl -> one cache file at `target` (atomic); returns a summary.

    processes: pool workers (fork; 1 = in this process); window: records in flight at most (memory
    ~ window x one sample, ~0.4 MB at 256 px); attrs: extra file attributes; max_problems: problems
    listed in the summary (all are counted); progress(done, total) after each record.
    Summary: records, cached, skipped {reason: n}, skipped_total, problems, crop_config, cache (file name).
    """
    total_all = count_records(records_path)
    stop = total_all if stop is None else min(stop, total_all)
    total = max(stop - start, 0)
    skipped: Counter = Counter()
    problems: list[dict] = []
    jobs = ((i, rec, str(root), cfg) for i, rec in enumerate(read_records(records_path, start, stop), start))
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(target))
        if processes > 1:  # forked before the HDF5 file is opened: workers never inherit its handle
            pool = stack.enter_context(mp.get_context("fork").Pool(processes))
            results = bounded_imap(pool, build_one, jobs, max(window, processes))
        else:
            results = map(build_one, jobs)
        h5 = stack.enter_context(h5py.File(tmp, "w"))
        writer = CacheWriter(h5, cfg, total)
        for done, result in enumerate(results, 1):
            if result.sample is not None:
                writer.append(result.sample)
            else:
                skipped[result.problem["reason"]] += 1
                if len(problems) < max_problems:
                    problems.append(result.problem)
            if progress is not None:
                progress(done, total)
        writer.close()
        for key, value in (attrs or {}).items():
            h5.attrs[key] = value
        h5.attrs["records"] = json.dumps([start, stop])
        cached = writer.n
    return {
        "records": total,
        "cached": cached,
        "skipped": dict(skipped),
        "skipped_total": sum(skipped.values()),
        "problems": problems,
        "crop_config": cfg.to_dict(),
        "cache": target.name,
    }


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


def merge_shard_summaries(summaries: list[dict], cached: int, cfg: CropConfig) -> dict:
    """One split's summary from its shards' summaries (records, skip reasons and problems added up)."""
    skipped: dict[str, int] = {}
    for summary in summaries:
        for reason, n in summary["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    return {
        "records": sum(s["records"] for s in summaries),
        "cached": cached,
        "skipped": skipped,
        "skipped_total": sum(skipped.values()),
        "problems": [p for s in summaries for p in s["problems"]],
        "crop_config": cfg.to_dict(),
        "shard_cached": [s["cached"] for s in summaries],
    }
