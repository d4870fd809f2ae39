"""Named COCO-format datasets ([dataset.NAME] sections): given or estimated keypoints, training on a list."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import BuildCache, COCOPersons, TrainModel
from pipeline.lib.annotations import PoseCheck, pose_problem
from pipeline.lib.records import read_records, record_mask
from pipeline.persons import coco_sources, dataset_names, parse_dataset_split, persons_task
from tests.conftest import SAMPLE, build

VAL_ANNOTATIONS = "annotations/person_keypoints_val2017.json"


def _section(root: Path, annotations: str, keypoints: str) -> dict[str, object]:
    return {"root": root, "annotations": annotations, "images": "val2017", "keypoints": keypoints}


def test_a_named_dataset_with_given_keypoints_reads_like_coco(luigi_config) -> None:
    luigi_config({"dataset.mine": _section(SAMPLE / "coco", VAL_ANNOTATIONS, "given")})
    assert "mine" in dataset_names() and coco_sources()["mine"].keypoints == "given"
    mine, coco = COCOPersons(dataset="mine", split="x"), COCOPersons(dataset="coco", split="val")
    assert build(mine, coco)
    ours = list(read_records(Path(mine.output()["records"].path)))
    theirs = list(read_records(Path(coco.output()["records"].path)))
    assert [r["instance_id"] for r in ours] == [r["instance_id"] for r in theirs]
    assert {r["dataset"] for r in ours} == {"mine"} and ours[0]["keypoints"] == theirs[0]["keypoints"]
    assert mine.work_dir() != coco.work_dir()


def test_a_dataset_without_keypoints_gets_them_estimated_once_and_checked_on_its_mask(luigi_config, tmp_path):
    data = json.loads((SAMPLE / "coco" / VAL_ANNOTATIONS).read_text())
    for ann in data["annotations"]:
        ann["keypoints"], ann["num_keypoints"] = [0] * 51, 0
    (tmp_path / "ann.json").write_text(json.dumps(data))
    shutil.copytree(SAMPLE / "coco" / "val2017", tmp_path / "val2017")
    luigi_config({"dataset.nokps": _section(tmp_path, "ann.json", "estimate")})
    task = BuildCache(dataset="nokps", split="train")
    assert build(task)
    persons = task.requires()
    summary = json.loads(Path(persons.output()["summary"].path).read_text())
    records = list(read_records(Path(persons.output()["records"].path)))
    assert summary["keypoints"] == "estimate" and summary["kept"] == len(records) >= 15
    # every instance is accounted for: kept, or skipped under a named reason
    assert set(summary["skipped"]) <= {"iscrowd", "too_small", "pose_not_found", "pose_off_mask", "too_few_keypoints"}
    assert summary["kept"] + summary["skipped_total"] == len(data["annotations"])
    check = PoseCheck()
    for record in records:
        assert record["keypoints_source"] == "estimated"
        kps = np.asarray(record["keypoints"], np.float32).reshape(17, 3)
        assert pose_problem(kps, record_mask(record, tmp_path), check) is None
    cache = json.loads(Path(task.output()["summary"].path).read_text())
    assert cache["cached"] == len(records)
    # the estimator's settings name the records' folder: a changed [pose] value re-estimates
    before = persons.work_dir()
    luigi_config({"pose": {"vis_threshold": 0.9}})
    assert persons_task("nokps", "train").work_dir() != before


def test_bad_dataset_sections_and_names_are_clear_errors(luigi_config) -> None:
    luigi_config({"dataset.typo": {"root": "x", "annotation": "a.json", "images": "i"}})
    with pytest.raises(ValueError, match=r"\[dataset.typo\]: unknown keys \['annotation'\], missing keys"):
        coco_sources()


def test_an_unknown_keypoint_mode_is_a_clear_error(luigi_config) -> None:
    luigi_config({"dataset.odd": {"root": "x", "annotations": "a.json", "images": "i", "keypoints": "maybe"}})
    with pytest.raises(ValueError, match="keypoints must be one of"):
        coco_sources()


def test_unknown_dataset_names_the_known_ones(luigi_config) -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; known: \['coco', 'ochuman', 'voc'\]"):
        BuildCache(dataset="nope", split="train").requires()
    assert parse_dataset_split("pennfudan") == ("pennfudan", "train")
    assert parse_dataset_split("coco/val") == ("coco", "val")
    with pytest.raises(ValueError, match="NAME or NAME/SPLIT"):
        parse_dataset_split("a/b/c")


def test_train_model_trains_on_a_list_of_datasets(luigi_config) -> None:
    luigi_config({"dataset.mine": _section(SAMPLE / "coco", VAL_ANNOTATIONS, "given")})
    task = TrainModel(train_on=["coco/train", "mine"], validate_on=["ochuman/val"])
    required = task.requires()
    assert [(t.dataset, t.split) for t in required["train"]] == [("coco", "train"), ("mine", "train")]
    assert [(t.dataset, t.split) for t in required["val"]] == [("ochuman", "val")]
    assert task.work_dir() != TrainModel().work_dir()
