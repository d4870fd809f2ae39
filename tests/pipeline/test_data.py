"""COCOPersons / VOCPersons / BuildCache through Luigi, on the real sample and on broken copies of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from models.evaluation.visualize import grid, overlay
from pipeline import BuildCache, COCOPersons
from pipeline.lib.annotations import PersonFilter, Tally, coco_person_records
from pipeline.persons import VOCPersons
from tests.conftest import build

EXPECTED = {
    "image": ((256, 256, 3), np.uint8),
    "mask": ((256, 256), np.uint8),
    "posemap": ((128, 128), np.uint8),
    "prior": ((256, 256), np.uint8),
    "joints": ((14, 3), np.float32),
    "affine": ((2, 3), np.float32),
    "image_id": ((), np.int64),
    "instance_id": ((), np.int64),
    "orig_size": ((2,), np.int32),
}


def check_cache(path: Path, picture: Path) -> int:
    """Documented layout, chunked per sample; draws every sample; joints mostly on the mask."""
    with h5py.File(path, "r") as h5:
        n = h5["image"].shape[0]
        assert n > 0
        for name, (shape, dtype) in EXPECTED.items():
            assert h5[name].shape == (n, *shape), name
            assert h5[name].dtype == dtype, name
        assert h5["source"].shape == (n,)
        assert h5["image"].chunks == (1, 256, 256, 3)
        assert json.loads(h5.attrs["crop_config"])["size"] == 256
        prior = h5["prior"][:]
        assert prior.min() >= 1 and prior.max() <= 254
        tiles, on_mask, total = [], 0, 0
        kernel = np.ones((7, 7), np.uint8)
        for i in range(n):
            image, mask, joints = h5["image"][i], h5["mask"][i], h5["joints"][i]
            tiles.append(overlay(image, mask, joints))
            vis = joints[:, 2] > 0
            near = cv2.dilate(mask, kernel)
            xy = np.round(joints[vis, :2]).astype(int)
            on_mask += int(near[xy[:, 1], xy[:, 0]].sum())
            total += int(vis.sum())
        cv2.imwrite(str(picture), cv2.cvtColor(grid(tiles, 8), cv2.COLOR_RGB2BGR))
    assert picture.stat().st_size > 10_000
    assert on_mask / total >= 0.8, f"only {on_mask}/{total} visible joints fall on their mask"
    return n


def test_build_cache_coco_val_on_the_sample(luigi_config, tmp_path):
    task = BuildCache(dataset="coco", split="val")
    assert build(task)
    cache_path = Path(task.output()["cache"].path)
    n = check_cache(cache_path, tmp_path / "coco_val.png")
    summary = json.loads(Path(task.output()["summary"].path).read_text())
    assert summary["cached"] == n and summary["skipped_total"] == 0
    persons = json.loads(Path(task.input()["summary"].path).read_text())
    assert persons["kept"] == n and persons["skipped"]["too_few_keypoints"] >= 1
    # A finished DAG re-runs as a no-op: nothing is rewritten.
    mtime = cache_path.stat().st_mtime_ns
    assert task.complete() and build(BuildCache(dataset="coco", split="val"))
    assert cache_path.stat().st_mtime_ns == mtime


def test_changed_crop_parameter_moves_only_downstream_outputs(luigi_config):
    task = BuildCache(dataset="coco", split="val")
    cache_before, persons_before = task.work_dir(), task.requires().work_dir()
    luigi_config({"crop": {"margin": 0.3}})
    task = BuildCache(dataset="coco", split="val")
    assert task.work_dir() != cache_before
    assert task.requires().work_dir() == persons_before
    luigi_config({"persons": {"min_keypoints": 5}})
    assert BuildCache(dataset="coco", split="val").requires().work_dir() != persons_before


def broken_coco(sample: Path, tmp: Path) -> Path:
    """A copy of the val sample with a missing image, a corrupt JPEG, a truncated JPEG,
    a keypoint outside its image and a path that escapes the dataset root."""
    root = tmp / "coco"
    shutil.copytree(sample / "coco" / "val2017", root / "val2017")
    data = json.loads((sample / "coco/annotations/person_keypoints_val2017.json").read_text())
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        if not ann["iscrowd"] and ann["num_keypoints"] >= 8 and ann["area"] >= 4096:
            by_image.setdefault(ann["image_id"], []).append(ann)
    ids = sorted(by_image)
    images = {im["id"]: im for im in data["images"]}
    missing, corrupt, truncated, outside, escape = (images[i] for i in ids[:5])
    (root / "val2017" / missing["file_name"]).unlink()
    (root / "val2017" / corrupt["file_name"]).write_bytes(b"this is not a jpeg at all" * 10)
    jpg = (root / "val2017" / truncated["file_name"]).read_bytes()
    (root / "val2017" / truncated["file_name"]).write_bytes(jpg[: len(jpg) * 7 // 10])
    escape["file_name"] = "../../../../etc/passwd"
    by_image[outside["id"]][0]["keypoints"][0:3] = [outside["width"] + 50, 10, 2]
    # boxes that are not a person in the image: NaN, astronomically large, beside the image
    hostile = [a for anns in by_image.values() for a in anns if a["num_keypoints"] >= 8][-3:]
    hostile[0]["bbox"] = [float("nan"), 10.0, 50.0, 80.0]
    hostile[1]["bbox"] = [0.0, 0.0, 1e30, 1e30]
    hostile[2]["bbox"] = [-500.0, -500.0, 100.0, 100.0]
    (root / "annotations").mkdir()
    (root / "annotations/person_keypoints_val2017.json").write_text(json.dumps(data))
    return root


def test_bad_inputs_are_reported_skipped_and_counted(luigi_config, sample, tmp_path):
    root = broken_coco(sample, tmp_path)
    # a val-only copy: DownloadCOCO must accept it as is (no download attempt)
    luigi_config({"coco": {"root": root}, "DownloadConfig": {"coco_splits": '["val"]', "retries": 0}})
    task = BuildCache(dataset="coco", split="val")
    assert build(task), "the stage must complete despite bad records"
    persons = json.loads(Path(task.input()["summary"].path).read_text())
    assert persons["skipped"]["missing_image"] >= 1
    assert persons["skipped"]["unsafe_path"] >= 1
    assert persons["warnings"]["keypoint_outside_image"] == 1
    bad_boxes = [p for p in persons["problems"] if p["reason"] == "malformed_record" and "bbox" in p["detail"]]
    assert len(bad_boxes) == 3
    reasons = {(p["reason"], p["file"]) for p in persons["problems"]}
    assert any(r == "unsafe_path" and "etc/passwd" in f for r, f in reasons)
    summary = json.loads(Path(task.output()["summary"].path).read_text())
    assert summary["skipped"]["corrupt_image"] >= 2  # garbage bytes and the truncated JPEG
    for problem in summary["problems"]:
        assert problem["file"].startswith("val2017/") and problem["record"] and problem["detail"]
    with h5py.File(task.output()["cache"].path, "r") as h5:
        assert h5["image"].shape[0] == summary["cached"] > 0
    records = [json.loads(line) for line in Path(task.input()["records"].path).read_text().splitlines()]
    assert all(not r["image"].startswith("..") for r in records)


def test_malformed_annotation_json_names_the_file(sample, tmp_path):
    ann = tmp_path / "annotations" / "person_keypoints_val2017.json"
    ann.parent.mkdir()
    ann.write_text('{"images": [ {"id": 1,')
    with pytest.raises(ValueError, match=r"malformed annotation JSON in .*person_keypoints_val2017\.json"):
        list(
            coco_person_records(
                tmp_path, "annotations/person_keypoints_val2017.json", "val2017", "coco", "val", PersonFilter(), Tally()
            )
        )


def test_malformed_json_fails_the_task_with_its_name(luigi_config, tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    (root / "annotations/person_keypoints_val2017.json").write_text("[1, 2")
    luigi_config({"coco": {"root": root}})
    task = COCOPersons(dataset="coco", split="val")
    with pytest.raises(ValueError, match="malformed annotation JSON"):
        task.run()
    assert not Path(task.output()["records"].path).exists()  # nothing half-written


def test_ochuman_is_a_coco_format_dataset(luigi_config, tmp_path):
    task = BuildCache(dataset="ochuman", split="val")
    assert build(task)
    assert check_cache(Path(task.output()["cache"].path), tmp_path / "ochuman.png") >= 15


@pytest.mark.slow
def test_build_cache_voc_with_estimated_keypoints(luigi_config, tmp_path):
    task = BuildCache(dataset="voc", split="train")
    assert build(task)
    persons = json.loads(Path(task.input()["summary"].path).read_text())
    assert persons["warnings"]["image_without_person"] == 1  # 2007_000063: a dog and a chair
    n = check_cache(Path(task.output()["cache"].path), tmp_path / "voc.png")
    assert n == persons["kept"] >= 1
    assert isinstance(task.requires(), VOCPersons)


def test_annotation_without_a_usable_id_is_skipped_not_fatal(luigi_config, sample, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(sample / "coco" / "val2017", root / "val2017")
    data = json.loads((sample / "coco/annotations/person_keypoints_val2017.json").read_text())
    kept = [a for a in data["annotations"] if not a["iscrowd"] and a["num_keypoints"] >= 8 and a["area"] >= 4096]
    del kept[0]["id"]
    kept[1]["id"] = "abc"
    (root / "annotations").mkdir()
    (root / "annotations/person_keypoints_val2017.json").write_text(json.dumps(data))
    tally = Tally()
    records = list(
        coco_person_records(
            root, "annotations/person_keypoints_val2017.json", "val2017", "coco", "val", PersonFilter(), tally
        )
    )
    assert tally.skipped["malformed_record"] == 2
    assert len(records) == len(kept) - 2
