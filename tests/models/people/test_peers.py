"""models.people.peers: whole-photo segmenters (MediaPipe selfie, DeepLab-v3) on a real sample photo."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from models.people.peers import PEERS, DeepLabSegmenter, deeplab_baseline, make_peer
from models.utils.assets import DEEPLAB_MODEL
from tests.conftest import SAMPLE

PHOTO = "000000000785.jpg"  # one skier, large in the frame


def person_union(name: str) -> np.ndarray:
    coco = json.loads((SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json").read_text())
    image = next(im for im in coco["images"] if im["file_name"] == name)
    union = np.zeros((image["height"], image["width"]), bool)
    for ann in coco["annotations"]:
        if ann["image_id"] == image["id"]:
            rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], image["height"], image["width"]))
            union |= mask_utils.decode(rle).astype(bool)
    return union


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_finds_the_skier(name: str) -> None:
    image = cv2.cvtColor(cv2.imread(str(SAMPLE / "coco" / "val2017" / PHOTO)), cv2.COLOR_BGR2RGB)
    with make_peer(name) as peer:
        prob = peer.segment(image)
    assert prob.shape == image.shape[:2] and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    truth, mask = person_union(PHOTO), prob >= 0.5
    assert (mask & truth).sum() / (mask | truth).sum() > 0.5


def test_deeplab_on_a_person_crop_finds_the_person() -> None:
    image = cv2.cvtColor(cv2.imread(str(SAMPLE / "coco" / "val2017" / PHOTO)), cv2.COLOR_BGR2RGB)
    ys, xs = np.nonzero(person_union(PHOTO))
    crop = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    truth = person_union(PHOTO)[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    crop, truth = cv2.resize(crop, (256, 256)), cv2.resize(truth.astype(np.uint8), (256, 256)) > 0
    prob = deeplab_baseline(crop)
    assert prob.shape == (256, 256) and prob.dtype == np.float32
    assert prob[truth].mean() > 0.5 > prob[~truth].mean()


def test_deeplab_is_shipped_with_its_licence() -> None:
    assert DEEPLAB_MODEL.is_file() and (DEEPLAB_MODEL.parent / "LICENSE").is_file()
    assert (
        "48a46b346ca7e2e96760b8a10a302046a3b5a9ce55e59d4c659c36d9cbd44118"
        in (DEEPLAB_MODEL.parent / "NOTICE").read_text()
    )


def test_unknown_peer_and_bad_image() -> None:
    with pytest.raises(ValueError, match="unknown peer"):
        make_peer("jppnet")
    with pytest.raises(ValueError, match="uint8"):
        DeepLabSegmenter().segment(np.zeros((10, 10, 3), np.float32))
