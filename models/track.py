"""Keypoint tracking through a frame sequence (the paper's section III-A): dense optical flow
averaged around each joint, smoothed by a constant-velocity Kalman filter per joint; ORB
descriptor matching as the baseline that the paper found to fail.

    TrackConfig                              flow method, averaging radius, Kalman noise
    dense_flow(prev_gray, next_gray, method) (H,W,2) float32 flow, DeepFlow or Farneback
    flow_at(flow, points, radius)            (K,2) mean flow in a disc around each point
    JointKalman                              constant-velocity filter for K points at once
    track_keypoints(frames, first, cfg)      (17,3) COCO keypoints per frame, flow + Kalman
    orb_track(frames, first, ...)            the same by ORB matching around each keypoint

A frame that is None (unreadable, missing) is bridged: the filter predicts the joints from their
velocity and marks them occluded (v = 1) until a frame arrives. Joints missing in the first
keypoints stay missing (v = 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from models.keypoints import outside_image

FLOW_METHODS = ("deepflow", "farneback")
VISIBLE, OCCLUDED = 2.0, 1.0


@dataclass(frozen=True)
class TrackConfig:
    """flow: "deepflow" (cv2.optflow, accurate) or "farneback" (fast). radius: the flow is averaged
    over a disc of this many pixels around each joint. kalman: smooth with a constant-velocity
    Kalman filter; process_noise and measurement_noise are its q (px^2 per frame, on the
    acceleration) and r (px^2). max_side: frames are scaled down to this side for the flow."""

    flow: str = "deepflow"
    radius: int = 4
    kalman: bool = True
    process_noise: float = 2.0
    measurement_noise: float = 1.0
    max_side: int = 480

    def __post_init__(self) -> None:
        if self.flow not in FLOW_METHODS:
            raise ValueError(f"TrackConfig.flow must be one of {FLOW_METHODS}, got {self.flow!r}")
        if self.radius < 0 or self.process_noise <= 0 or self.measurement_noise <= 0 or self.max_side < 16:
            raise ValueError("TrackConfig: radius >= 0, noises > 0 and max_side >= 16")


_DEEPFLOW = None


def dense_flow(prev_gray: np.ndarray, next_gray: np.ndarray, method: str = "deepflow") -> np.ndarray:
    """Dense flow from prev to next, (H,W) uint8 each -> (H,W,2) float32 (dx, dy) per pixel."""
    global _DEEPFLOW
    if method == "deepflow":
        if _DEEPFLOW is None:  # one instance per process: creating it allocates its pyramids
            _DEEPFLOW = cv2.optflow.createOptFlow_DeepFlow()
        return _DEEPFLOW.calc(prev_gray, next_gray, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, 0.5, 4, 21, 3, 7, 1.5, 0)
    raise ValueError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")


def flow_at(flow: np.ndarray, points: np.ndarray, radius: int) -> np.ndarray:
    """(H,W,2) flow, (K,2) points (x, y) -> (K,2) mean flow over the disc of `radius` around each
    point (clipped to the image); a point off the image gets the flow of the nearest pixel."""
    h, w = flow.shape[:2]
    out = np.zeros((len(points), 2), np.float32)
    offsets = [
        (dx, dy)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if dx * dx + dy * dy <= radius * radius
    ]
    for k, (x, y) in enumerate(np.asarray(points, np.float64)):
        xi, yi = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
        xs = np.clip([xi + dx for dx, _ in offsets], 0, w - 1)
        ys = np.clip([yi + dy for _, dy in offsets], 0, h - 1)
        out[k] = flow[ys, xs].mean(0)
    return out


class JointKalman:
    """Constant-velocity Kalman filters for K points at once (state x, y, vx, vy per point)."""

    def __init__(self, points: np.ndarray, process_noise: float, measurement_noise: float) -> None:
        k = len(points)
        self.state = np.zeros((k, 4))
        self.state[:, :2] = points
        self.cov = np.tile(np.diag([measurement_noise, measurement_noise, 100.0, 100.0]), (k, 1, 1))
        self.f = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)
        g = np.array([[0.5, 0], [0, 0.5], [1, 0], [0, 1]])
        self.q = process_noise * g @ g.T
        self.h = np.eye(2, 4)
        self.r = measurement_noise * np.eye(2)

    def predict(self) -> np.ndarray:
        """Advance one frame; (K,2) predicted positions."""
        self.state = self.state @ self.f.T
        self.cov = self.f @ self.cov @ self.f.T + self.q
        return self.state[:, :2].copy()

    def update(self, measured: np.ndarray) -> np.ndarray:
        """Fold in (K,2) measured positions; (K,2) filtered positions."""
        innovation = measured - self.state[:, :2]
        s = self.h @ self.cov @ self.h.T + self.r
        gain = self.cov @ self.h.T @ np.linalg.inv(s)
        self.state = self.state + (gain @ innovation[..., None])[..., 0]
        self.cov = (np.eye(4) - gain @ self.h) @ self.cov
        return self.state[:, :2].copy()


def _grey(frame: np.ndarray, scale: float) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    return grey if scale == 1.0 else cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def track_keypoints(
    frames: Iterable[np.ndarray | None], first: np.ndarray, cfg: TrackConfig | None = None
) -> Iterator[np.ndarray]:
    """(K,3) keypoints on every frame (K = 17 per person: several people are tracked as one set),
    starting from `first` on frame 0 (which must be readable).

    frames: (H,W,3) uint8 RGB, or None for a frame that could not be read. Each joint moves by the
    flow averaged around it (at most cfg.max_side pixels a side), then the Kalman filter (when
    cfg.kalman) smooths it; joints that leave the frame are marked missing.
    """
    cfg = cfg or TrackConfig()
    keypoints = np.asarray(first, np.float32).reshape(-1, 3).copy()
    tracked = keypoints[:, 2] > 0
    iterator = iter(frames)
    frame = next(iterator)
    if frame is None:
        raise ValueError("track_keypoints: the first frame must be readable")
    h, w = frame.shape[:2]
    scale = min(1.0, cfg.max_side / max(h, w))
    previous = _grey(frame, scale)
    positions = keypoints[:, :2].astype(np.float64)
    anchor = positions.copy()  # the joints on the frame `previous` shows: the flow starts there
    kalman = JointKalman(positions, cfg.process_noise, cfg.measurement_noise) if cfg.kalman else None
    yield keypoints.copy()
    for frame in iterator:
        out = keypoints.copy()
        if kalman is not None:
            positions = kalman.predict()
        if frame is None:  # bridge the gap with the filter's prediction (or stay put)
            out[tracked, :2] = positions[tracked]
            out[tracked, 2] = OCCLUDED
        else:
            current = _grey(frame, scale)
            flow = dense_flow(previous, current, cfg.flow)
            measured = anchor + flow_at(flow, anchor * scale, max(1, round(cfg.radius * scale))) / scale
            positions = kalman.update(measured) if kalman is not None else measured
            previous, anchor = current, positions.copy()
            out[tracked, :2] = positions[tracked]
            out[tracked, 2] = keypoints[tracked, 2]
        out[~tracked | outside_image(out, h, w)] = 0.0
        yield out


def orb_track(
    frames: Iterable[np.ndarray | None], first: np.ndarray, patch: int = 31, search: int = 24, max_distance: int = 64
) -> Iterator[np.ndarray]:
    """The baseline: each keypoint's ORB descriptor (a `patch`-pixel patch) is matched against ORB
    descriptors computed on a grid within `search` pixels of its last position in the next frame; it
    moves to the best match under `max_distance` (Hamming) and stays put otherwise."""
    orb = cv2.ORB_create(edgeThreshold=patch, patchSize=patch)
    keypoints = np.asarray(first, np.float32).reshape(-1, 3).copy()
    tracked = keypoints[:, 2] > 0
    iterator = iter(frames)
    frame = next(iterator)
    if frame is None:
        raise ValueError("orb_track: the first frame must be readable")
    grey = _grey(frame, 1.0)
    positions = keypoints[:, :2].astype(np.float64)
    descriptors = _orb_descriptors(orb, grey, positions, patch)
    yield keypoints.copy()
    step = 2
    offsets = np.array([(dx, dy) for dy in range(-search, search + 1, step) for dx in range(-search, search + 1, step)])
    for frame in iterator:
        out = keypoints.copy()
        if frame is not None:
            grey = _grey(frame, 1.0)
            for k in np.flatnonzero(tracked):
                if descriptors[k] is None:
                    continue
                candidates = positions[k] + offsets
                found = _orb_descriptors(orb, grey, candidates, patch)
                best, best_distance = None, max_distance
                for candidate, descriptor in zip(candidates, found, strict=True):
                    if descriptor is None:
                        continue
                    distance = cv2.norm(descriptors[k], descriptor, cv2.NORM_HAMMING)
                    if distance < best_distance:
                        best, best_distance = candidate, distance
                if best is not None:
                    positions[k] = best
        out[tracked, :2] = positions[tracked]
        h, w = grey.shape[:2]
        out[~tracked | outside_image(out, h, w)] = 0.0
        yield out


def _orb_descriptors(orb: cv2.ORB, grey: np.ndarray, points: np.ndarray, patch: int) -> list[np.ndarray | None]:
    """ORB descriptor at each point ((N,2) x, y), None where the patch does not fit in the image."""
    keypoints = [cv2.KeyPoint(float(x), float(y), float(patch)) for x, y in points]
    kept, descriptors = orb.compute(grey, keypoints)
    out: list[np.ndarray | None] = [None] * len(points)
    if descriptors is None:
        return out
    index = {(round(k.pt[0], 3), round(k.pt[1], 3)): d for k, d in zip(kept, descriptors, strict=True)}
    for i, (x, y) in enumerate(points):
        out[i] = index.get((round(float(x), 3), round(float(y), 3)))
    return out
