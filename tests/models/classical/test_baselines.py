"""Tests of models/classical/baselines.py on synthetic blobs and on real crops of the COCO sample."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from models.classical.baselines import (
    grabcut_baseline,
    grabcut_from_mask,
    grabcut_person,
    prior_baseline,
    slic_grabcut_baseline,
)
from models.classical.crf import mean_iou
from models.sample.prior import prior_mask
from models.sample.skeleton import NUM_JOINTS, J, draw_skeleton

SYN_SIZE = 96
COCO_ROOT = Path(__file__).resolve().parents[3] / "data" / "sample" / "coco"
CROP_SIZE = 256
# COCO-17 keypoint index for each of the 14 joints; None = neck (mid-shoulders). Head = nose: crude.
COCO17_FOR_JOINT = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15)
COCO_L_SHOULDER, COCO_R_SHOULDER = 5, 6


def _synthetic_joints(size: int = SYN_SIZE) -> np.ndarray:
    """A standing stick figure filling most of a size x size image. Returns (14, 3) float32."""
    s = size / 96.0
    xy = {
        "head": (48, 10),
        "neck": (48, 22),
        "r_shoulder": (38, 24),
        "r_elbow": (32, 38),
        "r_wrist": (30, 50),
        "l_shoulder": (58, 24),
        "l_elbow": (64, 38),
        "l_wrist": (66, 50),
        "r_hip": (42, 52),
        "r_knee": (40, 68),
        "r_ankle": (40, 84),
        "l_hip": (54, 52),
        "l_knee": (56, 68),
        "l_ankle": (56, 84),
    }
    joints = np.zeros((NUM_JOINTS, 3), np.float32)
    for name, (x, y) in xy.items():
        joints[J[name]] = (x * s, y * s, 2)
    return joints


def _synthetic_person(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A reddish body (thick skeleton) on a noisy blue-green background.

    Returns image (96, 96, 3) uint8, joints (14, 3) float32, mask (96, 96) uint8.
    """
    rng = np.random.default_rng(seed)
    joints = _synthetic_joints()
    mask = draw_skeleton(joints, (SYN_SIZE, SYN_SIZE), 12)
    body, background = np.array([190, 60, 50]), np.array([40, 150, 120])
    image = np.where(mask[..., None] > 0, body, background).astype(np.float64)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    return image, joints, mask


SYN_KW = {"fg_thickness": 3, "bg_thickness": 30}


def test_grabcut_recovers_synthetic_person() -> None:
    for seed in range(2):
        image, joints, mask = _synthetic_person(seed)
        out = grabcut_baseline(image, joints, **SYN_KW)
        assert out.shape == mask.shape and out.dtype == np.float32
        assert set(np.unique(out)) <= {0.0, 1.0}
        assert mean_iou([out], [mask]) > 0.8


def test_slic_grabcut_recovers_synthetic_person() -> None:
    for seed in range(2):
        image, joints, mask = _synthetic_person(seed)
        out = slic_grabcut_baseline(image, joints, region_size=8, skeleton_thickness=3, bg_thickness=30)
        assert out.shape == mask.shape and out.dtype == np.float32
        assert mean_iou([out], [mask]) > 0.8


def test_grabcut_baselines_are_deterministic() -> None:
    image, joints, _ = _synthetic_person(3)
    first, second = (grabcut_baseline(image, joints, **SYN_KW) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    kw = {"region_size": 8, "bg_thickness": 30}
    first, second = (slic_grabcut_baseline(image, joints, **kw) for _ in range(2))
    np.testing.assert_array_equal(first, second)


def test_no_visible_joints_gives_empty_mask() -> None:
    image, _, _ = _synthetic_person(0)
    missing = np.zeros((NUM_JOINTS, 3), np.float32)
    assert not grabcut_baseline(image, missing, **SYN_KW).any()
    assert not slic_grabcut_baseline(image, missing, region_size=8).any()


def test_degenerate_seeds_fall_back_without_crashing() -> None:
    image, joints, _ = _synthetic_person(0)
    # The wide skeleton covers the whole image: band only, still a valid GrabCut problem.
    wide = grabcut_baseline(image, joints, fg_thickness=3, bg_thickness=500)
    assert wide.shape == (SYN_SIZE, SYN_SIZE)
    # Foreground covers everything: nothing for the background model -> the seeds come back.
    everything = grabcut_baseline(image, joints, fg_thickness=500, bg_thickness=600)
    assert everything.all()
    # One visible joint on a flat image: a disc seed, GrabCut must not raise.
    flat = np.full((SYN_SIZE, SYN_SIZE, 3), 128, np.uint8)
    one = np.zeros((NUM_JOINTS, 3), np.float32)
    one[J["neck"]] = (48, 48, 2)
    for out in (grabcut_baseline(flat, one, **SYN_KW), slic_grabcut_baseline(flat, one, region_size=8)):
        assert out.shape == (SYN_SIZE, SYN_SIZE) and out[48, 48] == 1.0
    # Fewer foreground pixels than GMM components: seeds returned unchanged.
    labels = np.full((SYN_SIZE, SYN_SIZE), cv2.GC_BGD, np.uint8)
    labels[0, :2] = cv2.GC_FGD
    out = grabcut_from_mask(image, labels, iterations=2)
    assert out.sum() == 2 and out[0, :2].all()


def test_bad_input_is_rejected() -> None:
    image, joints, _ = _synthetic_person(0)
    with pytest.raises(ValueError, match="joints must be"):
        grabcut_baseline(image, joints[:13])
    with pytest.raises(ValueError, match="image must be"):
        grabcut_baseline(image.astype(np.float32), joints)
    with pytest.raises(ValueError, match="bg_thickness"):
        grabcut_baseline(image, joints, fg_thickness=20, bg_thickness=10)
    with pytest.raises(ValueError, match="unknown algorithm"):
        slic_grabcut_baseline(image, joints, algorithm="WATERSHED")
    with pytest.raises(ValueError, match="float"):
        prior_baseline(np.full((4, 4), 200, np.uint8))


def test_prior_baseline_thresholds() -> None:
    prior = np.array([[0.1, 0.5], [0.7, 0.49]], np.float32)
    np.testing.assert_array_equal(prior_baseline(prior), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(prior_baseline(prior, threshold=0.6), [[0, 0], [1, 0]])
    assert prior_baseline(prior).dtype == np.float32


# --- real crops from the COCO sample ---------------------------------------------------------


def _joints14(keypoints: list[float]) -> np.ndarray:
    """COCO-17 keypoints (51,) -> (14, 3) float32; crude (head = nose, neck = mid-shoulders)."""
    kp = np.asarray(keypoints, np.float32).reshape(17, 3)
    joints = np.zeros((NUM_JOINTS, 3), np.float32)
    for j, c in enumerate(COCO17_FOR_JOINT):
        if c is not None:
            joints[j] = kp[c] if kp[c, 2] > 0 else 0
        elif kp[COCO_L_SHOULDER, 2] > 0 and kp[COCO_R_SHOULDER, 2] > 0:
            joints[j, :2] = (kp[COCO_L_SHOULDER, :2] + kp[COCO_R_SHOULDER, :2]) / 2
            joints[j, 2] = 2
    return joints


def _real_crops(count: int = 5, margin: float = 0.2) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Square bbox crops (enlarged by `margin`) of the first `count` well-annotated val persons.

    Returns a list of (image (256, 256, 3) uint8, joints (14, 3) float32, mask (256, 256) uint8).
    """
    coco = COCO(str(COCO_ROOT / "annotations" / "person_keypoints_val2017.json"))
    anns = sorted(
        (
            a
            for a in coco.loadAnns(coco.getAnnIds())
            if not a["iscrowd"] and a["num_keypoints"] >= 10 and a["area"] >= 5000
        ),
        key=lambda a: a["id"],
    )[:count]
    crops = []
    for ann in anns:
        info = coco.loadImgs(ann["image_id"])[0]
        bgr = cv2.imread(str(COCO_ROOT / "val2017" / info["file_name"]))
        assert bgr is not None, info["file_name"]
        x, y, w, h = ann["bbox"]
        scale = CROP_SIZE / (max(w, h) * (1 + margin))
        affine = np.array(
            [[scale, 0, CROP_SIZE / 2 - (x + w / 2) * scale], [0, scale, CROP_SIZE / 2 - (y + h / 2) * scale]],
            np.float32,
        )
        size = (CROP_SIZE, CROP_SIZE)
        image = cv2.cvtColor(cv2.warpAffine(bgr, affine, size, flags=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        mask = cv2.warpAffine(coco.annToMask(ann), affine, size, flags=cv2.INTER_NEAREST)
        joints = _joints14(ann["keypoints"])
        vis = joints[:, 2] > 0
        joints[vis, :2] = joints[vis, :2] @ affine[:, :2].T + affine[:, 2]
        crops.append((image, joints, mask))
    return crops


@pytest.fixture(scope="module")
def real_crops() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    crops = _real_crops()
    assert len(crops) == 5
    return crops


def test_baselines_beat_trivial_masks_on_real_crops(real_crops: list) -> None:
    masks = [m for _, _, m in real_crops]
    empty = mean_iou([np.zeros_like(m, np.float32) for m in masks], masks)
    full = mean_iou([np.ones_like(m, np.float32) for m in masks], masks)
    methods = {
        "prior": lambda img, j: prior_baseline(prior_mask(j, CROP_SIZE)),
        "grabcut": grabcut_baseline,
        "slic_grabcut": slic_grabcut_baseline,
    }
    scores = {name: mean_iou([fn(img, j) for img, j, _ in real_crops], masks) for name, fn in methods.items()}
    print(
        f"\nmean IoU on {len(masks)} COCO val crops: empty {empty:.3f} full {full:.3f} "
        + " ".join(f"{k} {v:.3f}" for k, v in scores.items())
    )
    for name, score in scores.items():
        assert score > max(empty, full) + 0.2, (name, score, full)


def test_grabcut_person_from_box_alone_and_degenerate_boxes() -> None:
    image = np.full((100, 100, 3), 25, np.uint8)
    image[30:90, 40:60] = (30, 200, 90)
    mask = grabcut_person(image, np.array([30, 20, 40, 78], np.float32))
    truth = np.zeros((100, 100), bool)
    truth[30:90, 40:60] = True
    assert mask.dtype == bool and (mask & truth).sum() / (mask | truth).sum() > 0.8
    for bad in ([np.nan, 0, 10, 10], [0, 0, 0, 10], [500, 500, 10, 10], [0, 0, np.inf, 5]):
        assert not grabcut_person(image, np.array(bad, np.float32)).any()
    # one colour everywhere: no background sample to learn from, the box seed is returned as it is
    flat = grabcut_person(np.zeros((50, 50, 3), np.uint8), np.array([0, 0, 50, 50], np.float32), margin=0.0)
    assert flat.all()
