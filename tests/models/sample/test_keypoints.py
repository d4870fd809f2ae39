"""COCO-17 -> 14 joints, and every rule of the head-top estimate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.sample.keypoints import C, HeadConfig, coco17_to_joints14, joints_inside
from models.sample.skeleton import J

CFG = HeadConfig()


def kps(**points: tuple[float, float]) -> np.ndarray:
    """(17,3) COCO keypoints with the named points visible (v=2), the rest missing."""
    out = np.zeros((17, 3), np.float32)
    for name, (x, y) in points.items():
        out[C[name]] = (x, y, 2)
    return out


UPRIGHT = dict(
    nose=(50, 40),
    l_eye=(55, 35),
    r_eye=(45, 35),
    l_ear=(60, 38),
    r_ear=(40, 38),
    l_shoulder=(70, 70),
    r_shoulder=(30, 70),
)


def test_direct_joints_and_neck_are_mapped():
    k = kps(**UPRIGHT, l_wrist=(80, 120), r_ankle=(35, 200))
    joints, _ = coco17_to_joints14(k)
    assert joints.shape == (14, 3) and joints.dtype == np.float32
    np.testing.assert_allclose(joints[J["l_wrist"]], (80, 120, 2))
    np.testing.assert_allclose(joints[J["r_ankle"]], (35, 200, 2))
    np.testing.assert_allclose(joints[J["neck"]], (50, 70, 2))
    assert joints[J["l_knee"]].tolist() == [0, 0, 0]


def test_flat_coco_list_accepted():
    flat = kps(**UPRIGHT).reshape(-1).tolist()
    a, _ = coco17_to_joints14(flat)
    b, _ = coco17_to_joints14(kps(**UPRIGHT))
    np.testing.assert_array_equal(a, b)


def test_neck_missing_with_one_shoulder():
    joints, _ = coco17_to_joints14(kps(nose=(50, 40), l_shoulder=(70, 70)))
    assert joints[J["neck"], 2] == 0


def test_rule_neck_to_face_and_face_size():
    joints, rules = coco17_to_joints14(kps(**UPRIGHT))
    assert rules == {"direction": "neck_to_face", "distance": "face_size"}
    ref = np.array([50, 37.2])
    face_size = 20.0  # ear to ear
    head = joints[J["head"]]
    assert head[2] > 0
    # Straight above the face centroid, by factor x face size.
    np.testing.assert_allclose(head[:2], ref + [0, -CFG.face_size_factor * face_size], atol=1e-4)


def test_rule_shoulder_normal_when_neck_is_on_the_face():
    # A face point exactly at mid-shoulders makes neck -> face degenerate.
    joints, rules = coco17_to_joints14(kps(nose=(50, 70), l_shoulder=(70, 70), r_shoulder=(30, 70)))
    assert rules == {"direction": "shoulder_normal", "distance": "shoulder_width"}
    head = joints[J["head"]]
    np.testing.assert_allclose(head[:2], (50, 70 - CFG.shoulder_width_factor * 40), atol=1e-4)


def test_rule_shoulder_normal_points_to_the_face_side():
    # Upside-down person: face below the shoulders, nose on the line is ambiguous -> use face side.
    k = kps(nose=(50, 70), l_shoulder=(30, 70), r_shoulder=(70, 70))
    joints, rules = coco17_to_joints14(k)
    assert rules["direction"] == "shoulder_normal"
    assert joints[J["head"], 1] < 70  # ambiguous: image-up wins the sign


def test_rule_nose_to_eyes_without_shoulders():
    joints, rules = coco17_to_joints14(kps(nose=(50, 40), l_eye=(55, 32), r_eye=(45, 32)))
    assert rules == {"direction": "nose_to_eyes", "distance": "face_size"}
    assert joints[J["head"], 1] < 32


def test_rule_image_up_and_face_point_only():
    # One face point, neck present but on the face point -> direction falls back; distance from neck.
    joints, rules = coco17_to_joints14(kps(l_ear=(60, 38)))
    assert rules == {"direction": "image_up", "distance": "face_point_only"}
    np.testing.assert_allclose(joints[J["head"], :2], (60, 38))


def test_rule_neck_distance():
    cfg = HeadConfig()
    k = kps(nose=(50, 40), l_shoulder=(70, 70), r_shoulder=(30, 70))
    # Only one face point, both shoulders: shoulder_width wins over neck_distance by rule order.
    _, rules = coco17_to_joints14(k, cfg)
    assert rules["distance"] == "shoulder_width"
    from models.sample.keypoints import head_distance

    dist, rule = head_distance(kps(nose=(50, 40)), np.array([50.0, 40.0]), np.array([50.0, 70.0]), cfg)
    assert rule == "neck_distance" and dist == pytest.approx(cfg.neck_distance_factor * 30)


def test_rule_no_face_points_gives_missing_head():
    joints, rules = coco17_to_joints14(kps(l_shoulder=(70, 70), r_shoulder=(30, 70)))
    assert rules == {"head": "no_face_points"}
    assert joints[J["head"]].tolist() == [0, 0, 0]


def test_negative_visibility_and_missing_points_are_zeroed():
    k = kps(**UPRIGHT)
    k[C["l_wrist"]] = (12, 13, 0)
    joints, _ = coco17_to_joints14(k)
    assert joints[J["l_wrist"]].tolist() == [0, 0, 0]


def test_joints_inside_drops_points_outside_the_image():
    joints, _ = coco17_to_joints14(kps(**UPRIGHT, l_wrist=(500, 10)))
    inside = joints_inside(joints, height=100, width=100)
    assert inside[J["l_wrist"]].tolist() == [0, 0, 0]
    assert inside[J["neck"], 2] > 0


def test_head_lies_on_the_person_on_the_real_sample(sample):
    """On real COCO people with a full face, the estimated head top sits above the nose and near the bbox top."""
    data = json.loads((sample / "coco/annotations/person_keypoints_val2017.json").read_text())
    checked = 0
    for ann in data["annotations"]:
        k = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        needed = [C["nose"], C["l_eye"], C["r_eye"], C["l_shoulder"], C["r_shoulder"]]
        if ann["iscrowd"] or not (k[needed, 2] > 0).all():
            continue
        joints, rules = coco17_to_joints14(k)
        x, y, w, h = ann["bbox"]
        head = joints[J["head"]]
        assert rules["direction"] == "neck_to_face"
        # Above the nose for upright people, and within the (slightly enlarged) box.
        assert x - 0.2 * w <= head[0] <= x + 1.2 * w, ann["id"]
        assert y - 0.2 * h <= head[1] <= y + 1.2 * h, ann["id"]
        checked += 1
    assert checked >= 10


def test_outside_image_is_one_rule_pixel_i_covers_i_to_i_plus_1():
    from models.sample.keypoints import outside_image

    points = np.array([[0, 0], [99.9, 49.9], [100, 10], [10, 50], [-0.1, 3], [np.nan, 1], [np.inf, 1]], np.float32)
    assert outside_image(points, 50, 100).tolist() == [False, False, True, True, True, True, True]
    joints = np.array([[99.5, 10, 2]] + [[0, 0, 0]] * 13, np.float32)
    assert joints_inside(joints, 50, 100)[0].tolist() == [99.5, 10, 2]  # inside its last pixel: kept
