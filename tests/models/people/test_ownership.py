"""models.people.ownership: a pose belongs to its box; one skeleton, one person (synthetic poses and boxes)."""

from __future__ import annotations

import numpy as np
import pytest

from models.people.ownership import (
    NO_POSE,
    POSE_BORROWED,
    POSE_DUPLICATE,
    POSE_OWN,
    POSE_REASSIGNED,
    OwnerCheck,
    assign_poses,
    duplicate_pairs,
    isolate_box,
    object_keypoint_similarity,
    pose_fit,
)
from tests.models.people.test_people import standing_person

LEFT = np.array([10, 10, 40, 100, 0.9], np.float32)  # two people side by side, touching boxes
RIGHT = np.array([55, 10, 40, 100, 0.8], np.float32)
LEFT_POSE, RIGHT_POSE = standing_person(30, 10, 100), standing_person(75, 10, 100)
GREY = np.array([128, 128, 128], np.uint8)


def photo() -> np.ndarray:
    image = np.zeros((130, 110, 3), np.uint8)
    image[:, :52] = (200, 40, 40)  # left person's side
    image[:, 52:] = (40, 40, 200)  # right person's side
    return image


def test_pose_fit_separates_its_own_pose_from_a_neighbours():
    own, other = pose_fit(LEFT_POSE, LEFT[:4]), pose_fit(RIGHT_POSE, LEFT[:4])
    assert own.inside == 1.0 and own.extent_iou > 0.6
    assert other.inside == 0.0 and other.extent_iou < 0.1
    check = OwnerCheck()
    assert check.fits(own) and not check.fits(other)
    assert pose_fit(np.zeros((17, 3), np.float32), LEFT[:4]) == pose_fit(np.zeros((17, 3)), RIGHT[:4])


def test_a_few_joints_just_past_the_box_still_fit_it():
    raised = LEFT_POSE.copy()
    raised[9, 1] = LEFT[1] - 0.08 * LEFT[3]  # a wrist above the box, inside the tolerance
    assert pose_fit(raised, LEFT[:4]).inside == 1.0
    raised[9, 1] = LEFT[1] - 0.3 * LEFT[3]
    assert pose_fit(raised, LEFT[:4]).inside == pytest.approx(16 / 17)


def test_oks_is_one_for_the_same_pose_and_falls_with_distance():
    area = float(LEFT[2] * LEFT[3])
    assert object_keypoint_similarity(LEFT_POSE, LEFT_POSE, area) == pytest.approx(1.0)
    shifted = LEFT_POSE.copy()
    shifted[:, 0] += 3
    assert 0.5 < object_keypoint_similarity(LEFT_POSE, shifted, area) < 1.0
    assert object_keypoint_similarity(LEFT_POSE, RIGHT_POSE, area) < 0.01
    assert object_keypoint_similarity(LEFT_POSE, np.zeros((17, 3)), area) == 0.0
    assert duplicate_pairs([LEFT_POSE, shifted, RIGHT_POSE, None], np.stack([LEFT, LEFT, RIGHT, RIGHT]), 0.5) == [
        (0, 1)
    ]


def test_isolate_box_keeps_the_grown_box_and_paints_the_rest():
    image = photo()
    alone = isolate_box(image, LEFT[:4], 0.1, GREY)
    # box x 10..50, y 10..110, grown by 0.1 x (40, 100): x 6..54, y 0..120
    np.testing.assert_array_equal(alone[0:120, 6:54], image[0:120, 6:54])
    assert (alone[:, 54:] == GREY).all() and (alone[120:] == GREY).all() and (alone[:, :6] == GREY).all()


def neighbour_greedy_estimator(calls: list[str]):
    """A one-person estimator that returns the right person whenever it can see them (the blue
    side not greyed out), else the person of the box it was given."""

    def estimate(image: np.ndarray, box) -> np.ndarray:
        sees_right = bool((image[:, 60:, 2] == 200).any())
        calls.append("full" if sees_right else "isolated")
        if sees_right:
            return RIGHT_POSE.copy()
        return LEFT_POSE.copy() if box[0] < 50 else RIGHT_POSE.copy()

    return estimate


def test_a_borrowed_pose_is_estimated_again_with_the_neighbour_out_of_the_way():
    calls: list[str] = []
    out = assign_poses(photo(), np.stack([LEFT, RIGHT]), neighbour_greedy_estimator(calls), OwnerCheck(), GREY)
    assert [a.reason for a in out] == [POSE_REASSIGNED, POSE_OWN]
    np.testing.assert_array_equal(out[0].keypoints, LEFT_POSE)
    np.testing.assert_array_equal(out[1].keypoints, RIGHT_POSE)
    assert calls == ["full", "isolated", "full"]


def test_a_pose_that_stays_someone_elses_leaves_the_person_without_one():
    out = assign_poses(photo(), np.stack([LEFT, RIGHT]), lambda image, box: RIGHT_POSE.copy(), OwnerCheck(), GREY)
    assert [a.reason for a in out] == [POSE_BORROWED, POSE_OWN]
    assert out[0].keypoints is None and out[0].fit is not None and out[0].fit.inside == 0.0


def test_two_boxes_with_one_skeleton_keep_it_for_the_box_it_fits_best():
    wide = np.array([5, 5, 95, 110, 0.95], np.float32)  # a loose box around both people, scored higher
    out = assign_poses(photo(), np.stack([wide, RIGHT]), lambda image, box: RIGHT_POSE.copy(), OwnerCheck(), GREY)
    assert [a.reason for a in out] == [POSE_DUPLICATE, POSE_OWN]
    assert out[0].keypoints is None


def test_a_duplicate_is_estimated_again_and_keeps_a_new_pose_of_its_own():
    wide = np.array([5, 5, 95, 110, 0.95], np.float32)

    def estimate(image: np.ndarray, box) -> np.ndarray:
        isolated = bool((image[0, 0] == GREY).all() and box[2] > 90)
        return standing_person(50, 8, 110) if isolated else RIGHT_POSE.copy()

    out = assign_poses(photo(), np.stack([wide, RIGHT]), estimate, OwnerCheck(isolate_grow=0.0), GREY)
    assert [a.reason for a in out] == [POSE_REASSIGNED, POSE_OWN]
    assert pose_fit(out[0].keypoints, wide[:4]).inside == 1.0


def test_with_the_check_off_every_pose_is_kept_as_estimated():
    out = assign_poses(
        photo(), np.stack([LEFT, RIGHT]), lambda image, box: RIGHT_POSE.copy(), OwnerCheck(enabled=False)
    )
    assert [a.reason for a in out] == [POSE_OWN, POSE_OWN]
    none = assign_poses(photo(), np.stack([LEFT]), lambda image, box: None, OwnerCheck())
    assert [a.reason for a in none] == [NO_POSE]
    assert assign_poses(photo(), np.zeros((0, 5), np.float32), lambda image, box: None, OwnerCheck()) == []


@pytest.mark.parametrize("field", ["min_inside", "min_extent_iou", "duplicate_oks", "tolerance", "isolate_grow"])
def test_out_of_range_thresholds_are_refused(field: str):
    with pytest.raises(ValueError, match=field):
        OwnerCheck(**{field: 1.5})
