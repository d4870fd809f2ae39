"""Keypoint tracking through a frame sequence (the paper's section III-A): dense optical flow
averaged around each joint, smoothed by a constant-velocity Kalman filter per joint (ORB
descriptor matching, the baseline that the paper found to fail: models.people.orb).

    TrackConfig                              flow method, averaging radius, Kalman noise
    dense_flow(prev_gray, next_gray, method) (H,W,2) float32 flow, DeepFlow or Farneback
    flow_at(flow, points, radius)            (K,2) mean flow in a disc around each point
    JointKalman                              constant-velocity filter for K points at once
    track_keypoints(frames, first, cfg, estimate)
                                             (K,3) COCO keypoints per frame, flow + Kalman, and
                                             (with `estimate`) the pose estimator as a second,
                                             gated measurement
    rotate_points(points, hw, quarter_turns) (N,>=2) x, y on an image turned by np.rot90
    estimate_turned(estimate, frame, box, k) the estimator on the frame turned k quarter turns,
                                             its keypoints back on the upright frame

Flow alone drifts: on a twirl or a jump the joints slide off the body within tens of frames. The
paper used tracking to *reduce the correction* of keypoints from a detector, so the tracker can
fold in the built-in pose estimator: on every frame it is run on the box of the tracked joints,
and an estimate that agrees with the track (its joints, in the median, within `gate` x the
person's size of the tracked ones) updates every one of its joints as a second Kalman
measurement (noise `estimate_noise`). One that disagrees (a spectator, a left/right swap, a
miss) is ignored and the flow carries on. Pose estimators are trained on upright people: with
`turns` the estimator also sees the box turned upside down and sideways (np.rot90), and the
estimate closest to the track wins, which keeps a handstand or a flip on track. A joint whose
flow is forward-backward consistent (`fb_gate`) is left to the flow: it is exact under a known
warp, where the estimator would add its own noise.

A frame that is None (unreadable, missing) is bridged: the filter predicts the joints from their
velocity and marks them occluded (v = 1) until a frame arrives. Joints missing in the first
keypoints stay missing (v = 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from models.people.boxes import keypoint_box
from models.sample import outside_image

FLOW_METHODS = ("deepflow", "farneback")
VISIBLE, OCCLUDED = 2.0, 1.0
JOINTS = 17
# (H,W,3) uint8 RGB frame, (4,) xywh box -> (17,3) keypoints or None: models.people.pose.PoseEstimator.estimate
Estimate = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class TrackConfig:
    """flow: "deepflow" (cv2.optflow, accurate) or "farneback" (fast). radius: the flow is averaged
    over a disc of this many pixels around each joint. kalman: smooth with a constant-velocity
    Kalman filter; process_noise and measurement_noise are its q (px^2 per frame, on the
    acceleration) and r (px^2). max_side: frames are scaled down to this side for the flow.
    gate: an estimate is folded in when its joints lie, in the median, within gate x the person's
    size (the longer side of the tracked joints' extent) of the track; estimate_noise: its r (px^2).
    box_pad: the estimator's box is the tracked joints' extent grown by this share of its size.
    turns: quarter turns of the frame the estimator sees (0 = upright); the closest estimate wins.
    correct: fold in the pose estimator when track_keypoints is given one. deadband: a joint's
    estimate within deadband x the person's size of the track is left out (the estimator's own
    noise, a few px, would otherwise shake a track the flow follows well). fb_gate: a joint whose
    flow is forward-backward consistent to within this many px (the backward flow from the new
    frame brings it back) keeps the flow's position: such a flow is more precise than any
    estimate (0 = off; it costs a second flow per frame)."""

    flow: str = "deepflow"
    radius: int = 4
    kalman: bool = True
    process_noise: float = 1.0
    measurement_noise: float = 1.0
    max_side: int = 480
    gate: float = 0.25
    estimate_noise: float = 1.0
    box_pad: float = 0.35
    turns: str = "0,2"
    deadband: float = 0.03
    fb_gate: float = 0.03
    correct: bool = True

    def __post_init__(self) -> None:
        if self.flow not in FLOW_METHODS:
            raise ValueError(f"TrackConfig.flow must be one of {FLOW_METHODS}, got {self.flow!r}")
        if self.radius < 0 or self.process_noise <= 0 or self.measurement_noise <= 0 or self.max_side < 16:
            raise ValueError("TrackConfig: radius >= 0, noises > 0 and max_side >= 16")
        if self.gate <= 0 or self.estimate_noise <= 0 or min(self.box_pad, self.deadband, self.fb_gate) < 0:
            raise ValueError("TrackConfig: gate > 0, estimate_noise > 0, box_pad, deadband and fb_gate >= 0")
        if not set(self.turn_list()) <= {0, 1, 2, 3} or not self.turn_list():
            raise ValueError(f"TrackConfig.turns: quarter turns 0-3 separated by commas, got {self.turns!r}")

    def turn_list(self) -> list[int]:
        """The quarter turns as ints ("0,2" -> [0, 2])."""
        try:
            return [int(t) for t in self.turns.split(",") if t.strip()]
        except ValueError:
            return [-1]


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

    def update(self, measured: np.ndarray, noise: float | None = None, which: np.ndarray | None = None) -> np.ndarray:
        """Fold in (K,2) measured positions (only the points where the (K,) bool `which` is set, all
        by default), with measurement noise `noise` px^2 (the filter's own by default); (K,2)
        filtered positions."""
        which = np.ones(len(self.state), bool) if which is None else which
        r = self.r if noise is None else noise * np.eye(2)
        state, cov = self.state[which], self.cov[which]
        innovation = measured[which] - state[:, :2]
        s = self.h @ cov @ self.h.T + r
        gain = cov @ self.h.T @ np.linalg.inv(s)
        self.state[which] = state + (gain @ innovation[..., None])[..., 0]
        self.cov[which] = (np.eye(4) - gain @ self.h) @ cov
        return self.state[:, :2].copy()


def _grey(frame: np.ndarray, scale: float) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    return grey if scale == 1.0 else cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def estimate_disagreement(estimate: np.ndarray, tracked_xy: np.ndarray, tracked: np.ndarray) -> float:
    """How far one person's (17,3) estimate lies from the track ((17,2) positions, (17,) bool
    tracked): the median distance over the joints both have, in units of the person's size (the
    longer side of the tracked joints' extent); inf when they share fewer than 3 joints."""
    usable = (estimate[:, 2] > 0) & tracked & np.isfinite(estimate[:, :2]).all(1)
    if usable.sum() < 3:
        return float("inf")
    extent = tracked_xy[tracked].max(0) - tracked_xy[tracked].min(0)
    size = max(float(extent.max()), 1.0)
    return float(np.median(np.linalg.norm(estimate[usable, :2] - tracked_xy[usable], axis=1)) / size)


def track_keypoints(
    frames: Iterable[np.ndarray | None],
    first: np.ndarray,
    cfg: TrackConfig | None = None,
    estimate: Estimate | None = None,
) -> Iterator[np.ndarray]:
    """(K,3) keypoints on every frame (K = 17 per person: several people are tracked as one set),
    starting from `first` on frame 0 (which must be readable).

    frames: (H,W,3) uint8 RGB, or None for a frame that could not be read. Each joint moves by the
    flow averaged around it (at most cfg.max_side pixels a side), then the Kalman filter (when
    cfg.kalman) smooths it; joints that leave the frame are marked missing. estimate: the pose
    estimator (see Estimate); each person's agreeing estimate corrects the track (module doc).
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
            radius = max(1, round(cfg.radius * scale))
            moved = flow_at(flow, anchor * scale, radius)
            measured = anchor + moved / scale
            positions = kalman.update(measured) if kalman is not None else measured
            reliable = np.zeros(len(positions), bool)
            if cfg.fb_gate > 0 and estimate is not None and cfg.correct:
                back = flow_at(dense_flow(current, previous, cfg.flow), anchor * scale + moved, radius)
                reliable = np.linalg.norm(moved + back, axis=1) / scale < cfg.fb_gate
            if estimate is not None and cfg.correct:
                positions = _corrected(frame, positions, tracked, estimate, cfg, kalman, reliable)
            previous, anchor = current, positions.copy()
            out[tracked, :2] = positions[tracked]
            out[tracked, 2] = keypoints[tracked, 2]
        out[~tracked | outside_image(out, h, w)] = 0.0
        yield out


def rotate_points(points: np.ndarray, hw: tuple[int, int], quarter_turns: int) -> np.ndarray:
    """(N,>=2) points (x, y; pixel i covers [i, i+1)) on an (H,W) image -> the same points on
    np.rot90(image, quarter_turns) (counter-clockwise turns); other columns are kept."""
    out = np.array(points, np.float64, copy=True)
    h, w = hw
    for _ in range(quarter_turns % 4):
        x, y = out[:, 0].copy(), out[:, 1].copy()
        out[:, 0], out[:, 1] = y, w - x
        h, w = w, h
    return out


def estimate_turned(estimate: Estimate, frame: np.ndarray, box: np.ndarray, quarter_turns: int) -> np.ndarray | None:
    """(17,3) keypoints on the upright (H,W,3) frame, estimated on the frame turned by
    np.rot90(frame, quarter_turns) with the xywh box turned along; None when none is found.
    Left and right stay the person's own: a turn is not a mirror."""
    if quarter_turns % 4 == 0:
        found = estimate(frame, box)
        return None if found is None else np.asarray(found, np.float64).reshape(JOINTS, 3)
    hw = frame.shape[:2]
    x, y, w, h = (float(v) for v in box)
    corners = rotate_points(np.array([[x, y], [x + w, y + h]]), hw, quarter_turns)
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    turned = np.ascontiguousarray(np.rot90(frame, quarter_turns))
    found = estimate(turned, np.array([x0, y0, x1 - x0, y1 - y0], np.float32))
    if found is None:
        return None
    found = np.asarray(found, np.float64).reshape(JOINTS, 3)
    back = rotate_points(found, turned.shape[:2], 4 - quarter_turns % 4)
    back[found[:, 2] <= 0] = 0.0
    return back


def _corrected(
    frame: np.ndarray,
    positions: np.ndarray,
    tracked: np.ndarray,
    estimate: Estimate,
    cfg: TrackConfig,
    kalman: JointKalman | None,
    reliable: np.ndarray | None = None,
) -> np.ndarray:
    """(K,2) positions after folding in each person's agreeing estimate on `frame`; joints whose
    flow is `reliable` ((K,) bool: forward-backward consistent) keep the flow's position."""
    reliable = np.zeros(len(positions), bool) if reliable is None else reliable
    positions = positions.copy()
    for start in range(0, len(positions), JOINTS):
        person = slice(start, start + JOINTS)
        xy = positions[person]
        on = tracked[person] & ~outside_image(xy, *frame.shape[:2])
        if on.sum() < 3:
            continue
        box = keypoint_box(np.c_[xy, on.astype(np.float64)], cfg.box_pad, cfg.box_pad)
        best, best_distance = None, cfg.gate
        for turns in cfg.turn_list():
            found = estimate_turned(estimate, frame, box, turns)
            distance = float("inf") if found is None else estimate_disagreement(found, xy, on)
            if distance <= best_distance:
                best, best_distance = found, distance
        if best is None:
            continue
        found, which = best, (best[:, 2] > 0) & on & np.isfinite(best[:, :2]).all(1)
        extent = xy[on].max(0) - xy[on].min(0)
        which &= np.linalg.norm(found[:, :2] - xy, axis=1) > cfg.deadband * max(float(extent.max()), 1.0)
        which &= ~reliable[person]
        if kalman is None:
            positions[person][which] = found[which, :2]
            continue
        measured, mask = positions.copy(), np.zeros(len(positions), bool)
        measured[person][which] = found[which, :2]
        mask[person] = which
        positions = kalman.update(measured, cfg.estimate_noise, mask)
    return positions
