"""The pose-free segmenter finds people without keypoints."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from models.evaluation.metrics import iou
from models.people.posefree import PoseFreeSegmenter, posefree_baseline
from models.sample.crop import crop_affine, warp_image, warp_mask
from models.sample.masks import coco_instance_mask


def test_blank_image_has_no_person():
    with PoseFreeSegmenter() as seg:
        prob = seg.segment(np.full((128, 128, 3), 127, np.uint8))
    assert prob.shape == (128, 128) and prob.dtype == np.float32
    assert (prob >= 0.5).mean() < 0.05


def test_rejects_non_rgb():
    with pytest.raises(ValueError, match="uint8 RGB"):
        posefree_baseline(np.zeros((8, 8), np.uint8))


def test_beats_empty_and_full_masks_on_real_crops(sample):
    data = json.loads((sample / "coco/annotations/person_keypoints_val2017.json").read_text())
    images = {im["id"]: im for im in data["images"]}
    scores, full = [], []
    for ann in [a for a in data["annotations"] if not a["iscrowd"] and a["area"] > 20000][:6]:
        im = images[ann["image_id"]]
        rgb = cv2.cvtColor(cv2.imread(str(sample / "coco/val2017" / im["file_name"])), cv2.COLOR_BGR2RGB)
        a = crop_affine(ann["bbox"], 0.15, 256)
        mask = warp_mask(coco_instance_mask(ann["segmentation"], im["height"], im["width"]), a, 256)
        scores.append(iou(posefree_baseline(warp_image(rgb, a, 256)) >= 0.5, mask))
        full.append(iou(np.ones_like(mask), mask))
    assert len(scores) >= 4
    assert np.mean(scores) > np.mean(full) + 0.1
