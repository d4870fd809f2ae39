"""Finding the people of a photo: from a keypoints file, or by a detector and a pose estimator.

estimate_people(image_rgb, detect, estimate, min_keypoints, box_fallback, check) -> [Person]
    detect boxes, then one pose per box that belongs to it (models.people.ownership)
person_from_keypoints(keypoints, bbox, image_hw, pad, pad_top, annotation_id) -> Person | None
    a Person from file keypoints, its box clipped (or the keypoints' padded extent)
clean_keypoints(keypoints, image_hw)   keypoints outside the image set missing (as BuildCache does)
present_keypoints(keypoints) -> int    keypoints with v > 0
clip_box(bbox, image_hw)               a box clipped to the image, None when nothing is left
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from models.people.boxes import keypoint_box
from models.people.ownership import FEW_JOINTS, OwnerCheck, assign_poses
from models.people.person import SOURCE_BOX, SOURCE_KEYPOINTS, Person
from models.people.pose import PoseResult
from models.sample import COCO17_NAMES, outside_image


def present_keypoints(keypoints: np.ndarray) -> int:
    """Number of keypoints with v > 0 in a (17,3) array."""
    return int((np.asarray(keypoints)[:, 2] > 0).sum())


def clean_keypoints(keypoints: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(17,3) float32 copy with keypoints outside the image set missing (as BuildCache does)."""
    kps = np.asarray(keypoints, np.float32).reshape(-1, 3).copy()
    outside = (kps[:, 2] > 0) & outside_image(kps, *image_hw)
    kps[outside] = 0.0
    return kps


def person_from_keypoints(
    keypoints: np.ndarray,
    bbox: Sequence[float] | None,
    image_hw: tuple[int, int],
    pad: float,
    pad_top: float,
    annotation_id: int | None = None,
) -> Person | None:
    """A Person from file keypoints; the box is clipped to the image, and is the keypoints' padded extent
    when none is given (or the given one is not finite or misses the image).

    pad / pad_top: as models.people.detect.keypoint_box. None when no keypoint is present.
    """
    kps = clean_keypoints(keypoints, image_hw)
    if present_keypoints(kps) == 0:
        return None
    box = clip_box(bbox, image_hw) if bbox is not None else None
    if box is None:  # no box, or one that does not overlap the image: the keypoints' extent
        box = keypoint_box(kps, pad, pad_top)
    return Person(kps, box, annotation_id)


def clip_box(bbox: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray | None:
    """(4,) xywh box clipped to an (H, W) image; None when it is not finite or leaves nothing inside."""
    x, y, w, h = (float(v) for v in bbox)
    if not np.isfinite([x, y, w, h]).all():
        return None
    height, width = image_hw
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return np.array([x0, y0, x1 - x0, y1 - y0], np.float32)


def estimate_people(
    image_rgb: np.ndarray,
    detect: Callable[[np.ndarray], np.ndarray],
    estimate: Callable[[np.ndarray, Sequence[float]], np.ndarray | PoseResult | None],
    min_keypoints: int,
    box_fallback: bool = False,
    check: OwnerCheck | None = None,
) -> list[Person]:
    """People without given keypoints: detect boxes, then one pose per box that belongs to it.

    detect: image (H,W,3) -> (K,5) [x, y, w, h, score]; estimate: (image, box xywh) -> (17,3)
    keypoints in image pixels (or a models.people.pose.PoseResult with them and the estimator's person
    segmentation, kept as the Person's `segmentation`) or None. Each pose is checked against its
    box and made unique (models.people.ownership.assign_poses with `check`; OwnerCheck() by default,
    OwnerCheck(enabled=False) keeps the estimator's poses as they come). A person without a pose
    of its own, or with fewer than `min_keypoints` joints, is dropped, or kept as a SOURCE_BOX
    person (no keypoints) when `box_fallback` is set. Every person's `pose_reason` says which
    (models.people.ownership.REASONS).
    """
    check = OwnerCheck() if check is None else check
    boxes = detect(image_rgb)
    people = []
    for box, assigned in zip(boxes, assign_poses(image_rgb, boxes, estimate, check), strict=True):
        bbox, score = np.asarray(box[:4], np.float32), float(box[4])
        keypoints, reason = assigned.keypoints, assigned.reason
        if keypoints is not None:
            keypoints = clean_keypoints(keypoints, image_rgb.shape[:2])
            if present_keypoints(keypoints) < min_keypoints:
                keypoints, reason = None, FEW_JOINTS
        if keypoints is not None:
            people.append(Person(keypoints, bbox, None, SOURCE_KEYPOINTS, score, reason, assigned.result))
        elif box_fallback:
            no_joints = np.zeros((len(COCO17_NAMES), 3), np.float32)
            people.append(Person(no_joints, bbox, source=SOURCE_BOX, detection_score=score, pose_reason=reason))
    return people
