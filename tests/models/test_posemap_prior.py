"""Pose maps peak at the joints; the prior is a body shape strictly inside (0, 1)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.posemap import pose_map, to_uint8
from models.prior import PriorConfig, prior_mask, prior_to_uint8
from models.skeleton import J

STANDING = np.zeros((14, 3), np.float32)
for name, xy in {
    "head": (128, 30),
    "neck": (128, 70),
    "r_shoulder": (100, 72),
    "l_shoulder": (156, 72),
    "r_elbow": (92, 110),
    "l_elbow": (164, 110),
    "r_wrist": (88, 145),
    "l_wrist": (168, 145),
    "r_hip": (112, 150),
    "l_hip": (144, 150),
    "r_knee": (110, 195),
    "l_knee": (146, 195),
    "r_ankle": (108, 240),
    "l_ankle": (148, 240),
}.items():
    STANDING[J[name]] = (*xy, 2)


def test_posemap_peaks_at_each_joint_half_resolution():
    m = pose_map(STANDING, 256, sigma=2.0)
    assert m.shape == (128, 128) and m.dtype == np.float32
    for x, y, _ in STANDING:
        hx, hy = int(x // 2), int(y // 2)
        patch = m[hy - 1 : hy + 2, hx - 1 : hx + 2]
        assert patch.max() > 0.85
        assert m[hy, hx] >= m[hy, max(hx - 4, 0)]
    assert m.max() <= 1.0 and m[0, 0] < 1e-6


def test_posemap_per_joint_channels_and_missing_joints():
    joints = STANDING.copy()
    joints[J["l_ankle"]] = 0
    m = pose_map(joints, 256, sigma=3.0, per_joint=True)
    assert m.shape == (14, 128, 128)
    assert m[J["l_ankle"]].max() == 0
    peak = np.unravel_index(np.argmax(m[J["head"]]), m[J["head"]].shape)
    assert abs(peak[0] - 15) <= 1 and abs(peak[1] - 64) <= 1
    np.testing.assert_allclose(m.max(axis=0), pose_map(joints, 256, 3.0), atol=1e-6)
    assert to_uint8(m).dtype == np.uint8


def test_prior_covers_the_body_and_not_the_corners():
    p = prior_mask(STANDING, 256)
    assert p.shape == (256, 256) and p.dtype == np.float32
    assert p[110, 128] > 0.9  # torso
    assert p[170, 110] > 0.9  # thigh
    assert p[5, 5] < 0.05 and p[250, 250] < 0.05


def test_prior_without_joints_is_the_floor():
    p = prior_mask(np.zeros((14, 3), np.float32), 64, PriorConfig(floor=0.05))
    np.testing.assert_allclose(p, 0.05)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-50, 300), st.floats(-50, 300), st.sampled_from([0, 1, 2])), min_size=14, max_size=14),
    st.floats(1e-4, 0.2),
)
def test_prior_is_never_0_or_1(points, floor):
    joints = np.array(points, np.float32)
    p = prior_mask(joints, 64, PriorConfig(floor=floor, arm_sigma=0.5, leg_sigma=0.5, torso_sigma=0.5))
    assert p.min() > 0 and p.max() < 1
    stored = prior_to_uint8(p)
    assert stored.min() >= 1 and stored.max() <= 254
