"""The limb prior: a rough body shape drawn from the skeleton, strictly inside (0, 1).

Each limb is a Gaussian tube around its joint-to-joint segment, the torso polygon is filled,
the head is a Gaussian disc. The network adds its correction to the prior's log-odds
(the paper's Eq. 4), so the prior must never be exactly 0 or 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from models.skeleton import LIMBS, TORSO, J, visible

LEG_JOINTS = {J[n] for n in ("r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle")}


@dataclass(frozen=True)
class PriorConfig:
    """Shape of the prior in crop pixels (set as [crop] prior_* in luigi.cfg)."""

    arm_sigma: float = 7.0
    leg_sigma: float = 9.0
    torso_sigma: float = 6.0  # blur of the filled torso's edge
    head_radius_factor: float = 0.35  # head disc sigma = factor x |head - neck|
    min_head_sigma: float = 6.0
    floor: float = 0.02  # prior lives in [floor, 1 - floor]
    reach: float = 4.0  # tubes are evaluated within this many sigmas of their segment

    def to_dict(self) -> dict:
        return asdict(self)


def segment_distance(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every pixel to the segment a-b ((2,) each); xs, ys broadcast to (H,W)."""
    ab = b - a
    denom = float(ab @ ab)
    if denom < 1e-9:
        return np.hypot(xs - a[0], ys - a[1])
    t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / denom, 0.0, 1.0)
    return np.hypot(xs - (a[0] + t * ab[0]), ys - (a[1] + t * ab[1]))


def _stamp(body: np.ndarray, a: np.ndarray, b: np.ndarray, sigma: float, reach: float) -> None:
    """body = max(body, Gaussian tube of `sigma` around segment a-b), computed only within
    `reach` sigmas of the segment (beyond it the tube is < exp(-reach^2/2), below uint8 resolution)."""
    size_y, size_x = body.shape
    pad = reach * sigma
    x0, x1 = int(max(0, np.floor(min(a[0], b[0]) - pad))), int(min(size_x, np.ceil(max(a[0], b[0]) + pad) + 1))
    y0, y1 = int(max(0, np.floor(min(a[1], b[1]) - pad))), int(min(size_y, np.ceil(max(a[1], b[1]) + pad) + 1))
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    d = segment_distance(xs, ys, a, b)
    window = body[y0:y1, x0:x1]
    np.maximum(window, np.exp(-(d**2) / (2 * sigma**2)), out=window)


def prior_mask(joints: np.ndarray, size: int, cfg: PriorConfig | None = None) -> np.ndarray:
    """Limb prior for one person.

    joints: (14,3) in crop pixels of a size x size crop. Returns (size,size) float32 in
    [cfg.floor, 1 - cfg.floor] (strictly inside (0,1)); all-floor when no joint is visible.
    """
    cfg = cfg or PriorConfig()
    body = np.zeros((size, size), np.float32)
    vis = visible(joints)
    pts = joints[:, :2].astype(np.float32)
    for a, b in LIMBS:
        if not (vis[a] and vis[b]) or J["head"] in (a, b):
            continue
        sigma = cfg.leg_sigma if (a in LEG_JOINTS and b in LEG_JOINTS) else cfg.arm_sigma
        _stamp(body, pts[a], pts[b], sigma, cfg.reach)
    torso = [pts[i] for i in TORSO if vis[i]]
    if len(torso) >= 3:
        filled = np.zeros((size, size), np.float32)
        cv2.fillPoly(filled, [np.round(np.array(torso)).astype(np.int32)], 1.0)
        k = int(2 * round(3 * cfg.torso_sigma) + 1)
        np.maximum(body, cv2.GaussianBlur(filled, (k, k), cfg.torso_sigma), out=body)
    if vis[J["head"]]:
        head = pts[J["head"]]
        end, sigma = head, cfg.min_head_sigma
        if vis[J["neck"]]:
            end = pts[J["neck"]]
            sigma = max(sigma, cfg.head_radius_factor * float(np.linalg.norm(head - end)))
        _stamp(body, head, end, sigma, cfg.reach)
    return (cfg.floor + (1.0 - 2.0 * cfg.floor) * np.clip(body, 0.0, 1.0)).astype(np.float32)


def prior_to_uint8(prior: np.ndarray) -> np.ndarray:
    """(H,W) prior in (0,1) -> uint8 in 1..254, so the stored prior stays strictly inside (0,1)."""
    return np.clip(np.round(prior * 255.0), 1, 254).astype(np.uint8)
