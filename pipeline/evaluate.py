"""Evaluate one method on one evaluation set; EvaluateAll writes the report comparing every method."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import h5py
import luigi
from tqdm import tqdm

from models.evaluation import coco_mask_ap, score_instance
from models.masks import encode_rle
from models.metrics import summarize
from pipeline import config
from pipeline.cache import BuildCache
from pipeline.core import PoseMaskTask
from pipeline.lib.files import atomic_path, write_json
from pipeline.lib.predictions import prediction_attrs, stream_predictions
from pipeline.lib.records import read_records, record_ignore, record_mask
from pipeline.lib.report import SCORE_FIELDS as SCORE_COLUMNS
from pipeline.lib.report import MethodFiles, Network, ReportInputs, SetFiles, write_report
from pipeline.methods import REPORT_METHODS, prediction_task
from pipeline.settings import config_text
from pipeline.train import MODELS


class Evaluate(PoseMaskTask):
    """Per-instance IoU (crop and full size), boundary F and COCO mask AP of one method on one set."""

    dataset = luigi.Parameter(default="coco")
    split = luigi.Parameter(default="val")
    method = luigi.Parameter(default="grabcut")
    configs = (config.evaluation,)

    def requires(self) -> dict[str, luigi.Task]:
        return {
            "pred": prediction_task(self.method, self.dataset, self.split),
            "cache": BuildCache(dataset=self.dataset, split=self.split),
        }

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {
            "scores": self.target("scores.csv"),
            "results": self.target("results.json"),
            "summary": self.target("summary.json"),
        }

    def run(self) -> None:
        settings = config.evaluation()
        cache_task = self.requires()["cache"]
        records = {r["instance_id"]: r for r in read_records(Path(cache_task.input()["records"].path))}
        root = cache_task.dataset_root()
        pred_path = self.input()["pred"]["pred"].path
        attrs = prediction_attrs(pred_path)
        rows, results, gt_masks = [], [], []
        with h5py.File(self.input()["cache"]["cache"].path, "r") as h5:
            ids = h5["instance_id"][:]
            probs = stream_predictions(pred_path)
            for i in tqdm(range(len(ids)), desc=f"evaluate {self.method} {self.dataset}/{self.split}"):
                record = records[int(ids[i])]
                gt_full = record_mask(record, root)
                scores, full = score_instance(
                    next(probs),
                    h5["mask"][i],
                    h5["affine"][i],
                    gt_full,
                    settings.threshold,
                    settings.boundary_px,
                    record_ignore(record, root),
                )
                rows.append({"image_id": record["image_id"], "instance_id": record["instance_id"], **scores})
                gt_masks.append((record["image_id"], record["instance_id"], encode_rle(gt_full)))
                results.append(
                    {
                        "image_id": record["image_id"],
                        "category_id": 1,
                        "segmentation": encode_rle(full),
                        "score": scores["score"],
                        "instance_id": record["instance_id"],
                    }
                )
                if i % 16 == 0:
                    self.report_progress(i / len(ids), f"{i}/{len(ids)} scored")
        ap = coco_mask_ap(gt_masks, results)
        with atomic_path(self.output()["scores"].path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SCORE_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        write_json(self.output()["results"].path, results)
        write_json(
            self.output()["summary"].path,
            {
                "dataset": self.dataset,
                "split": self.split,
                "method": self.method,
                "instances": len(rows),
                "iou_crop": summarize([r["iou_crop"] for r in rows]),
                "iou_full": summarize([r["iou_full"] for r in rows]),
                "boundary_f": summarize([r["boundary_f"] for r in rows]),
                "mask_ap": ap,
                "ms_per_image": float(attrs.get("ms_per_image", float("nan"))),
                "device": attrs.get("device", ""),
                "prediction": self.input()["pred"]["pred"].path,
            },
        )


class EvaluateAll(PoseMaskTask):
    """Every method on every evaluation set -> report/ (report.md, report.html, iou.csv, plots)."""

    eval_sets = luigi.ListParameter(default=["coco/val", "ochuman/val", "voc/val"])
    methods = luigi.ListParameter(default=list(REPORT_METHODS))

    def requires(self) -> dict[str, Evaluate]:
        out = {}
        for eval_set in self.eval_sets:
            dataset, split = eval_set.split("/")
            for method in self.methods:
                out[f"{eval_set}:{method}"] = Evaluate(dataset=dataset, split=split, method=method)
        return out

    def output(self) -> luigi.LocalTarget:
        return self.target("report")

    def report_inputs(self) -> ReportInputs:
        """The finished files of every Evaluate (and its cache and trained networks), as plain paths."""
        tasks, sets = self.requires(), {}
        for eval_set in self.eval_sets:
            first = tasks[f"{eval_set}:{self.methods[0]}"]
            cache = first.requires()["cache"]
            sets[eval_set] = SetFiles(
                cache.output()["cache"].path, cache.input()["summary"].path, cache.output()["summary"].path
            )
            for method in self.methods:
                task = tasks[f"{eval_set}:{method}"]
                sets[eval_set].methods[method] = MethodFiles(
                    task.output()["summary"].path, task.output()["scores"].path, task.input()["pred"]["pred"].path
                )
        networks = []
        for name in [m for m in MODELS if m in self.methods]:
            task = MODELS[name]()
            curves = str(Path(task.work_dir()) / "history.png")
            networks.append(
                Network(
                    name,
                    task.task_family,
                    task.model_config().head,
                    task.output()["summary"].path,
                    curves,
                    task.output()["model"].path,
                )
            )
        return ReportInputs(sets, networks, config.evaluation().threshold, config_text())

    def run(self) -> None:
        target = Path(self.output().path)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            write_report(tmp, self.report_inputs())
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        print(f"\nposemask report: {target / 'report.html'}\n               {target / 'report.md'}")
