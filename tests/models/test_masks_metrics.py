"""Ground-truth masks from COCO and VOC, and the IoU metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from models.masks import coco_instance_mask, encode_rle, voc_person_instances
from models.metrics import boundary_f_score, iou, summarize


def test_coco_polygon_rle_and_compressed_rle(sample):
    data = json.loads((sample / "coco/annotations/person_keypoints_val2017.json").read_text())
    im = data["images"][0]
    ann = next(a for a in data["annotations"] if a["image_id"] == im["id"] and isinstance(a["segmentation"], list))
    m = coco_instance_mask(ann["segmentation"], im["height"], im["width"])
    assert m.shape == (im["height"], im["width"]) and set(np.unique(m)) <= {0, 1}
    assert abs(int(m.sum()) - ann["area"]) / ann["area"] < 0.05
    rle = encode_rle(m)
    np.testing.assert_array_equal(coco_instance_mask(rle, im["height"], im["width"]), m)
    oc = json.loads((sample / "ochuman/ochuman_coco_format_val_range_0.00_1.00.json").read_text())
    rle_ann = next(a for a in oc["annotations"] if isinstance(a["segmentation"], dict))
    im = next(i for i in oc["images"] if i["id"] == rle_ann["image_id"])
    assert coco_instance_mask(rle_ann["segmentation"], im["height"], im["width"]).sum() > 100


def test_uncompressed_rle_and_errors():
    rle = {"size": [4, 4], "counts": [5, 3, 8]}
    m = coco_instance_mask(rle, 4, 4)
    assert m.sum() == 3
    with pytest.raises(ValueError):
        coco_instance_mask([], 4, 4)


def test_voc_person_instances_on_the_sample(sample):
    voc = sample / "voc/VOCdevkit/VOC2012"
    obj = np.array(Image.open(voc / "SegmentationObject/2011_000006.png"))
    cls = np.array(Image.open(voc / "SegmentationClass/2011_000006.png"))
    people = voc_person_instances(obj, cls)
    assert len(people) == 4
    for _, m in people:
        assert m.dtype == np.uint8 and (cls[m > 0] == 15).mean() > 0.9
    none = voc_person_instances(
        np.array(Image.open(voc / "SegmentationObject/2007_000063.png")),
        np.array(Image.open(voc / "SegmentationClass/2007_000063.png")),
    )
    assert none == []


def test_iou_cases():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert iou(a, b) == 1.0  # empty vs empty is a perfect answer
    a[:2] = True
    assert iou(a, b) == 0.0
    b[:1] = True
    assert iou(a, b) == pytest.approx(0.5)
    ignore = np.zeros((4, 4), bool)
    ignore[1] = True
    assert iou(a, b, ignore) == 1.0


def test_summarize_and_boundary_f():
    s = summarize([0.2, 0.4, 0.9])
    assert s == {"mean": pytest.approx(0.5), "median": 0.4, "n": 3}
    assert summarize([])["n"] == 0
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8:24] = 1
    assert boundary_f_score(m, m, 1) == 1.0
    shifted = np.roll(m, 6, axis=1)
    assert boundary_f_score(shifted, m, 1) < boundary_f_score(shifted, m, 8)
