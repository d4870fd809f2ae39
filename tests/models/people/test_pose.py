"""Tests for models.people.pose: BlazePose -> COCO-17 on tiny arrays and on the real COCO sample."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.people.pose import BLAZEPOSE_TO_COCO17, COCO17_NAMES, PoseEstimator, context_region

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample" / "coco"
MIN_LABELLED_KEYPOINTS = 10
PCK_ALPHA = 0.2
# Ground-truth COCO keypoint indices of the torso diagonal used as PCK reference length.
L_SHOULDER, R_HIP = 5, 12


def load_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def estimator():
    with PoseEstimator() as pose:
        yield pose


@pytest.fixture(scope="module")
def val_instances() -> list[tuple[np.ndarray, dict]]:
    """(image, annotation) for every val person with >= 10 labelled keypoints."""
    coco = json.loads((SAMPLE / "annotations" / "person_keypoints_val2017.json").read_text())
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    images: dict[int, np.ndarray] = {}
    out = []
    for ann in coco["annotations"]:
        if ann["iscrowd"] or ann["num_keypoints"] < MIN_LABELLED_KEYPOINTS:
            continue
        if ann["image_id"] not in images:
            images[ann["image_id"]] = load_rgb(SAMPLE / "val2017" / files[ann["image_id"]])
        out.append((images[ann["image_id"]], ann))
    return out


def test_mapping_is_coco17() -> None:
    assert len(BLAZEPOSE_TO_COCO17) == len(COCO17_NAMES) == 17
    assert len(set(BLAZEPOSE_TO_COCO17)) == 17
    assert BLAZEPOSE_TO_COCO17[0] == 0  # nose
    assert BLAZEPOSE_TO_COCO17[COCO17_NAMES.index("l_shoulder")] == 11
    assert BLAZEPOSE_TO_COCO17[COCO17_NAMES.index("r_ankle")] == 28


def test_context_region_enlarges_and_clips() -> None:
    assert context_region((100, 100, 40, 80), (480, 640), 0.25) == (90, 80, 150, 200)
    assert context_region((0, 0, 40, 80), (100, 30), 0.25) == (0, 0, 30, 100)
    assert context_region(None, (48, 64), 0.25) == (0, 0, 64, 48)


@pytest.mark.parametrize("box", [(0, 0, 0, 10), (0, 0, 10, -1), (500, 500, 10, 10), (0, 0, np.nan, 5), (1, 2, 3)])
def test_context_region_rejects_bad_boxes(box) -> None:
    with pytest.raises(ValueError, match="box"):
        context_region(box, (100, 100), 0.25)


def test_rejects_bad_images(estimator: PoseEstimator) -> None:
    with pytest.raises(ValueError, match="uint8"):
        estimator.estimate(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        estimator.estimate(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        estimator.estimate(np.zeros((0, 32, 3), np.uint8))


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="vis_threshold"):
        PoseEstimator(vis_threshold=1.5)
    with pytest.raises(ValueError, match="box_margin"):
        PoseEstimator(box_margin=-0.1)


def test_blank_image_has_no_person(estimator: PoseEstimator) -> None:
    assert estimator.estimate(np.full((240, 320, 3), 127, np.uint8)) is None
    assert estimator.estimate(np.zeros((240, 320, 3), np.uint8), (10, 10, 100, 200)) is None


def test_whole_image_single_person(estimator: PoseEstimator, val_instances) -> None:
    """box=None on a one-person image finds that person: shape, dtype, range, accuracy."""
    image, ann = next((img, a) for img, a in val_instances if a["image_id"] == 785)
    keypoints = estimator.estimate(image)
    assert keypoints is not None
    assert keypoints.shape == (17, 3) and keypoints.dtype == np.float32
    height, width = image.shape[:2]
    present = keypoints[:, 2] > 0
    assert present.sum() >= 12
    assert set(np.unique(keypoints[:, 2])) <= {0.0, 1.0, 2.0}
    assert (keypoints[present, 0] >= 0).all() and (keypoints[present, 0] <= width - 1).all()
    assert (keypoints[present, 1] >= 0).all() and (keypoints[present, 1] <= height - 1).all()
    assert (keypoints[~present] == 0).all()
    gt = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
    both = present & (gt[:, 2] > 0)
    errors = np.linalg.norm(keypoints[both, :2] - gt[both, :2], axis=1)
    assert np.median(errors) < 0.05 * np.hypot(ann["bbox"][2], ann["bbox"][3])


def test_estimate_many_and_reopen(estimator: PoseEstimator, val_instances) -> None:
    image, ann = val_instances[0]
    results = estimator.estimate_many(image, [ann["bbox"], ann["bbox"]])
    assert len(results) == 2 and results[0] is not None
    np.testing.assert_array_equal(results[0], results[1])  # deterministic
    estimator.close()
    again = estimator.estimate(image, ann["bbox"])
    assert again is not None
    np.testing.assert_allclose(again, results[0], atol=1e-3)


def test_accuracy_on_coco_val_sample(estimator: PoseEstimator, val_instances) -> None:
    """PCK and pixel error against COCO ground truth over all labelled keypoints.

    A labelled keypoint that is not predicted (person not found, or v=0) counts as a miss.
    Measured on this sample (36 people, 490 labelled keypoints, margin 0.25): 32 people found,
    PCK@0.2 of the bbox diagonal 0.853, PCK@0.2 of the torso diagonal (l_shoulder-r_hip) 0.762,
    mean error of predicted keypoints 0.052 bbox diagonals (median 0.025).
    """
    assert len(val_instances) == 36
    found = 0
    hits_diag: list[bool] = []
    hits_torso: list[bool] = []
    norm_errors: list[float] = []
    for image, ann in val_instances:
        gt = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        labelled = gt[:, 2] > 0
        diag = float(np.hypot(ann["bbox"][2], ann["bbox"][3]))
        keypoints = estimator.estimate(image, ann["bbox"])
        if keypoints is None:
            errors = np.full(17, np.inf)
        else:
            found += 1
            errors = np.where(keypoints[:, 2] > 0, np.linalg.norm(keypoints[:, :2] - gt[:, :2], axis=1), np.inf)
        errors = errors[labelled]
        hits_diag += list(errors <= PCK_ALPHA * diag)
        if gt[L_SHOULDER, 2] > 0 and gt[R_HIP, 2] > 0:
            torso = float(np.linalg.norm(gt[L_SHOULDER, :2] - gt[R_HIP, :2]))
            hits_torso += list(errors <= PCK_ALPHA * torso)
        norm_errors += list(errors[np.isfinite(errors)] / diag)
    assert found >= 28
    assert np.mean(hits_diag) >= 0.70
    assert np.mean(hits_torso) >= 0.60
    assert np.mean(norm_errors) <= 0.08
