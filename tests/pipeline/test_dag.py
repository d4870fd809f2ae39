"""The whole DAG end to end on a tiny config, through Luigi's own entry point."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import luigi
import pytest
from luigi.task import flatten

from pipeline import EvaluateAll
from pipeline.evaluate import Evaluate
from tests.conftest import SAMPLE, build, restore_luigi_config, set_luigi_config

METHODS = [
    "prior",
    "grabcut",
    "slic_grabcut",
    "posefree",
    "unet-coco",
    "unet-coco+crf",
    "unet-coco-paper",
    "unet-voc",
    "unet-voc+crf",
]
EVAL_SETS = ["coco/val", "voc/val"]


def tiny_config(work: Path) -> dict[str, dict[str, object]]:
    """A configuration small enough to run the whole DAG in about a minute on 2 cores."""
    return {
        "work": {"root": work},
        "coco": {"root": SAMPLE / "coco"},
        "ochuman": {"root": SAMPLE / "ochuman"},
        "voc": {"root": SAMPLE / "voc"},
        "cache": {"processes": 2, "window": 16},
        "TrainModel": {"epochs": 2, "batch_size": 8, "base_channels": 4, "depth": 2, "num_workers": 0},
        "FineTune": {"epochs": 1, "batch_size": 4, "num_workers": 0},
        "TuneCRF": {"grid": json.dumps({"iterations": [3], "bilateral_sxy": [30, 60]}), "max_samples": 8},
        "EvaluateAll": {"eval_sets": json.dumps(EVAL_SETS), "methods": json.dumps(METHODS)},
    }


def all_tasks(task: luigi.Task) -> list[luigi.Task]:
    """Every task in the DAG below `task` (itself included), each once."""
    seen: dict[str, luigi.Task] = {}
    stack = [task]
    while stack:
        t = stack.pop()
        if t.task_id not in seen:
            seen[t.task_id] = t
            stack.extend(flatten(t.requires()))
    return list(seen.values())


def label(task: luigi.Task) -> str:
    """Task family, with Evaluate of a CRF method told apart."""
    crf = task.task_family == "Evaluate" and task.method.endswith("+crf")
    return task.task_family + ("+crf" if crf else "")


@pytest.fixture(scope="module")
def dag(tmp_path_factory: pytest.TempPathFactory):
    """Run EvaluateAll once for the module; yields the finished task."""
    work = tmp_path_factory.mktemp("dag") / "work"
    saved = set_luigi_config(tiny_config(work))
    try:
        task = EvaluateAll()
        assert build(task), "the whole DAG must succeed"
        yield task
    finally:
        restore_luigi_config(saved)


def test_report_files_and_one_iou_row_per_instance_and_method(dag):
    report = Path(dag.output().path)
    for name in ("report.md", "report.html", "iou.csv", "iou_coco_val.png", "overlays_voc_val.png"):
        assert (report / name).stat().st_size > 200, name
    md = (report / "report.md").read_text()
    for method in METHODS:
        assert f"| {method} |" in md
    with open(report / "iou.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for eval_set in EVAL_SETS:
        dataset, split = eval_set.split("/")
        cache = Evaluate(dataset=dataset, split=split, method="prior").input()["cache"]["cache"].path
        with h5py.File(cache, "r") as h5:
            instances = {int(i) for i in h5["instance_id"][:]}
        for method in METHODS:
            got = {int(r["instance_id"]) for r in rows if r["set"] == eval_set and r["method"] == method}
            assert got == instances, (eval_set, method)
    assert all(0.0 <= float(r["iou_full"]) <= 1.0 for r in rows)


def test_tuned_crf_is_never_worse_than_the_raw_network(dag):
    for task in all_tasks(dag):
        if task.task_family == "TuneCRF":
            crf = json.loads(Path(task.output()["crf"].path).read_text())
            assert crf["score"] >= crf["raw_score"]
            assert any(not row["params"]["enabled"] for row in crf["table"])


def test_finished_dag_reruns_as_a_no_op(dag):
    work = Path(dag.work_dir()).parents[1]
    files = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    assert build(EvaluateAll())
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()} == files  # nothing new, nothing rewritten


def test_changing_crf_iterations_reruns_only_what_depends_on_it(dag):
    before = {t.task_id: t.complete() for t in all_tasks(EvaluateAll())}
    assert all(before.values())
    grid = {"iterations": [4], "bilateral_sxy": [30, 60]}
    saved = set_luigi_config({"TuneCRF": {"grid": json.dumps(grid)}})
    try:
        stale = {label(t) for t in all_tasks(EvaluateAll()) if not t.complete()}
    finally:
        restore_luigi_config(saved)
    assert stale == {"TuneCRF", "RefineCRF", "Evaluate+crf", "EvaluateAll"}


def test_a_split_with_nobody_in_it_still_gives_a_report(luigi_config):
    luigi_config({"persons": {"min_area": 1e12}})
    task = EvaluateAll(eval_sets=["coco/val"], methods=["prior", "grabcut"])
    assert build(task)
    with open(Path(task.output().path) / "iou.csv", newline="") as f:
        assert list(csv.DictReader(f)) == []
    assert "| prior | 0 |" in (Path(task.output().path) / "report.md").read_text()


def test_the_graph_cut_and_deeplab_methods_run_as_stages_and_enter_the_report(luigi_config):
    methods = ["gmm_graphcut", "slic_gmm_graphcut", "coopcut", "deeplab"]
    task = EvaluateAll(eval_sets=["voc/val"], methods=methods)
    assert build(task)
    with open(Path(task.output().path) / "iou.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == set(methods)
    assert all(0.0 <= float(r["iou_full"]) <= 1.0 for r in rows)
    report = (Path(task.output().path) / "report.md").read_text()
    assert all(f"| {m} | 3 |" in report for m in methods)
