"""Square crops through one affine matrix, and the paste-back round trip on real masks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from models.evaluation.metrics import iou
from models.sample.crop import (
    box_around,
    crop_affine,
    crop_footprint,
    paste_back,
    paste_back_window,
    warp_image,
    warp_mask,
    warp_points,
)
from models.sample.masks import coco_instance_mask


def test_affine_maps_box_centre_to_crop_centre_and_keeps_aspect():
    a = crop_affine([100, 50, 40, 80], margin=0.25, size=256)
    centre = a @ np.array([120, 90, 1.0])
    np.testing.assert_allclose(centre, (128, 128), atol=1e-4)
    assert a[0, 0] == a[1, 1] == np.float32(256 / (80 * 1.5))
    assert a[0, 1] == a[1, 0] == 0


def test_same_matrix_moves_image_mask_and_points():
    img = np.zeros((120, 200, 3), np.uint8)
    mask = np.zeros((120, 200), np.uint8)
    mask[40:80, 90:110] = 1
    img[mask > 0] = (200, 10, 10)
    a = crop_affine([90, 40, 20, 40], margin=0.2, size=64)
    crop_img, crop_mask = warp_image(img, a, 64), warp_mask(mask, a, 64)
    assert crop_img.shape == (64, 64, 3) and crop_mask.shape == (64, 64)
    assert set(np.unique(crop_mask)) <= {0, 1}  # nearest keeps labels
    pts = warp_points(np.array([[100, 60, 2], [0, 0, 0]], np.float32), a, 64)
    assert crop_mask[int(pts[0, 1]), int(pts[0, 0])] == 1
    assert crop_img[int(pts[0, 1]), int(pts[0, 0]), 0] == 200
    assert pts[1].tolist() == [0, 0, 0]


def test_points_outside_the_crop_become_missing():
    a = crop_affine([0, 0, 10, 10], margin=0.0, size=10)
    pts = warp_points(np.array([[5, 5, 2], [50, 5, 2]], np.float32), a, 10)
    assert pts[0, 2] == 2 and pts[1].tolist() == [0, 0, 0]


def test_box_around_includes_visible_joints_only():
    joints = np.array([[5, -10, 1], [999, 999, 0]], np.float32)
    np.testing.assert_allclose(box_around([0, 0, 10, 10], joints), (0, -10, 10, 20))


def test_round_trip_iou_on_the_real_sample(sample):
    data = json.loads((sample / "coco/annotations/person_keypoints_val2017.json").read_text())
    images = {im["id"]: im for im in data["images"]}
    scores = []
    for ann in data["annotations"]:
        if ann["iscrowd"] or ann["area"] < 4096:
            continue
        im = images[ann["image_id"]]
        mask = coco_instance_mask(ann["segmentation"], im["height"], im["width"])
        a = crop_affine(ann["bbox"], margin=0.15, size=256)
        crop = warp_mask(mask, a, 256).astype(np.float32)
        back = paste_back(crop, a, (im["height"], im["width"])) > 0.5
        scores.append(iou(back, mask))
    assert len(scores) >= 20
    assert min(scores) >= 0.95, min(scores)


def test_paste_back_is_zero_outside_the_crop():
    a = crop_affine([10, 10, 20, 20], margin=0.0, size=32)
    back = paste_back(np.ones((32, 32), np.float32), a, (100, 100))
    assert back[:5].max() == 0 and back[15, 15] == 1 and back.shape == (100, 100)
    assert cv2.countNonZero((back > 0.5).astype(np.uint8)) in range(380, 430)


@pytest.mark.parametrize("bbox", [[40, 30, 50, 90], [-20, -10, 60, 80], [150, 100, 90, 120], [400, 400, 10, 10]])
def test_the_window_paste_is_the_full_paste_inside_and_nothing_outside(bbox) -> None:
    prob = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    affine = crop_affine(np.array(bbox, np.float32), 0.25, 64)
    full = paste_back(prob, affine, (160, 200))
    y0, y1, x0, x1 = window = crop_footprint(affine, 64, (160, 200))
    outside = full.copy()
    outside[y0:y1, x0:x1] = 0
    assert not outside.any()  # the footprint holds every pixel the crop reaches
    if y1 > y0 and x1 > x0:
        np.testing.assert_allclose(paste_back_window(prob, affine, window), full[y0:y1, x0:x1], atol=1e-5)
    else:
        assert not full.any()  # a crop that misses the photo: an empty window
