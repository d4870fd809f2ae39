"""The limb prior: a rough body shape drawn from the skeleton, strictly inside (0, 1).

Each limb is a Gaussian tube around its joint-to-joint segment, the torso polygon is filled and
its edge blurred, the head is a Gaussian disc. The network adds its correction to the prior's
log-odds (the paper's Eq. 4), so the prior must never be exactly 0 or 1.

    PriorConfig                          tube widths, torso blur, head disc, floor, reach
    prior_mask(joints, size, cfg)        (14, 3) crop joints -> (size, size) float32 prior
    prior_to_uint8(prior)                the cache's storage form, 1..254
    BoxPriorConfig, box_prior(box, size) a box-only person's prior: a soft ellipse in its box

Everything is drawn inside small windows (a tube within `reach` sigmas of its segment, the torso
blur within its kernel's reach of the polygon), which gives the full-crop result at a fraction
of the cost: the cache build and the nightly inference draw one prior per person.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from models.sample.skeleton import LIMBS, TORSO, J

LEG_JOINTS = {J[n] for n in ("r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle")}
HEAD, NECK = J["head"], J["neck"]


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


def _tube(body: np.ndarray, a: tuple[float, float], b: tuple[float, float], sigma: float, reach: float) -> None:
    """body (H,W) float32 = max(body, exp(-d^2 / 2 sigma^2)), d = distance to segment a-b (x, y pixels).

    Evaluated only within `reach` sigmas of the segment (beyond it the tube is < exp(-reach^2/2),
    below uint8 resolution). Scalars stay Python floats: numpy scalar arithmetic would cost more
    than the window's array work.
    """
    (ax, ay), (bx, by) = a, b
    size_y, size_x = body.shape
    pad = reach * sigma
    x0, x1 = max(0, math.floor(min(ax, bx) - pad)), min(size_x, math.ceil(max(ax, bx) + pad) + 1)
    y0, y1 = max(0, math.floor(min(ay, by) - pad)), min(size_y, math.ceil(max(ay, by) + pad) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1, dtype=np.float32) - np.float32(ax)  # (w,) pixel x - a.x
    ys = np.arange(y0, y1, dtype=np.float32) - np.float32(ay)  # (h,)
    abx, aby = bx - ax, by - ay
    denom = abx * abx + aby * aby
    if denom > 1e-9:
        # closest point a + tc (b - a), tc = clip(t, 0, 1); d^2 = |p - a - tc ab|^2 taken as the sum of
        # the two squared offsets: expanding it (|p - a|^2 + ...) would cancel terms of ~1e4 px^2
        # in float32 and cost up to 4e-4 of the prior along a long limb
        tc = np.clip(np.add.outer(ys * np.float32(aby / denom), xs * np.float32(abx / denom)), 0.0, 1.0)
        dx = xs - tc * np.float32(abx)
        dy = ys[:, None] - tc * np.float32(aby)
        dx *= dx
        dy *= dy
        d2 = dx + dy
    else:
        d2 = np.add.outer(ys * ys, xs * xs)  # (h, w) |p - a|^2: a point
    d2 *= -0.5 / sigma**2
    np.exp(d2, out=d2)
    window = body[y0:y1, x0:x1]
    np.maximum(window, d2, out=window)


def _torso(body: np.ndarray, corners: np.ndarray, sigma: float) -> None:
    """body = max(body, filled polygon `corners` (n,2) blurred by `sigma`), blurred in a window only.

    The window reaches two kernel radii past the polygon: the blur's reflected border then mirrors
    only zeros, so inside it the result equals blurring the whole crop (which cost more than all
    the limbs together).
    """
    radius = round(3 * sigma)
    poly = np.round(corners).astype(np.int32)
    (px0, py0), (px1, py1) = poly.min(axis=0).tolist(), poly.max(axis=0).tolist()
    margin = 2 * radius + 1
    x0, x1 = max(0, px0 - margin), min(body.shape[1], px1 + margin + 1)
    y0, y1 = max(0, py0 - margin), min(body.shape[0], py1 + margin + 1)
    if x0 >= x1 or y0 >= y1:
        return
    filled = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(filled, [poly - np.array([x0, y0], np.int32)], 1.0)
    k = 2 * radius + 1
    window = body[y0:y1, x0:x1]
    np.maximum(window, cv2.GaussianBlur(filled, (k, k), sigma), out=window)


def prior_mask(joints: np.ndarray, size: int, cfg: PriorConfig | None = None) -> np.ndarray:
    """Limb prior for one person.

    joints: (14,3) in crop pixels of a size x size crop. Returns (size,size) float32 in
    [cfg.floor, 1 - cfg.floor] (strictly inside (0,1)); all-floor when no joint is visible.
    """
    cfg = cfg or PriorConfig()
    body = np.zeros((size, size), np.float32)
    vis = (joints[:, 2] > 0).tolist()
    pts = joints[:, :2].astype(np.float32)
    xy = pts.tolist()
    for a, b in LIMBS:
        if not (vis[a] and vis[b]) or HEAD in (a, b):
            continue
        sigma = cfg.leg_sigma if (a in LEG_JOINTS and b in LEG_JOINTS) else cfg.arm_sigma
        _tube(body, xy[a], xy[b], sigma, cfg.reach)
    torso = [i for i in TORSO if vis[i]]
    if len(torso) >= 3:
        _torso(body, pts[torso], cfg.torso_sigma)
    if vis[HEAD]:
        head = end = xy[HEAD]
        sigma = cfg.min_head_sigma
        if vis[NECK]:
            end = xy[NECK]
            sigma = max(sigma, cfg.head_radius_factor * math.hypot(head[0] - end[0], head[1] - end[1]))
        _tube(body, head, end, sigma, cfg.reach)
    np.clip(body, 0.0, 1.0, out=body)
    body *= 1.0 - 2.0 * cfg.floor
    body += cfg.floor
    return body


def prior_to_uint8(prior: np.ndarray) -> np.ndarray:
    """(H,W) prior in (0,1) -> uint8 in 1..254, so the stored prior stays strictly inside (0,1)."""
    prior = np.asarray(prior)
    if prior.ndim == 2 and prior.dtype == np.float32 and prior.min() >= 0:
        # cv2 rounds half to even as np.round does (same bytes), at a fifth of the cost
        stored = cv2.convertScaleAbs(prior, alpha=255.0)
        return np.clip(stored, 1, 254, out=stored)
    return np.clip(np.round(prior * 255.0), 1, 254).astype(np.uint8)


@dataclass(frozen=True)
class BoxPriorConfig:
    """The prior of a person known only by a box (no usable pose): a soft ellipse inscribed in the
    box, `inside` within it and `outside` elsewhere, its edge blurred by `blur_sigma` crop pixels.
    Set as [detect] box_prior_* (measured on the detected people without a pose of coco128train,
    val2017 and OCHuman: docs/generate.md "Crowds").

    edge_grabcut: a box that comes within this share of the photo's side of its edge (a person cut
    by the photo's edge) has the network's mask refined by GrabCut seeded by its probability
    (models.people.segment; 0: never). The ellipse fits a whole body, not the part of one the photo
    holds. Measured on the 61 detected people without a pose of coco128train, val2017 and OCHuman:
    the 18 whose box comes within 2 % of the edge 0.565 -> 0.677 mean IoU (12 -> 16 at >= 0.5), the
    43 farther in 0.608 -> 0.611 (GrabCut's time for nothing); posed people lose with it even at the
    edge (38: 0.752 -> 0.731). PennFudan, held out: its 3 such people 0.816 -> 0.745, all >= 0.5;
    set as [detect] box_edge_grabcut."""

    inside: float = 0.6
    outside: float = 0.05
    blur_sigma: float = 5.0
    edge_grabcut: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 < self.outside < self.inside < 1.0:
            raise ValueError(f"box prior needs 0 < outside < inside < 1, got {self.outside}, {self.inside}")
        if self.blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0, got {self.blur_sigma}")
        if not 0.0 <= self.edge_grabcut < 0.5:
            raise ValueError(f"edge_grabcut must be in [0, 0.5), got {self.edge_grabcut}")


def box_prior(box_xyxy: np.ndarray, size: int, cfg: BoxPriorConfig | None = None) -> np.ndarray:
    """Prior of a box-only person: box_xyxy (4,) [x0, y0, x1, y1] in crop pixels of a size x size
    crop -> (size, size) float32 strictly inside (0, 1) (see BoxPriorConfig)."""
    cfg = cfg or BoxPriorConfig()
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    inside = np.zeros((size, size), np.uint8)
    if x1 > x0 and y1 > y0:
        cv2.ellipse(inside, (((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0, y1 - y0), 0.0), 1, -1)
    prior = np.where(inside > 0, cfg.inside, cfg.outside).astype(np.float32)
    if cfg.blur_sigma > 0:
        prior = cv2.GaussianBlur(prior, (0, 0), cfg.blur_sigma)
    return np.clip(prior, cfg.outside, cfg.inside)
