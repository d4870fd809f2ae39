"""Data stages: person records (COCOPersons, VOCPersons) and the HDF5 cache (BuildCache, CacheShard).

COCOPersons (dataset coco) requires DownloadCOCO and VOCPersons requires DownloadVOC on the same
root: an existing copy whose layout checks out is used as it is, otherwise it is downloaded.
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
from pipeline.cachebuild import (
    build_cache_file,
    cache_files,
    count_records,
    shard_file_name,
    shard_range,
    write_shard_index,
)
from pipeline.core import PoseMaskTask, atomic_path, write_json
from pipeline.download import DownloadCOCO, DownloadVOC
from pipeline.persons import Tally, coco_person_records, voc_person_records

COCO_DATASETS = {"coco": config.coco, "ochuman": config.ochuman}


def write_records(target: Path, records) -> None:
    """Stream records into a JSON-lines file atomically."""
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")


class COCOPersons(PoseMaskTask):
    """Person instances of a COCO-format dataset (COCO 2017 or OCHuman) -> persons.jsonl + summary.json."""

    dataset = luigi.ChoiceParameter(choices=list(COCO_DATASETS), default="coco")
    split = luigi.Parameter(default="val", description="train | val (COCO 2017), val | test (OCHuman)")
    root = luigi.Parameter(default="", description="dataset root; empty = [coco]/[ochuman] root in luigi.cfg")
    configs = (config.coco, config.ochuman, config.persons)

    def layout(self) -> tuple[Path, str, str]:
        section = COCO_DATASETS[self.dataset]()
        root = Path(self.root or section.root)
        return root, section.annotations.format(split=self.split), section.images.format(split=self.split)

    def requires(self) -> DownloadCOCO | list:
        """COCO 2017 comes from DownloadCOCO (an existing valid copy is used as is); OCHuman has no download."""
        return DownloadCOCO(root=str(self.layout()[0])) if self.dataset == "coco" else []

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"records": self.target("persons.jsonl"), "summary": self.target("summary.json")}

    def run(self) -> None:
        root, annotations, images = self.layout()
        tally = Tally()
        self.report_progress(0.0, f"reading {root / annotations}")
        records = coco_person_records(root, annotations, images, self.dataset, self.split,
                                      config.persons().filter(), tally)  # fmt: skip
        write_records(Path(self.output()["records"].path), tqdm(records, desc=f"persons {self.dataset}/{self.split}"))
        summary = {"dataset": self.dataset, "split": self.split, "root": str(root), **tally.to_dict()}
        write_json(self.output()["summary"].path, summary)
        self.report_progress(1.0, f"{tally.kept} persons kept, {sum(tally.skipped.values())} skipped")


class VOCPersons(PoseMaskTask):
    """Person instances of VOC 2012 with keypoints estimated by the built-in pose estimator."""

    split = luigi.Parameter(default="train", description="an ImageSets/Segmentation list: train | val | trainval")
    root = luigi.Parameter(default="", description="folder holding VOCdevkit/; empty = [voc] root")
    configs = (config.voc, config.persons, config.voc_pose)

    def requires(self) -> DownloadVOC:
        return DownloadVOC(root=self.root or config.voc().root)

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"records": self.target("persons.jsonl"), "summary": self.target("summary.json")}

    def run(self) -> None:
        from models.pose import PoseEstimator  # mediapipe loads only where it is used

        root = Path(self.root or config.voc().root)
        pose_cfg = config.voc_pose()
        tally = Tally()
        with PoseEstimator(box_margin=pose_cfg.box_margin, vis_threshold=pose_cfg.visibility_threshold) as est:
            records = voc_person_records(
                root, self.split, lambda image, box: est.estimate(image, box), pose_cfg.check(),
                config.persons().filter(), tally,
                progress=lambda i, n: self.report_progress(i / max(n, 1), f"pose {i}/{n} images"),
            )  # fmt: skip
            write_records(Path(self.output()["records"].path), tqdm(records, desc=f"persons voc/{self.split}"))
        write_json(self.output()["summary"].path, {"dataset": "voc", "split": self.split, "root": str(root),
                                                   **tally.to_dict()})  # fmt: skip
        self.report_progress(1.0, f"{tally.kept} persons kept, {sum(tally.skipped.values())} skipped")


def persons_task(dataset: str, split: str) -> COCOPersons | VOCPersons:
    """The records task of a dataset name: coco, ochuman or voc."""
    if dataset == "voc":
        return VOCPersons(split=split)
    return COCOPersons(dataset=dataset, split=split)


def dataset_root(dataset: str) -> Path:
    return Path(config.voc().root if dataset == "voc" else COCO_DATASETS[dataset]().root)


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


class BuildCache(PoseMaskTask):
    """persons.jsonl -> cache.h5 (crops, masks, pose maps, priors, joints, affines, ids) + summary.json.

    shards > 1: CacheShard tasks write contiguous ranges of persons.jsonl to shard files beside
    cache.h5 (dynamic dependencies: ``--workers N`` builds N at once) and cache.h5 becomes an index
    of HDF5 virtual datasets over them, with the same samples in the same order as shards = 1. The
    shard count does not change what the cache holds, so it is not part of the output folder's name.
    """

    dataset = luigi.ChoiceParameter(choices=["coco", "ochuman", "voc"], default="coco")
    split = luigi.Parameter(default="val")
    shards = luigi.IntParameter(default=1, significant=False,
                                description="shard files written by parallel CacheShard tasks; 1 = one cache.h5")
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
            bar = tqdm(total=count_records(records_path), desc=f"cache {self.dataset}/{self.split}", unit="person")

            def progress(done: int, total: int) -> None:
                bar.update(1)
                if done % 64 == 0 or done == total:
                    self.report_progress(done / max(total, 1), f"{done}/{total} persons cached")

            summary = build_cache_file(records_path, self.dataset_root(), target, cfg, **cache_build_settings(),
                                       attrs={"dataset": self.dataset, "split": self.split},
                                       progress=progress)  # fmt: skip
            bar.close()
            write_json(self.output()["summary"].path, {"dataset": self.dataset, "split": self.split, **summary,
                                                       "shards": 1, "cache": str(target)})  # fmt: skip
            return
        shard_tasks = [CacheShard(dataset=self.dataset, split=self.split, shard=k, shards=self.shards)
                       for k in range(self.shards)]  # fmt: skip
        yield shard_tasks
        shard_summaries = [json.loads(Path(t.output()["summary"].path).read_text()) for t in shard_tasks]
        shard_paths = [Path(t.output()["cache"].path) for t in shard_tasks]
        count = write_shard_index(target, shard_paths, {"dataset": self.dataset, "split": self.split})
        skipped: dict[str, int] = {}
        for s in shard_summaries:
            for reason, n in s["skipped"].items():
                skipped[reason] = skipped.get(reason, 0) + n
        write_json(self.output()["summary"].path, {
            "dataset": self.dataset, "split": self.split, "records": sum(s["records"] for s in shard_summaries),
            "cached": count, "skipped": skipped, "skipped_total": sum(skipped.values()),
            "problems": [p for s in shard_summaries for p in s["problems"]],
            "crop_config": cfg.to_dict(), "cache": str(target), "shards": self.shards,
            "shard_files": [p.name for p in shard_paths], "shard_cached": [s["cached"] for s in shard_summaries],
        })  # fmt: skip


class CacheShard(PoseMaskTask):
    """Shard `shard` of `shards` of a split's cache: a contiguous range of persons.jsonl -> one shard file.

    Written into its BuildCache's folder (``cache-00000-of-00004.h5`` + ``summary-00000-of-00004.json``).
    """

    dataset = luigi.ChoiceParameter(choices=["coco", "ochuman", "voc"], default="coco")
    split = luigi.Parameter(default="val")
    shard = luigi.IntParameter(description="0 .. shards-1")
    shards = luigi.IntParameter()
    configs = (config.crop,)

    def requires(self) -> COCOPersons | VOCPersons:
        return persons_task(self.dataset, self.split)

    def output(self) -> dict[str, luigi.LocalTarget]:
        folder = BuildCache(dataset=self.dataset, split=self.split).work_dir()
        name = shard_file_name(self.shard, self.shards)
        return {"cache": luigi.LocalTarget(str(folder / name)),
                "summary": luigi.LocalTarget(str(folder / name.replace("cache-", "summary-").replace(".h5", ".json")))}

    def run(self) -> None:
        cfg = config.crop().to_crop_config()
        records_path = Path(self.input()["records"].path)
        start, stop = shard_range(count_records(records_path), self.shard, self.shards)
        label = f"cache {self.dataset}/{self.split} shard {self.shard + 1}/{self.shards}"

        def progress(done: int, total: int) -> None:
            if done % 64 == 0 or done == total:
                self.report_progress(done / max(total, 1), f"{label}: {done}/{total} persons")

        root = BuildCache(dataset=self.dataset, split=self.split).dataset_root()
        summary = build_cache_file(records_path, root, Path(self.output()["cache"].path), cfg,
                                   **cache_build_settings(), start=start, stop=stop, progress=progress,
                                   attrs={"dataset": self.dataset, "split": self.split, "shard": self.shard,
                                          "shards": self.shards})  # fmt: skip
        write_json(self.output()["summary"].path, {"dataset": self.dataset, "split": self.split, "shard": self.shard,
                                                   "shards": self.shards, "start": start, "stop": stop,
                                                   **summary})  # fmt: skip
