"""Ground-truth masks from COCO and VOC, and the IoU metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from models.evaluation.metrics import boundary_f_score, iou, summarize
from models.sample.masks import coco_instance_mask, encode_rle, voc_person_instances


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


# ----------------------------------------------------------------------------- hostile segmentations


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ([[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]], "non-finite"),
        ([[0, 0, 1e30, 0, 0, 1e30]], "beyond"),
        ([[0, 0, 1e9, 0, 0, 1e9]], "beyond"),
        ([[0, 0, 5, 0, 5]], "flat list"),
        ([[0, 0, "5", 0, 5, 5]], "non-numbers"),
        ([], "empty polygon list"),
        ({"size": [20, 30], "counts": "garbage!~~\x7f"}, "outside the format"),
        ({"size": [20, 30], "counts": "Y1"}, "cover"),
        ({"size": [21, 30], "counts": [600]}, "differs"),
        ({"size": [20, 30], "counts": [-5, 605]}, "non-negative"),
        ({"size": [20, 30], "counts": [100, 100]}, "cover"),
        ("polygon", "unknown segmentation"),
    ],
)
def test_malformed_segmentations_are_named_errors_never_crashes(segmentation, message) -> None:
    with pytest.raises(ValueError, match=message):
        coco_instance_mask(segmentation, 20, 30)


def test_garbage_rle_strings_are_refused_the_same_way_every_time() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = bytes(rng.integers(48, 112, rng.integers(1, 40))).decode("ascii")
        outcomes = []
        for _ in range(2):
            try:
                outcomes.append(coco_instance_mask({"size": [20, 30], "counts": counts}, 20, 30).tobytes())
            except ValueError as error:
                outcomes.append(str(error))
        assert outcomes[0] == outcomes[1]


def test_bad_image_sizes_are_refused() -> None:
    for height, width in ((0, 10), (10, -1), (10.5, 10), (True, 10), (1 << 20, 10)):
        with pytest.raises(ValueError, match="image size"):
            coco_instance_mask([[0, 0, 5, 0, 5, 5]], height, width)
