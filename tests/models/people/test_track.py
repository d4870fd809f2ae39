"""models/people/track.py on known warps of a real sample photo (the DAVIS clips stay in ../shared: bench/track.py)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from models.people.orb import orb_track
from models.people.track import (
    JointKalman,
    TrackConfig,
    estimate_disagreement,
    estimate_turned,
    flow_at,
    rotate_points,
    track_keypoints,
)
from tests.conftest import SAMPLE

FAST = TrackConfig(flow="farneback")


@pytest.fixture(scope="module")
def person() -> tuple[np.ndarray, np.ndarray]:
    """The largest well-annotated person of the val2017 sample: (photo RGB, (17,3) keypoints)."""
    data = json.loads((SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json").read_text())
    ann = max((a for a in data["annotations"] if a["num_keypoints"] >= 12), key=lambda a: a["area"])
    image = next(i for i in data["images"] if i["id"] == ann["image_id"])
    bgr = cv2.imread(str(SAMPLE / "coco" / "val2017" / image["file_name"]))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.asarray(ann["keypoints"], np.float32).reshape(17, 3)


def shifted(image: np.ndarray, shifts: list[tuple[float, float]]) -> list[np.ndarray]:
    h, w = image.shape[:2]
    return [
        cv2.warpAffine(image, np.float32([[1, 0, sx], [0, 1, sy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
        for sx, sy in shifts
    ]


def errors(tracked: list[np.ndarray], first: np.ndarray, shifts: list[tuple[float, float]]) -> np.ndarray:
    vis = first[:, 2] > 0
    return np.array(
        [np.linalg.norm(t[vis, :2] - (first[vis, :2] + s), axis=1).mean() for t, s in zip(tracked, shifts, strict=True)]
    )


def test_flow_and_kalman_follow_a_moving_photo(person) -> None:
    image, kps = person
    shifts = [(3.0 * t, 1.5 * t) for t in range(7)]
    frames = shifted(image, shifts)
    raw = list(track_keypoints(frames, kps, TrackConfig(flow="farneback", kalman=False)))
    smooth = list(track_keypoints(frames, kps, FAST))
    assert errors(raw, kps, shifts).max() < 0.3 and errors(smooth, kps, shifts).max() < 0.5
    assert all((t[:, 2] > 0).sum() == (kps[:, 2] > 0).sum() for t in smooth)


def test_deepflow_follows_too(person) -> None:
    image, kps = person
    shifts = [(0.0, 0.0), (4.0, 2.0), (8.0, 4.0)]
    tracked = list(track_keypoints(shifted(image, shifts), kps, TrackConfig(max_side=240)))
    assert errors(tracked, kps, shifts).max() < 1.5


def test_an_unreadable_frame_is_bridged_by_the_filter(person) -> None:
    image, kps = person
    shifts = [(2.0 * t, 0.0) for t in range(8)]
    frames: list[np.ndarray | None] = list(shifted(image, shifts))
    frames[5] = None
    tracked = list(track_keypoints(frames, kps, FAST))
    vis = kps[:, 2] > 0
    assert (tracked[5][vis, 2] == 1).all()  # carried over, marked occluded
    assert errors(tracked, kps, shifts)[5] < 1.0 and errors(tracked, kps, shifts)[7] < 1.0
    with pytest.raises(ValueError, match="first frame"):
        list(track_keypoints([None, image], kps, FAST))


def test_joints_that_leave_the_frame_become_missing(person, monkeypatch) -> None:
    import models.people.track

    image, kps = person
    h, w = image.shape[:2]
    first = kps.copy()
    first[0] = [w - 8.0, 20.0, 2.0]  # near the right edge, and the whole frame flows right
    monkeypatch.setattr(
        models.people.track, "dense_flow", lambda a, b, method: np.full((*a.shape, 2), (6.0, 0.0), np.float32)
    )
    frames = [image, image, image]
    last = list(track_keypoints(frames, first, TrackConfig(flow="farneback", kalman=False, max_side=10_000)))[-1]
    assert last[0, 2] == 0 and (last[1:, 2] == first[1:, 2]).all()
    assert (last[first[:, 2] == 0] == 0).all()


def test_kalman_reduces_jitter_of_a_noisy_constant_velocity_track() -> None:
    rng = np.random.default_rng(0)
    truth = np.stack([np.array([[10.0 + 2 * t, 50.0 - t]]) for t in range(60)])
    noisy = truth + rng.normal(0, 1.5, truth.shape)
    kalman = JointKalman(noisy[0], process_noise=0.05, measurement_noise=2.25)
    filtered = [noisy[0]]
    for measured in noisy[1:]:
        kalman.predict()
        filtered.append(kalman.update(measured))
    filtered = np.stack(filtered)
    raw_error = np.abs(noisy[20:] - truth[20:]).mean()
    assert np.abs(filtered[20:] - truth[20:]).mean() < 0.7 * raw_error  # measured 0.62


def test_flow_at_averages_a_disc_and_clips_at_the_border() -> None:
    flow = np.zeros((20, 20, 2), np.float32)
    flow[..., 0] = np.arange(20)[None, :]
    np.testing.assert_allclose(flow_at(flow, np.array([[10.0, 10.0]]), 2), [[10.0, 0.0]])
    assert flow_at(flow, np.array([[-5.0, 30.0]]), 1)[0, 0] < 1.0


def test_orb_baseline_tracks_a_translation_and_keeps_its_shape(person) -> None:
    image, kps = person
    shifts = [(0.0, 0.0), (4.0, 2.0), (8.0, 4.0)]
    tracked = list(orb_track(shifted(image, shifts), kps))
    assert len(tracked) == 3 and all(t.shape == (17, 3) for t in tracked)
    assert np.median(errors(tracked, kps, shifts)) < 3.0


def still_frames(n: int) -> list[np.ndarray]:
    """n identical textureless frames: the flow is zero, so any motion comes from the estimator."""
    return [np.full((120, 160, 3), 90, np.uint8) for _ in range(n)]


def skeleton(dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """(17,3) joints on a 40 x 60 px figure whose top-left is (50 + dx, 30 + dy)."""
    rng = np.random.default_rng(0)
    xy = np.c_[50 + dx + rng.uniform(0, 40, 17), 30 + dy + rng.uniform(0, 60, 17)]
    return np.c_[xy, np.full(17, 2.0)].astype(np.float32)


def test_an_agreeing_estimate_pulls_the_track_and_a_far_one_is_ignored() -> None:
    first = skeleton()
    calls: list[np.ndarray] = []

    def near(frame: np.ndarray, box: np.ndarray) -> np.ndarray:  # the person walks 2 px a frame
        calls.append(box)
        return skeleton(2.0 * len(calls))

    # fb_gate off: on textureless frames a zero flow is trivially forward-backward consistent
    pull = TrackConfig(flow="farneback", turns="0", fb_gate=0.0)
    tracked = list(track_keypoints(still_frames(6), first, pull, near))
    moved = tracked[-1][:, :2] - first[:, :2]  # the flow says "still" (r = 1 px^2), the estimator 10 px
    assert np.allclose(moved[:, 1], 0.0, atol=1e-3) and (moved[:, 0] > 3.0).all() and (moved[:, 0] < 10.5).all()
    box = calls[0]  # the estimator sees the tracked joints' extent, padded
    assert box[0] < first[:, 0].min() and box[0] + box[2] > first[:, 0].max()

    far = list(track_keypoints(still_frames(4), first, FAST, lambda f, b: skeleton(60.0)))  # a spectator
    assert np.abs(far[-1][:, :2] - first[:, :2]).max() < 1e-3
    shaky = list(track_keypoints(still_frames(4), first, FAST, lambda f, b: skeleton(0.5)))  # in the deadband
    assert np.abs(shaky[-1][:, :2] - first[:, :2]).max() < 1e-3
    off = list(track_keypoints(still_frames(4), first, TrackConfig(flow="farneback", correct=False), near))
    assert np.abs(off[-1][:, :2] - first[:, :2]).max() < 1e-3


def test_estimate_disagreement_is_the_median_distance_in_person_sizes() -> None:
    tracked = skeleton()[:, :2].astype(np.float64)
    size = np.ptp(tracked, axis=0).max()
    on = np.ones(17, bool)
    estimate = skeleton().astype(np.float64)
    assert estimate_disagreement(estimate, tracked, on) == 0.0
    estimate[:8, :2] += 100.0  # 8 of 17 joints far away: the median joint still agrees
    assert estimate_disagreement(estimate, tracked, on) == 0.0
    estimate[8:, 0] += 0.1 * size
    assert estimate_disagreement(estimate, tracked, on) == pytest.approx(0.1)
    estimate[:, 2] = 0.0
    estimate[:2, 2] = 2.0
    assert estimate_disagreement(estimate, tracked, on) == float("inf")  # fewer than 3 joints in common


def test_rotate_points_matches_np_rot90_and_turns_back() -> None:
    image = np.zeros((20, 30), np.uint8)
    image[2, 1] = 1
    for turns in range(4):
        turned = np.rot90(image, turns)
        ((row, col),) = np.argwhere(turned)
        point = rotate_points(np.array([[1.5, 2.5, 7.0]]), image.shape, turns)
        assert np.allclose(point, [[col + 0.5, row + 0.5, 7.0]])
        assert np.allclose(rotate_points(point, turned.shape, 4 - turns), [[1.5, 2.5, 7.0]])


def test_an_upside_down_person_is_estimated_on_the_turned_frame() -> None:
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:60] = 255  # "upright" for this estimator: bright on top
    upright_kps = skeleton()

    def upright_only(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        return upright_kps if image[0, 0, 0] == 255 else None

    upside_down = np.ascontiguousarray(frame[::-1, ::-1])
    assert estimate_turned(upright_only, upside_down, np.array([0, 0, 160, 120]), 0) is None
    back = estimate_turned(upright_only, upside_down, np.array([0, 0, 160, 120]), 2)
    assert np.allclose(back[:, :2], rotate_points(upright_kps, (120, 160), 2)[:, :2])
    first = back.astype(np.float32)
    tracked = list(track_keypoints([upside_down] * 3, first, FAST, upright_only))
    assert np.abs(tracked[-1][:, :2] - first[:, :2]).max() < 1e-3  # found by turning, it agrees


def test_a_forward_backward_consistent_flow_is_not_moved_by_the_estimator(person) -> None:
    image, kps = person
    shifts = [(3.0 * t, 1.5 * t) for t in range(5)]
    frames = shifted(image, shifts)
    calls = []

    def off_by_fifteen(frame: np.ndarray, box: np.ndarray) -> np.ndarray:  # agrees, but 15 px off
        calls.append(1)
        shift = shifts[min(len(calls) // 2, len(shifts) - 1)]
        return np.c_[kps[:, :2] + shift + 15.0, kps[:, 2:]]

    kept = list(track_keypoints(frames, kps, TrackConfig(flow="farneback", turns="0"), off_by_fifteen))
    pulled = list(track_keypoints(frames, kps, TrackConfig(flow="farneback", turns="0", fb_gate=0.0), off_by_fifteen))
    # measured 2.2 px against 16.5: most joints keep the consistent flow; without the gate every
    # joint follows the estimate
    assert errors(pulled, kps, shifts)[-1] > 12.0
    assert errors(kept, kps, shifts).max() < 0.25 * errors(pulled, kps, shifts)[-1]
