"""Evaluate one method on one evaluation set; EvaluateAll writes the report comparing every method."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import luigi

from pipeline import config
from pipeline.cache import BuildCache
from pipeline.core import PoseMaskTask
from pipeline.lib.files import atomic_path, write_json
from pipeline.lib.predictions import prediction_attrs
from pipeline.lib.records import read_records
from pipeline.lib.report import MethodFiles, Network, ReportInputs, SetFiles, write_report
from pipeline.lib.scoring import SCORE_FIELDS, score_predictions
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
        pred_path = self.input()["pred"]["pred"].path
        scores = score_predictions(
            records,
            cache_task.dataset_root(),
            self.input()["cache"]["cache"].path,
            pred_path,
            settings.threshold,
            settings.boundary_px,
            progress=lambda done, total: self.report_progress(done / max(total, 1), f"{done}/{total} scored"),
            desc=f"evaluate {self.method} {self.dataset}/{self.split}",
        )
        with atomic_path(self.output()["scores"].path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SCORE_FIELDS)
            writer.writeheader()
            writer.writerows(scores.rows)
        write_json(self.output()["results"].path, scores.results)
        attrs = prediction_attrs(pred_path)
        summary = scores.summary(dataset=self.dataset, split=self.split, method=self.method)
        summary.update(
            ms_per_image=float(attrs.get("ms_per_image", float("nan"))),
            device=attrs.get("device", ""),
            prediction=pred_path,
        )
        write_json(self.output()["summary"].path, summary)


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
