"""The HDF5 cache: BuildCache (and its CacheShard tasks) turn persons.jsonl into cache.h5.

BuildCache writes ``cache.h5``; with ``shards`` > 1 it has CacheShard tasks (which several workers
build in parallel) write ``cache-00000-of-0000N.h5`` ... beside it and makes ``cache.h5`` an index
of virtual datasets over them, so that every reader opens ``cache.h5`` unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import luigi
from tqdm import tqdm

from pipeline import config
from pipeline.core import PoseMaskTask
from pipeline.lib.cachebuild import build_cache_file, merge_shard_summaries, shard_range
from pipeline.lib.cachefile import cache_files, shard_file_name, write_shard_index
from pipeline.lib.files import write_json
from pipeline.lib.records import count_records
from pipeline.persons import COCOPersons, VOCPersons, dataset_root, persons_task


def cache_paths(cache: luigi.Task | dict | luigi.LocalTarget | str | Path) -> list[str]:
    """The files that hold a cache's samples, in sample order: ``[cache.h5]``, or its shard files.

    `cache`: a BuildCache task, its output() dict, the ``"cache"`` target, or a path. Every path
    opens as a cache file (CacheDataset reads the list as one dataset); for a sharded cache,
    ``cache.h5`` itself also reads as the whole split. FileNotFoundError names a missing shard.
    """
    if isinstance(cache, luigi.Task):
        cache = cache.output()
    if isinstance(cache, dict):
        cache = cache["cache"]
    if isinstance(cache, luigi.LocalTarget):
        cache = cache.path
    return [str(p) for p in cache_files(Path(cache))]


def cache_build_settings() -> dict[str, int]:
    settings = config.cache()
    return {"processes": settings.processes, "window": settings.window}


def build_range(
    task: PoseMaskTask,
    records_path: Path,
    root: Path,
    target: Path,
    start: int,
    stop: int | None,
    attrs: dict,
    label: str,
) -> dict:
    """build_cache_file over records start .. stop-1 (stop None: to the end) with a tqdm bar and the
    task's Luigi progress; returns the cache file's summary."""
    total = (stop if stop is not None else count_records(records_path)) - start
    with tqdm(total=total, desc=label, unit="person") as bar:

        def progress(done: int, count: int) -> None:
            bar.update(1)
            if done % 64 == 0 or done == count:
                task.report_progress(done / max(count, 1), f"{label}: {done}/{count} persons cached")

        return build_cache_file(
            records_path,
            root,
            target,
            config.crop().to_crop_config(),
            **cache_build_settings(),
            start=start,
            stop=stop,
            attrs=attrs,
            progress=progress,
        )


class BuildCache(PoseMaskTask):
    """persons.jsonl -> cache.h5 (crops, masks, pose maps, priors, joints, affines, ids) + summary.json.

    shards > 1: CacheShard tasks write contiguous ranges of persons.jsonl to shard files beside
    cache.h5 (dynamic dependencies: ``--workers N`` builds N at once) and cache.h5 becomes an index
    of HDF5 virtual datasets over them, with the same samples in the same order as shards = 1. The
    shard count does not change what the cache holds, so it is not part of the output folder's name.
    """

    dataset = luigi.Parameter(default="coco", description="coco | ochuman | voc | a [dataset.NAME] section")
    split = luigi.Parameter(default="val")
    shards = luigi.IntParameter(
        default=1, significant=False, description="shard files written by parallel CacheShard tasks; 1 = one cache.h5"
    )
    configs = (config.crop,)

    def requires(self) -> COCOPersons | VOCPersons:
        return persons_task(self.dataset, self.split)

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"cache": self.target("cache.h5"), "summary": self.target("summary.json")}

    def complete(self) -> bool:
        """Done when cache.h5 and the summary exist and, for a sharded cache, every shard file too."""
        if not super().complete():
            return False
        try:
            cache_files(Path(self.output()["cache"].path))
        except (FileNotFoundError, OSError):
            return False
        return True

    def dataset_root(self) -> Path:
        return Path(self.requires().root or dataset_root(self.dataset))

    def run(self) -> Iterator[list[CacheShard]]:  # a generator: shards are dynamic dependencies
        if self.shards < 1:
            raise ValueError(f"BuildCache shards must be >= 1, got {self.shards}")
        cfg = config.crop().to_crop_config()
        target = Path(self.output()["cache"].path)
        if self.shards == 1:
            records_path = Path(self.input()["records"].path)
            attrs = {"dataset": self.dataset, "split": self.split}
            label = f"cache {self.dataset}/{self.split}"
            summary = build_range(self, records_path, self.dataset_root(), target, 0, None, attrs, label)
            write_json(
                self.output()["summary"].path,
                {"dataset": self.dataset, "split": self.split, **summary, "shards": 1, "cache": str(target)},
            )
            return
        shard_tasks = [
            CacheShard(dataset=self.dataset, split=self.split, shard=k, shards=self.shards) for k in range(self.shards)
        ]
        yield shard_tasks
        shard_summaries = [json.loads(Path(t.output()["summary"].path).read_text()) for t in shard_tasks]
        shard_paths = [Path(t.output()["cache"].path) for t in shard_tasks]
        count = write_shard_index(target, shard_paths, {"dataset": self.dataset, "split": self.split})
        summary = merge_shard_summaries(shard_summaries, count, cfg)
        summary.update(
            dataset=self.dataset,
            split=self.split,
            cache=str(target),
            shards=self.shards,
            shard_files=[p.name for p in shard_paths],
        )
        write_json(self.output()["summary"].path, summary)


class CacheShard(PoseMaskTask):
    """Shard `shard` of `shards` of a split's cache: a contiguous range of persons.jsonl -> one shard file.

    Written into its BuildCache's folder (``cache-00000-of-00004.h5`` + ``summary-00000-of-00004.json``).
    """

    dataset = luigi.Parameter(default="coco", description="coco | ochuman | voc | a [dataset.NAME] section")
    split = luigi.Parameter(default="val")
    shard = luigi.IntParameter(description="0 .. shards-1")
    shards = luigi.IntParameter()
    configs = (config.crop,)

    def requires(self) -> COCOPersons | VOCPersons:
        return persons_task(self.dataset, self.split)

    def output(self) -> dict[str, luigi.LocalTarget]:
        folder = BuildCache(dataset=self.dataset, split=self.split).work_dir()
        name = shard_file_name(self.shard, self.shards)
        return {
            "cache": luigi.LocalTarget(str(folder / name)),
            "summary": luigi.LocalTarget(str(folder / name.replace("cache-", "summary-").replace(".h5", ".json"))),
        }

    def run(self) -> None:
        records_path = Path(self.input()["records"].path)
        start, stop = shard_range(count_records(records_path), self.shard, self.shards)
        label = f"cache {self.dataset}/{self.split} shard {self.shard + 1}/{self.shards}"
        root = BuildCache(dataset=self.dataset, split=self.split).dataset_root()
        attrs = {"dataset": self.dataset, "split": self.split, "shard": self.shard, "shards": self.shards}
        summary = build_range(self, records_path, root, Path(self.output()["cache"].path), start, stop, attrs, label)
        write_json(
            self.output()["summary"].path,
            {
                "dataset": self.dataset,
                "split": self.split,
                "shard": self.shard,
                "shards": self.shards,
                "start": start,
                "stop": stop,
                **summary,
            },
        )
