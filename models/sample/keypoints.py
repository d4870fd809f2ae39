"""COCO-17 keypoints -> the 14 joints of models.sample.skeleton, with the top of the head estimated.

COCO-17 order: nose, l_eye, r_eye, l_ear, r_ear, l_shoulder, r_shoulder, l_elbow, r_elbow,
l_wrist, r_wrist, l_hip, r_hip, l_knee, r_knee, l_ankle, r_ankle. COCO has no head-top or neck
joint; the paper's 14-joint body (LSP style) has both. Neck is the mid-point of the shoulders.
The head top is estimated from whatever face points exist, by three choices, each a named rule:

- reference point: the centroid of the visible face points (nose, eyes, ears);
- direction (first rule that applies wins):
  ``neck_to_face``    unit vector neck -> reference, when the neck exists and is not on the face;
  ``shoulder_normal`` normal of the shoulder line, pointing to the face's side (or image-up);
  ``nose_to_eyes``    nose -> mid-eyes, when both eyes and the nose exist;
  ``image_up``        (0, -1), the last resort;
- distance (first rule that applies wins):
  ``face_size``       factor x the largest distance between two face points (>= 2 points);
  ``shoulder_width``  factor x the shoulder width;
  ``neck_distance``   factor x |reference - neck|;
  ``face_point_only`` 0: the head is placed on the single face point.
No face point at all gives ``no_face_points``: the head is missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.sample.skeleton import JOINT_NAMES, NUM_JOINTS, J

COCO17_NAMES: tuple[str, ...] = (
    "nose",
    "l_eye",
    "r_eye",
    "l_ear",
    "r_ear",
    "l_shoulder",
    "r_shoulder",
    "l_elbow",
    "r_elbow",
    "l_wrist",
    "r_wrist",
    "l_hip",
    "r_hip",
    "l_knee",
    "r_knee",
    "l_ankle",
    "r_ankle",
)
C = {name: i for i, name in enumerate(COCO17_NAMES)}
FACE = (C["nose"], C["l_eye"], C["r_eye"], C["l_ear"], C["r_ear"])
# 14-joint index <- COCO-17 index, for the joints that exist in both.
DIRECT: dict[int, int] = {J[name]: C[name] for name in JOINT_NAMES if name in C}


@dataclass(frozen=True)
class HeadConfig:
    """Factors of the head-top estimate (set as [crop] head_* in luigi.cfg)."""

    face_size_factor: float = 0.8
    shoulder_width_factor: float = 0.5
    neck_distance_factor: float = 0.7
    min_direction_px: float = 1.0  # shorter neck->face vectors have no reliable direction

    def to_dict(self) -> dict:
        return asdict(self)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def head_direction(
    kps: np.ndarray, reference: np.ndarray, neck: np.ndarray | None, cfg: HeadConfig
) -> tuple[np.ndarray, str]:
    """Direction from the face reference point to the top of the head.

    kps: (17,3) COCO keypoints; reference: (2,) face centroid; neck: (2,) or None.
    Returns ((2,) unit vector, rule name).
    """
    vis = kps[:, 2] > 0
    if neck is not None and np.linalg.norm(reference - neck) >= cfg.min_direction_px:
        return _unit(reference - neck), "neck_to_face"
    if vis[C["l_shoulder"]] and vis[C["r_shoulder"]]:
        line = kps[C["l_shoulder"], :2] - kps[C["r_shoulder"], :2]
        normal = _unit(np.array([line[1], -line[0]]))
        mid = (kps[C["l_shoulder"], :2] + kps[C["r_shoulder"], :2]) / 2
        towards_face = reference - mid
        side = float(normal @ towards_face)
        if abs(side) < 1e-9:  # face on the shoulder line: trust image-up for the sign
            side = -normal[1]
        return (normal if side >= 0 else -normal), "shoulder_normal"
    if vis[C["nose"]] and vis[C["l_eye"]] and vis[C["r_eye"]]:
        mid_eyes = (kps[C["l_eye"], :2] + kps[C["r_eye"], :2]) / 2
        v = mid_eyes - kps[C["nose"], :2]
        if np.linalg.norm(v) >= cfg.min_direction_px:
            return _unit(v), "nose_to_eyes"
    return np.array([0.0, -1.0]), "image_up"


def head_distance(
    kps: np.ndarray, reference: np.ndarray, neck: np.ndarray | None, cfg: HeadConfig
) -> tuple[float, str]:
    """Distance from the face reference point to the top of the head, in pixels, and its rule."""
    vis = kps[:, 2] > 0
    face = kps[[i for i in FACE if vis[i]], :2]
    if len(face) >= 2:
        diffs = face[:, None, :] - face[None, :, :]
        return cfg.face_size_factor * float(np.sqrt((diffs**2).sum(-1)).max()), "face_size"
    if vis[C["l_shoulder"]] and vis[C["r_shoulder"]]:
        width = float(np.linalg.norm(kps[C["l_shoulder"], :2] - kps[C["r_shoulder"], :2]))
        return cfg.shoulder_width_factor * width, "shoulder_width"
    if neck is not None:
        return cfg.neck_distance_factor * float(np.linalg.norm(reference - neck)), "neck_distance"
    return 0.0, "face_point_only"


def estimate_head(kps: np.ndarray, neck: np.ndarray | None, cfg: HeadConfig) -> tuple[np.ndarray, dict]:
    """Top of the head from the face points.

    kps: (17,3) COCO keypoints (x, y, v). neck: (2,) or None.
    Returns ((3,) x, y, v with v = 0 when no face point exists, and a dict naming the rules used).
    """
    vis = kps[:, 2] > 0
    face_idx = [i for i in FACE if vis[i]]
    if not face_idx:
        return np.zeros(3, np.float32), {"head": "no_face_points"}
    reference = kps[face_idx, :2].mean(axis=0)
    direction, dir_rule = head_direction(kps, reference, neck, cfg)
    distance, dist_rule = head_distance(kps, reference, neck, cfg)
    top = reference + distance * direction
    v = float(min(kps[i, 2] for i in face_idx))
    return np.array([top[0], top[1], v], np.float32), {"direction": dir_rule, "distance": dist_rule}


def coco17_to_joints14(keypoints: np.ndarray | list, cfg: HeadConfig | None = None) -> tuple[np.ndarray, dict]:
    """Map COCO-17 keypoints to the 14 joints of models.sample.skeleton.

    keypoints: (17,3) or the flat COCO list of 51 numbers. Missing joints come out as (0,0,0).
    Returns ((14,3) float32 joints, dict of the head rules used).
    """
    cfg = cfg or HeadConfig()
    kps = np.asarray(keypoints, np.float32).reshape(17, 3).copy()
    kps[kps[:, 2] <= 0] = 0.0
    joints = np.zeros((NUM_JOINTS, 3), np.float32)
    for j, c in DIRECT.items():
        joints[j] = kps[c]
    neck = None
    if kps[C["l_shoulder"], 2] > 0 and kps[C["r_shoulder"], 2] > 0:
        neck = (kps[C["l_shoulder"], :2] + kps[C["r_shoulder"], :2]) / 2
        v = min(kps[C["l_shoulder"], 2], kps[C["r_shoulder"], 2])
        joints[J["neck"]] = (neck[0], neck[1], v)
    joints[J["head"]], rules = estimate_head(kps, neck, cfg)
    return joints, rules


def outside_image(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Which (x, y) points lie outside an image of (height, width): (N, >=2) -> (N,) bool.

    The one rule posemask uses everywhere: pixel i covers [i, i + 1) (COCO's convention), so a point
    is inside when 0 <= x < width and 0 <= y < height. NaN or infinite coordinates are outside.
    """
    x, y = np.asarray(points, np.float64)[:, 0], np.asarray(points, np.float64)[:, 1]
    with np.errstate(invalid="ignore"):
        return ~((x >= 0) & (x < width) & (y >= 0) & (y < height))


def joints_inside(joints: np.ndarray, height: int, width: int) -> np.ndarray:
    """Drop joints that lie outside an image of (height, width) (`outside_image`): (14,3) -> (14,3) copy."""
    out = joints.copy()
    out[outside_image(out, height, width)] = 0.0
    return out
