"""bench/nightly_quality.py: the people a dataset leaves unannotated, and what they do to its figures."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from bench.nightly_quality import OCHUMAN_UNANNOTATED, SAMPLE, load_dataset, load_unannotated
from models.evaluation import coco_person_ap

OCHUMAN = f"ochuman={SAMPLE}/ochuman/ochuman_coco_format_val_range_0.00_1.00.json:{SAMPLE}/ochuman/images"


def test_the_ochuman_regions_name_sample_photos_and_lie_inside_them():
    regions = load_unannotated(OCHUMAN_UNANNOTATED)
    for name, boxes in regions.items():
        h, w = cv2.imread(str(SAMPLE / "ochuman" / "images" / name)).shape[:2]
        for region in boxes:
            x, y, bw, bh = region["bbox"]
            assert (region["width"], region["height"]) == (w, h)
            assert x >= 0 and y >= 0 and bw > 0 and bh > 0 and x + bw <= w + 0.5 and y + bh <= h + 0.5
            assert region["who"]
    assert sum(len(b) for b in regions.values()) == len(json.loads(OCHUMAN_UNANNOTATED.read_text())["regions"])


def test_unannotated_people_become_crowd_regions_a_mask_of_one_is_no_false_positive():
    photos = {p.path.name: p for p in load_dataset(OCHUMAN, 8, load_unannotated(OCHUMAN_UNANNOTATED))}
    photo = photos["000007.jpg"]  # three friends: OCHuman annotates the one in the middle only
    assert len(photo.people) == 1 and len(photo.unannotated) == 2
    assert all(r["iscrowd"] == 1 for r in photo.unannotated)
    assert len(photo.ignore) == 2 and len(photo.find) == 1  # their boxes are no false detection
    h, w = photo.image["height"], photo.image["width"]
    # a perfect mask of the annotated person, and one of a person in an unannotated box
    truth = photo.people[0]["segmentation"]
    x, y, bw, bh = (int(v) for v in photo.unannotated[0]["bbox"])
    other = np.zeros((h, w), np.uint8)
    other[y + 10 : y + bh - 10, x + 10 : x + bw - 10] = 1
    other[mask_utils.decode(truth) > 0] = 0
    results = [
        {"image_id": photo.image["id"], "segmentation": truth, "score": 0.5},
        {"image_id": photo.image["id"], "segmentation": mask_utils.encode(np.asfortranarray(other)), "score": 0.9},
    ]
    people = [{**photo.people[0], "id": 1, "image_id": photo.image["id"]}]
    crowds = [{**r, "id": 2 + k, "image_id": photo.image["id"]} for k, r in enumerate(photo.unannotated)]
    own = coco_person_ap([photo.image], people, results)["AP"]
    fair = coco_person_ap([photo.image], people + crowds, results)["AP"]
    assert own < 0.6 and fair == pytest.approx(1.0)


def test_regions_for_another_photo_a_photo_not_in_the_set_or_outside_it_are_refused():
    regions = load_unannotated(OCHUMAN_UNANNOTATED)
    wrong_size = {name: [{**r, "width": r["width"] + 1} for r in boxes] for name, boxes in regions.items()}
    with pytest.raises(SystemExit, match="another photo of that name"):
        load_dataset(OCHUMAN, 8, wrong_size)
    with pytest.raises(SystemExit, match="not in it"):
        load_dataset(OCHUMAN, 8, {"missing.jpg": []})
    outside = {name: [{**r, "bbox": [r["width"] - 5, 0, 10, 10]} for r in boxes] for name, boxes in regions.items()}
    with pytest.raises(SystemExit, match="leaves"):
        load_dataset(OCHUMAN, 8, outside)
