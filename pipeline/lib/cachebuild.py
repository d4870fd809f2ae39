"""cache.h5's samples: person records turned into fixed-size training and evaluation samples.

    build_cache_file(records, root, target, cfg, ...)   records start .. stop-1 -> one file (atomic)
    photo_jobs(records, people)                         consecutive records in jobs, a photo's people together
    build_job(job)                                      pool worker: one job -> its SampleResults
    SampleSlots(cfg, slots, people)                     shared memory for the crops of the jobs in flight
    shard_range(total, shard, shards)                   the records of one shard of a split
    merge_shard_summaries(summaries, cached, cfg)       one split's summary from its shards'
    decode_image / check_size / read_photo              a record's photo, or the RecordError saying why not

BuildCache streams records through a process pool with a bounded number of records in flight.
A job is a run of consecutive records (persons.jsonl lists a photo's people together), so a photo
is decoded once for all its people; results come back in record order, so the cache is the same,
byte for byte, whatever the pool size. Workers leave the crop-size arrays in shared memory (a
slot per job in flight) rather than pickle them through the pool's pipe. The file itself (layout,
writer, shard index, readers) is lib/cachefile.py's.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import multiprocessing as mp
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import groupby, islice
from pathlib import Path

import h5py
import numpy as np

from models.sample import CropConfig, person_sample
from pipeline.lib.cachefile import CacheWriter, cache_layout
from pipeline.lib.files import atomic_path, resolve_inside
from pipeline.lib.images import read_rgb
from pipeline.lib.pools import bounded_imap
from pipeline.lib.records import RecordError, count_records, read_records, record_mask

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
    # Jobs small enough that the window holds two per worker, so no worker waits on the main process.
    people = max(1, min(MAX_JOB_PEOPLE, window // (2 * max(processes, 1))))
    in_flight = max(window // people, processes)
    # bounded_imap takes job j once jobs up to j - in_flight are consumed, so in_flight slots suffice
    slots = SampleSlots(cfg, in_flight, people) if processes > 1 else None
    feed = _JobFeed(records_path, start, stop, root, cfg, people, slots)
    skips = _Skips(max_problems)

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(target))
        if slots is not None:  # forked before the HDF5 file is opened: workers never inherit its handle
            pool = stack.enter_context(mp.get_context("fork").Pool(processes, _attach_slots, (slots,)))
            batches = bounded_imap(pool, build_job, iter(feed), in_flight)
        else:
            batches = map(build_job, feed)
        h5 = stack.enter_context(h5py.File(tmp, "w"))
        writer = CacheWriter(h5, cfg, total)
        _write_batches(batches, writer, feed, skips, total, progress)
        writer.close()
        for key, value in (attrs or {}).items():
            h5.attrs[key] = value
        h5.attrs["records"] = json.dumps([start, stop])
        cached = writer.n
    return {
        "records": total,
        "cached": cached,
        "skipped": dict(skips.reasons),
        "skipped_total": sum(skips.reasons.values()),
        "problems": skips.problems,
        "crop_config": cfg.to_dict(),
        "cache": target.name,
    }


@dataclass
class _JobFeed:
    """The jobs of one build, in order, each as build_job's argument (with its slot in a pool).

    `written` counts the jobs whose samples the main process has written: a slot is handed out
    again only after that (a RuntimeError otherwise: its arrays would be overwritten unread).
    """

    records_path: Path
    start: int
    stop: int
    root: Path
    cfg: CropConfig
    people: int
    slots: SampleSlots | None
    written: int = 0

    def __iter__(self) -> Iterator[tuple[list[tuple[int, dict]], str, CropConfig, int | None]]:
        records = enumerate(read_records(self.records_path, self.start, self.stop), self.start)
        for j, job in enumerate(photo_jobs(records, self.people)):
            if self.slots is None:
                yield job, str(self.root), self.cfg, None
                continue
            if j - self.slots.slots >= self.written:  # never hand out a slot whose samples are not written yet
                raise RuntimeError(f"job {j}: its slot's previous job {j - self.slots.slots} is not written yet")
            yield job, str(self.root), self.cfg, j % self.slots.slots


@dataclass
class _Skips:
    """Records that could not become samples: counted by reason, the first `max_problems` listed."""

    max_problems: int
    reasons: Counter = field(default_factory=Counter)
    problems: list[dict] = field(default_factory=list)

    def add(self, problem: dict) -> None:
        self.reasons[problem["reason"]] += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)


def _write_batches(
    batches: Iterable[list[SampleResult]],
    writer: CacheWriter,
    feed: _JobFeed,
    skips: _Skips,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Append each job's samples in record order (taking the arrays a pool worker left in its slot),
    count its problems, report progress after each record."""
    done = 0
    for j, batch in enumerate(batches):
        for k, result in enumerate(batch):
            done += 1
            if result.sample is not None:
                if feed.slots is not None:
                    result.sample.update(feed.slots.arrays(j % feed.slots.slots, k))
                writer.append(result.sample)
            else:
                skips.add(result.problem)
            if progress is not None:
                progress(done, total)
        feed.written += 1


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
