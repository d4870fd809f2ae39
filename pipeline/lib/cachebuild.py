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
    photo_jobs(records, people)                         consecutive records in jobs, a photo's people together
    build_job(job)                                      pool worker: one job -> its SampleResults
    SampleSlots(cfg, slots, people)                     shared memory for the crops of the jobs in flight
    CacheWriter(h5, cfg, expected)                      appends samples, each written as whole chunks
    write_shard_index(target, shard_files)              cache.h5 as virtual datasets over shards
    cache_files(path)                                   the files holding a cache's samples
    cache_samples(path, names, indices, stop)           samples, only the datasets named
    cache_ids(path) / cache_size(path)                  instance ids and crop size / sample count

BuildCache streams records through a process pool with a bounded number of records in flight.
A job is a run of consecutive records (persons.jsonl lists a photo's people together), so a photo
is decoded once for all its people; results come back in record order, so the cache is the same,
byte for byte, whatever the pool size. Workers leave the crop-size arrays in shared memory (a
slot per job in flight) rather than pickle them through the pool's pipe. Each sample is written
as whole chunks of the one-sample-per-chunk datasets that readers index at random (the scalars a
chunk of 4096 at a time), so memory stays flat whatever the split size. A split can be written as
N shard files (each a contiguous range of persons.jsonl) plus an index ``cache.h5`` whose
datasets are HDF5 virtual datasets over the shards: readers open the index as one ordinary file,
with the samples in persons.jsonl order exactly as an unsharded build.
The training reader (models/dataset.CacheDataset) reads the same layout on the science side.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import multiprocessing as mp
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby, islice
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


# A job holds at most this many records: enough to amortise a job's pickling and scheduling,
# few enough that the window keeps several jobs in flight per worker.
MAX_JOB_PEOPLE = 8
# The crop-size arrays (uint8, ~0.34 MB a sample at 256 px): pool workers hand them over in shared
# memory, not through the pool's pipe, whose pickling and unpickling cost more than writing them.
SHARED_NAMES = ("image", "mask", "posemap", "prior")


class SampleSlots:
    """Shared memory for the crop-size arrays of the samples in flight, one slot per job in flight.

    An anonymous shared mmap made before the pool forks, so every worker maps the same pages.
    Record k of the job in slot s keeps its SHARED_NAMES arrays at ``arrays(s, k)``; the main
    process reuses a slot only after it has written that slot's samples (build_cache_file checks).
    """

    def __init__(self, cfg: CropConfig, slots: int, people: int) -> None:
        layout = cache_layout(cfg)
        self.fields = [(name, layout[name][0], np.dtype(layout[name][1])) for name in SHARED_NAMES]
        self.record_bytes = sum(int(np.prod(shape)) * dtype.itemsize for _, shape, dtype in self.fields)
        self.slots, self.people = slots, people
        self.buffer = mmap.mmap(-1, max(1, slots * people * self.record_bytes))

    def arrays(self, slot: int, k: int) -> dict[str, np.ndarray]:
        """Record k of `slot`: name -> its array (a view of the shared memory), in its cache shape."""
        offset = (slot * self.people + k) * self.record_bytes
        views = {}
        for name, shape, dtype in self.fields:
            count = int(np.prod(shape))
            views[name] = np.frombuffer(self.buffer, dtype, count, offset).reshape(shape)
            offset += count * dtype.itemsize
        return views


_WORKER_SLOTS: SampleSlots | None = None  # a pool worker's view of its build's SampleSlots


def _attach_slots(slots: SampleSlots) -> None:
    global _WORKER_SLOTS  # one per pool worker process, set by the pool's initializer
    _WORKER_SLOTS = slots


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
    if height is not None:
        check_size(image, height, width)
    return image


def check_size(image: np.ndarray, height: int, width: int | None) -> None:
    """RecordError("size_mismatch") unless the (H,W,3) image is `height` x `width`."""
    if image.shape[:2] != (height, width):
        raise RecordError(
            "size_mismatch", f"image is {image.shape[1]}x{image.shape[0]}, annotation says {width}x{height}"
        )


def read_photo(root: Path, record: dict) -> np.ndarray:
    """The record's photo (H,W,3) uint8 RGB, size unchecked; RecordError naming why it cannot be read."""
    try:
        path = resolve_inside(root, record["image"])
    except ValueError as e:
        raise RecordError("unsafe_path", str(e)) from None
    if not path.is_file():
        raise RecordError("missing_image", "image file not found")
    return decode_image(path)


def record_problem(index: int, record: dict, error: Exception) -> SampleResult:
    """The result of a record that could not become a sample: reason, file, record and detail."""
    reason = error.reason if isinstance(error, RecordError) else "sample_error"
    problem = {"reason": reason, "file": record.get("image"), "record": record.get("instance_id"), "detail": str(error)}
    return SampleResult(index, None, problem)


def build_sample(index: int, record: dict, photo: np.ndarray | Exception, root: Path, cfg: CropConfig) -> SampleResult:
    """One record and its decoded photo (H,W,3) uint8 RGB, or the error reading it -> its sample or problem."""
    if isinstance(photo, Exception):
        return record_problem(index, record, photo)
    try:
        check_size(photo, record["height"], record["width"])
        mask = record_mask(record, root)
        sample = person_sample(photo, mask, np.asarray(record["keypoints"], np.float32), record["bbox"], cfg)
    except Exception as e:  # noqa: BLE001 - any failure of one record is reported, the batch goes on
        return record_problem(index, record, e)
    sample["image_id"] = np.int64(record["image_id"])
    sample["instance_id"] = np.int64(record["instance_id"])
    sample["source"] = record["dataset"]
    return SampleResult(index, sample, None)


def build_job(args: tuple[list[tuple[int, dict]], str, CropConfig, int | None]) -> list[SampleResult]:
    """Pool worker: (index, record) pairs -> their results in the same order; consecutive records of
    one photo share one decode (a photo that cannot be read is each of its records' problem).

    With a slot (pool workers), record k's SHARED_NAMES arrays go to ``SampleSlots.arrays(slot, k)``
    and are None in the returned sample.
    """
    records, root_str, cfg, slot = args
    root = Path(root_str)
    results: list[SampleResult] = []
    key: object = object()  # never a record's image
    photo: np.ndarray | Exception | None = None
    for k, (index, record) in enumerate(records):
        if record.get("image") != key:
            key = record.get("image")
            try:
                photo = read_photo(root, record)
            except Exception as e:  # noqa: BLE001 - reported per record by build_sample
                photo = e
        result = build_sample(index, record, photo, root, cfg)
        if slot is not None and result.sample is not None:
            if _WORKER_SLOTS is None:
                raise RuntimeError("build_job with a slot runs only in a pool made by build_cache_file")
            for name, view in _WORKER_SLOTS.arrays(slot, k).items():
                value = result.sample[name]
                if np.shape(value) != view.shape:  # a copy into the view would broadcast
                    raise ValueError(f"sample {name!r} has shape {np.shape(value)}, the cache holds {view.shape}")
                view[...] = value
                result.sample[name] = None
        results.append(result)
    return results


def photo_jobs(records: Iterable[tuple[int, dict]], people: int) -> Iterator[list[tuple[int, dict]]]:
    """(index, record) pairs -> jobs of at most `people` consecutive records, in order.

    Consecutive records of one photo stay in one job (a photo with more than `people` is split), so
    that the photo is decoded once; lazy, so memory stays bounded by one job.
    """
    people = max(1, people)
    job: list[tuple[int, dict]] = []
    for _, run in groupby(records, key=lambda pair: pair[1].get("image")):
        while piece := list(islice(run, people)):
            if len(job) + len(piece) > people:
                yield job
                job = []
            job.extend(piece)
    if job:
        yield job


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
    # Jobs small enough that the window holds two per worker, so no worker waits on the main process.
    people = max(1, min(MAX_JOB_PEOPLE, window // (2 * max(processes, 1))))
    in_flight = max(window // people, processes)
    # bounded_imap takes job j once jobs up to j - in_flight are consumed, so in_flight slots suffice
    slots = SampleSlots(cfg, in_flight, people) if processes > 1 else None
    jobs_written = 0

    def jobs() -> Iterator[tuple[list[tuple[int, dict]], str, CropConfig, int | None]]:
        records = enumerate(read_records(records_path, start, stop), start)
        for j, job in enumerate(photo_jobs(records, people)):
            if slots is None:
                yield job, str(root), cfg, None
                continue
            if j - slots.slots >= jobs_written:  # never hand out a slot whose samples are not written yet
                raise RuntimeError(f"job {j}: its slot's previous job {j - slots.slots} is not written yet")
            yield job, str(root), cfg, j % slots.slots

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(target))
        if slots is not None:  # forked before the HDF5 file is opened: workers never inherit its handle
            pool = stack.enter_context(mp.get_context("fork").Pool(processes, _attach_slots, (slots,)))
            batches = bounded_imap(pool, build_job, jobs(), in_flight)
        else:
            batches = map(build_job, jobs())
        h5 = stack.enter_context(h5py.File(tmp, "w"))
        writer = CacheWriter(h5, cfg, total)
        done = 0
        for j, batch in enumerate(batches):
            for k, result in enumerate(batch):
                done += 1
                if result.sample is not None:
                    if slots is not None:
                        result.sample.update(slots.arrays(j % slots.slots, k))
                    writer.append(result.sample)
                else:
                    skipped[result.problem["reason"]] += 1
                    if len(problems) < max_problems:
                        problems.append(result.problem)
                if progress is not None:
                    progress(done, total)
            jobs_written += 1
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
