"""The 14-joint body model shared by every stage: joint names, limbs, and skeleton drawing.

Joints are always an array of shape (14, 3) float32: x, y in pixels of the image they live in,
and visibility v (0 = missing; missing joints are stored as (0, 0, 0) and ignored everywhere).
"""

from __future__ import annotations

import cv2
import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "head",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
)
NUM_JOINTS = len(JOINT_NAMES)
J = {name: i for i, name in enumerate(JOINT_NAMES)}

# Joint-to-joint segments of the body, as index pairs into JOINT_NAMES.
LIMBS: tuple[tuple[int, int], ...] = (
    (J["head"], J["neck"]),
    (J["neck"], J["r_shoulder"]),
    (J["r_shoulder"], J["r_elbow"]),
    (J["r_elbow"], J["r_wrist"]),
    (J["neck"], J["l_shoulder"]),
    (J["l_shoulder"], J["l_elbow"]),
    (J["l_elbow"], J["l_wrist"]),
    (J["r_shoulder"], J["r_hip"]),
    (J["r_hip"], J["r_knee"]),
    (J["r_knee"], J["r_ankle"]),
    (J["l_shoulder"], J["l_hip"]),
    (J["l_hip"], J["l_knee"]),
    (J["l_knee"], J["l_ankle"]),
    (J["r_hip"], J["l_hip"]),
)
# Polygon of the torso, filled when at least three of its corners are visible.
TORSO: tuple[int, ...] = (J["r_shoulder"], J["l_shoulder"], J["l_hip"], J["r_hip"])


def visible(joints: np.ndarray) -> np.ndarray:
    """(14,3) joints -> (14,) bool: which joints are present."""
    return joints[:, 2] > 0


def draw_skeleton(joints: np.ndarray, shape: tuple[int, int], thickness: int) -> np.ndarray:
    """Draw the visible limbs (and torso) as thick lines.

    joints: (14,3) in pixel coordinates of an image of `shape` (H, W).
    Returns (H, W) uint8 in {0, 1}. Limbs with a missing end are skipped; isolated visible
    joints are drawn as discs so that a person with one joint still gets a seed.
    """
    canvas = np.zeros(shape, np.uint8)
    vis = visible(joints)
    pts = np.round(joints[:, :2]).astype(np.int32)
    for a, b in LIMBS:
        if vis[a] and vis[b]:
            cv2.line(canvas, tuple(map(int, pts[a])), tuple(map(int, pts[b])), 1, int(thickness), cv2.LINE_8)
    torso = [pts[i] for i in TORSO if vis[i]]
    if len(torso) >= 3:
        cv2.fillPoly(canvas, [np.array(torso, np.int32)], 1)
    for i in np.flatnonzero(vis):
        cv2.circle(canvas, tuple(map(int, pts[i])), max(1, int(thickness) // 2), 1, -1)
    return canvas
