"""Data stages: person records (COCOPersons, VOCPersons) and the HDF5 cache (BuildCache)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import h5py
import luigi
from tqdm import tqdm

from pipeline import config
from pipeline.cachebuild import CacheWriter, build_one, read_records, windows
from pipeline.core import PoseMaskTask, atomic_path, write_json
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


class BuildCache(PoseMaskTask):
    """persons.jsonl -> cache.h5 (crops, masks, pose maps, priors, joints, affines, ids) + summary.json."""

    dataset = luigi.ChoiceParameter(choices=["coco", "ochuman", "voc"], default="coco")
    split = luigi.Parameter(default="val")
    configs = (config.crop,)

    def requires(self) -> COCOPersons | VOCPersons:
        return persons_task(self.dataset, self.split)

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"cache": self.target("cache.h5"), "summary": self.target("summary.json")}

    def run(self) -> None:
        cfg = config.crop().to_crop_config()
        settings = config.cache()
        upstream = self.input()
        root = Path(self.requires().root or dataset_root(self.dataset))
        records_path = Path(upstream["records"].path)
        with open(records_path, encoding="utf-8") as f:
            total = sum(1 for _ in f)
        problems: list[dict] = []
        target = Path(self.output()["cache"].path)
        bar = tqdm(total=total, desc=f"cache {self.dataset}/{self.split}", unit="person")
        ctx = mp.get_context("fork")
        with atomic_path(target) as tmp, ctx.Pool(settings.processes) as pool, h5py.File(tmp, "w") as h5:
            writer = CacheWriter(h5, cfg, total)
            done = 0
            for window in windows(enumerate(read_records(records_path)), settings.window):
                jobs = [(i, rec, str(root), cfg) for i, rec in window]
                for result in pool.imap(build_one, jobs):
                    if result.sample is not None:
                        writer.append(result.sample)
                    else:
                        problems.append(result.problem)
                        tqdm.write(f"skipped {result.problem}")
                done += len(window)
                bar.update(len(window))
                self.report_progress(done / max(total, 1), f"{done}/{total} persons cached")
            writer.close()
            h5.attrs["dataset"], h5.attrs["split"] = self.dataset, self.split
            count = writer.n
        bar.close()
        skipped: dict[str, int] = {}
        for p in problems:
            skipped[p["reason"]] = skipped.get(p["reason"], 0) + 1
        write_json(self.output()["summary"].path, {
            "dataset": self.dataset, "split": self.split, "records": total, "cached": count,
            "skipped": skipped, "skipped_total": len(problems), "problems": problems,
            "crop_config": cfg.to_dict(), "cache": os.fspath(target),
        })  # fmt: skip
