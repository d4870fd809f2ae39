"""models.people.person: how a mask was made (mask_kind) and its size reach the quality head."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import QualityHead
from models.people.ownership import NO_POSE, POSE_BORROWED, POSE_DUPLICATE, POSE_OWN
from models.people.person import SOURCE_BOX, SOURCE_KEYPOINTS, Person, mask_kind, scored_mask

HEAD = QualityHead(0.2, 0.8, (("box", -0.1), ("box_pose_lost", -0.4)), 0.03)


def person(source: str, reason: str, detection_score: float | None = 0.9) -> Person:
    bbox = np.array([10.0, 10.0, 20.0, 40.0])
    return Person(np.zeros((17, 3)), bbox, source=source, detection_score=detection_score, pose_reason=reason)


def test_mask_kind_tells_posed_box_and_lost_pose_people_apart():
    assert mask_kind(person(SOURCE_KEYPOINTS, POSE_OWN)) == "posed"
    assert mask_kind(person(SOURCE_KEYPOINTS, "", None)) == "given"  # keypoints given, no detection
    assert mask_kind(person(SOURCE_BOX, NO_POSE)) == "box"
    assert mask_kind(person(SOURCE_BOX, "")) == "box"
    assert mask_kind(person(SOURCE_BOX, POSE_BORROWED)) == "box_pose_lost"
    assert mask_kind(person(SOURCE_BOX, POSE_DUPLICATE)) == "box_pose_lost"


def test_scored_mask_gives_the_head_the_mask_kind_and_its_share_of_the_photo():
    """The same probability scores lower for a box person than a posed one, and lower for the same
    mask in a larger photo (a smaller share of it)."""
    prob = np.zeros((32, 32), np.float32)
    prob[8:24, 12:20] = 0.9
    prior = (prob > 0).astype(np.float32)
    window_prob = np.zeros((40, 20), np.float32)
    window_prob[:, 5:15] = 0.9  # 400 mask pixels

    def quality(p: Person, image_hw: tuple[int, int]) -> float:
        return scored_mask(p, window_prob, (0, 40, 0, 20), image_hw, 0.5, prob, prior, HEAD).quality

    posed = quality(person(SOURCE_KEYPOINTS, POSE_OWN), (100, 100))
    raw = 0.9  # expected IoU 0.9, agreement 1
    assert posed == pytest.approx(HEAD.apply(raw, "posed", 400 / 10_000))
    assert quality(person(SOURCE_BOX, NO_POSE), (100, 100)) == pytest.approx(posed - 0.1)
    assert quality(person(SOURCE_BOX, POSE_BORROWED), (100, 100)) == pytest.approx(posed - 0.4)
    assert quality(person(SOURCE_KEYPOINTS, POSE_OWN), (400, 400)) == pytest.approx(posed + 0.03 * np.log(1 / 16))
    # given keypoints: the posed line without the size term, which is fitted on detected people
    given = person(SOURCE_KEYPOINTS, "", None)
    assert quality(given, (100, 100)) == quality(given, (400, 400)) == pytest.approx(HEAD.apply(raw, "posed"))
