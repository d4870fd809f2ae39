"""Pose maps peak at the joints; the prior is a body shape strictly inside (0, 1); both equal their
definitions drawn over the whole crop (the implementations draw in windows)."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.sample.posemap import pose_map, to_uint8
from models.sample.prior import LEG_JOINTS, PriorConfig, prior_mask, prior_to_uint8
from models.sample.skeleton import LIMBS, TORSO, J

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


def definition_pose_map(joints: np.ndarray, crop_size: int, sigma: float) -> np.ndarray:
    """(K, S/2, S/2) float32: every joint's full bump as an outer product, missing joints all 0."""
    half = crop_size // 2
    coords = np.arange(half, dtype=np.float32)
    maps = np.zeros((len(joints), half, half), np.float32)
    for k, (x, y, v) in enumerate(joints):
        if v > 0:
            cx, cy = (x + 0.5) / 2 - 0.5, (y + 0.5) / 2 - 0.5
            gx = np.exp(-((coords - cx) ** 2) / (2 * sigma**2))
            gy = np.exp(-((coords - cy) ** 2) / (2 * sigma**2))
            maps[k] = gy[:, None] * gx[None, :]
    return maps


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-80, 330), st.floats(-80, 330), st.sampled_from([0, 1, 2])), min_size=14, max_size=14),
    st.sampled_from([1.0, 3.0, 8.0]),
)
def test_pose_map_equals_the_full_bumps_but_for_tails_below_storage(points, sigma):
    joints = np.array(points, np.float32)
    full = definition_pose_map(joints, 256, sigma)
    for per_joint, expected in ((False, full.max(axis=0)), (True, full)):
        m = pose_map(joints, 256, sigma, per_joint)
        assert m.dtype == np.float32 and m.shape == expected.shape
        np.testing.assert_allclose(m, expected, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(to_uint8(m), to_uint8(expected))


def definition_prior(joints: np.ndarray, size: int, cfg: PriorConfig) -> np.ndarray:
    """The prior as documented, every term over the whole crop in float64: Gaussian tubes around the
    limbs, the torso polygon filled and blurred, the head disc; scaled into [floor, 1 - floor]."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    body = np.zeros((size, size))
    pts, vis = joints[:, :2].astype(np.float64), joints[:, 2] > 0

    def tube(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
        ab = b - a
        t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / max(ab @ ab, 1e-12), 0, 1)
        d = np.hypot(xs - a[0] - t * ab[0], ys - a[1] - t * ab[1])
        return np.exp(-(d**2) / (2 * sigma**2))

    for a, b in LIMBS:
        if vis[a] and vis[b] and J["head"] not in (a, b):
            sigma = cfg.leg_sigma if {a, b} <= LEG_JOINTS else cfg.arm_sigma
            body = np.maximum(body, tube(pts[a], pts[b], sigma))
    corners = [pts[i] for i in TORSO if vis[i]]
    if len(corners) >= 3:
        filled = np.zeros((size, size), np.float32)
        cv2.fillPoly(filled, [np.round(np.array(corners)).astype(np.int32)], 1.0)
        k = int(2 * round(3 * cfg.torso_sigma) + 1)
        body = np.maximum(body, cv2.GaussianBlur(filled, (k, k), cfg.torso_sigma))
    if vis[J["head"]]:
        head, neck = pts[J["head"]], pts[J["neck"]]
        end = neck if vis[J["neck"]] else head
        sigma = max(cfg.min_head_sigma, cfg.head_radius_factor * float(np.linalg.norm(head - end)))
        body = np.maximum(body, tube(head, end, sigma))
    return cfg.floor + (1 - 2 * cfg.floor) * np.clip(body, 0, 1)


# prior_mask leaves out what lies beyond `reach` sigmas of a segment: below exp(-reach^2 / 2)
REACH_CUT = float(np.exp(-(PriorConfig().reach ** 2) / 2)) + 1e-5


def test_prior_equals_its_definition_over_the_whole_crop():
    cfg = PriorConfig()
    corner = STANDING.copy()
    corner[:, :2] = np.clip(corner[:, :2] * 1.6 - 40, 0, 255)  # torso and limbs against the crop's edges
    bent = STANDING.copy()
    bent[J["r_wrist"]] = bent[J["r_elbow"]]  # a limb of zero length: a disc
    bent[J["neck"], 2] = 0  # head without neck: the minimum head disc
    for joints in (STANDING, corner, bent):
        p = prior_mask(joints, 256, cfg)
        np.testing.assert_allclose(p, definition_prior(joints, 256, cfg), rtol=0, atol=REACH_CUT)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-30, 100), st.floats(-30, 100), st.sampled_from([0, 2])), min_size=14, max_size=14),
    st.floats(2.0, 12.0),
)
def test_prior_equals_its_definition_for_any_joints(points, sigma):
    joints = np.array(points, np.float32)
    cfg = PriorConfig(arm_sigma=sigma, leg_sigma=sigma * 1.3, torso_sigma=sigma * 0.8)
    np.testing.assert_allclose(prior_mask(joints, 72, cfg), definition_prior(joints, 72, cfg), rtol=0, atol=REACH_CUT)


def test_prior_to_uint8_rounds_half_to_even_as_numpy_does():
    halves = (np.arange(0, 510, dtype=np.float32) / 510).reshape(15, 34)  # every k/255 and (k+1/2)/255
    noise = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    for prior in (halves, noise, noise.astype(np.float64), noise[::2, 1::3]):
        expected = np.clip(np.round(prior * 255.0), 1, 254).astype(np.uint8)
        np.testing.assert_array_equal(prior_to_uint8(prior), expected)
