"""Keypoint tracking on DAVIS clips (one performer each, a precise mask per frame), flow + Kalman against ORB.

    python bench/track.py --davis ../shared/realdata/video            # the three clips
    python bench/track.py --davis DIR --flow deepflow --sequences parkour

For each sequence the performer's first keypoints come from the built-in pose estimator on the
box of the mask of frame 0 (DAVIS has no keypoints), upright or turned (TrackConfig.turns) until
its pose lies on the performer (the [voc_pose] rule), or on the first frame where one does
(`start_frame`); every tracker then follows them to the end:

  - inside: per frame, the share of tracked visible joints inside the ground-truth mask dilated by
    --dilate px; reported as the mean and the worst frame;
  - fb_error: track to the last frame and back to frame 0 (the reversed clip), mean distance from
    the start (px);
  - warp_error: frame 0 shifted by a known 3 px/frame translation for 10 frames, mean error (px);
  - jitter: mean |second difference| of each joint's track (px/frame^2): the Kalman filter's effect;
  - mask IoU per frame of the shipped model (the nightly segmentation) fed with the tracked
    keypoints, against the DAVIS mask, beside the same with keypoints estimated on every frame
    (on the box of that frame's ground-truth mask: an oracle box, so a strong baseline).

Trackers: flow+kalman+pose (the default: the estimator on the tracked box corrects the track),
flow+pose (the same without the Kalman filter: its effect on jitter), flow+kalman and flow (flow
alone, as the paper described it), orb (the paper's failed approach).
Appends one JSON line to bench/results/track.jsonl.
DAVIS frames are read here only (research terms): they never enter the repository.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit  # noqa: E402
from models.people import TrackConfig, estimate_turned, orb_track, track_keypoints  # noqa: E402

RESULTS = REPO / "bench" / "results" / "track.jsonl"
SEQUENCES = ("breakdance", "dance-twirl", "parkour")
WARP_FRAMES, WARP_STEP = 10, 3.0


def read_clip(davis: Path, sequence: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    frames = sorted((davis / "JPEGImages" / "480p" / sequence).glob("*.jpg"))
    masks = sorted((davis / "Annotations" / "480p" / sequence).glob("*.png"))
    rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in frames]
    return rgb, [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127 for p in masks]


def mask_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def inside_share(track: list[np.ndarray], masks: list[np.ndarray], dilate: int) -> list[float]:
    kernel = np.ones((2 * dilate + 1,) * 2, np.uint8)
    shares = []
    for kps, mask in zip(track, masks, strict=True):
        vis = kps[:, 2] > 0
        if not vis.any():
            shares.append(0.0)
            continue
        near = cv2.dilate(mask.astype(np.uint8), kernel) > 0
        h, w = mask.shape
        xs = np.clip(np.round(kps[vis, 0]).astype(int), 0, w - 1)
        ys = np.clip(np.round(kps[vis, 1]).astype(int), 0, h - 1)
        shares.append(float(near[ys, xs].mean()))
    return shares


def jitter(track: list[np.ndarray], first: np.ndarray) -> float:
    vis = first[:, 2] > 0
    xy = np.stack([t[vis, :2] for t in track])
    return float(np.abs(np.diff(xy, n=2, axis=0)).mean()) if len(xy) > 2 else 0.0


TRACKERS = ("flow+kalman+pose", "flow+pose", "flow+kalman", "flow", "orb")


def run_tracker(name: str, frames: list, first: np.ndarray, cfg: TrackConfig, estimate) -> list[np.ndarray]:
    if name == "orb":
        return list(orb_track(frames, first))
    cfg = TrackConfig(**{**cfg.__dict__, "kalman": "kalman" in name})
    return list(track_keypoints(frames, first, cfg, estimate if name.endswith("+pose") else None))


def mask_ious(comp, frames: list, masks: list, keypoints: list[np.ndarray]) -> list[float]:
    from models.people import DetectorConfig, person_from_keypoints, segment_people

    pads = DetectorConfig()  # the box around keypoints given without one, as GenerateMasks draws it
    ious = []
    for image, mask, kps in zip(frames, masks, keypoints, strict=True):
        person = None
        if kps is not None and (kps[:, 2] > 0).sum() >= 4:
            person = person_from_keypoints(kps, None, image.shape[:2], pads.landmark_pad, pads.landmark_pad_top)
        if person is None:
            ious.append(0.0)
            continue
        prob = segment_people(comp.net, image, [person], comp.crop_cfg, comp.threshold, grabcut=False)[0].mask
        ious.append(float((prob & mask).sum() / max((prob | mask).sum(), 1)))
    return ious


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="folder with JPEGImages/480p and Annotations/480p")
    parser.add_argument("--sequences", nargs="+", default=list(SEQUENCES))
    parser.add_argument("--flow", default="farneback", choices=["farneback", "deepflow"])
    parser.add_argument("--dilate", type=int, default=7, help="px the ground-truth mask is dilated by")
    parser.add_argument("--no-masks", action="store_true", help="skip the mask IoU of the segmentation")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from pipeline.lib.annotations import PoseCheck, pose_problem
    from pipeline.nightly import estimators, nightly_components
    from pipeline.settings import load_settings

    load_settings()
    torch.set_num_threads(1)
    _, estimator = estimators()
    comp = None if args.no_masks else nightly_components()
    cfg = TrackConfig(flow=args.flow)
    check = PoseCheck()  # the first keypoints must lie on the performer's mask (the VOC rule)
    figures: dict = {}
    for sequence in args.sequences:
        frames, masks = read_clip(args.davis, sequence)
        start = None
        for index, (image, mask) in enumerate(zip(frames, masks, strict=True)):
            for turns in cfg.turn_list():
                found = estimate_turned(estimator.estimate, image, np.array(mask_box(mask)), turns)
                if found is not None and pose_problem(found.astype(np.float32), mask.astype(np.uint8), check) is None:
                    start, first = index, found.astype(np.float32)
                    break
            if start is not None:
                break
        if start is None:
            print(f"{sequence}: no frame with a pose on the performer", file=sys.stderr)
            continue
        frames, masks = frames[start:], masks[start:]
        h, w = frames[0].shape[:2]
        shifts = [(WARP_STEP * t, 0.5 * WARP_STEP * t) for t in range(WARP_FRAMES)]
        warped = [
            cv2.warpAffine(frames[0], np.float32([[1, 0, sx], [0, 1, sy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
            for sx, sy in shifts
        ]
        vis = first[:, 2] > 0
        per_seq: dict = {"start_frame": start, "frames": len(frames), "joints": int(vis.sum())}
        tracks = {}
        for name in TRACKERS:
            started = time.perf_counter()
            track = run_tracker(name, frames, first, cfg, estimator.estimate)
            seconds = time.perf_counter() - started
            back = run_tracker(name, frames[::-1], track[-1], cfg, estimator.estimate)[-1]
            both = vis & (back[:, 2] > 0)
            moved = run_tracker(name, warped, first, cfg, estimator.estimate)
            warp = np.mean(
                [
                    np.linalg.norm(m[vis, :2] - (first[vis, :2] + s), axis=1).mean()
                    for m, s in zip(moved, shifts, strict=True)
                ]
            )
            shares = inside_share(track, masks, args.dilate)
            per_seq[name] = {
                "inside_mean": float(np.mean(shares)),
                "inside_worst_frame": float(np.min(shares)),
                "fb_error_px": float(np.linalg.norm(back[both, :2] - first[both, :2], axis=1).mean())
                if both.any()
                else None,
                "warp_error_px": float(warp),
                "jitter": jitter(track, first),
                "frames_per_s": len(frames) / seconds,
            }
            tracks[name] = track
        if comp is not None:
            estimated = []
            for image, mask in zip(frames, masks, strict=True):
                kps = estimator.estimate(image, mask_box(mask))
                estimated.append(None if kps is None else np.asarray(kps, np.float32).reshape(17, 3))
            for name, keypoints in (
                ("tracked flow+kalman+pose", tracks["flow+kalman+pose"]),
                ("tracked flow+kalman", tracks["flow+kalman"]),
                ("tracked orb", tracks["orb"]),
                ("estimated per frame", estimated),
            ):
                ious = mask_ious(comp, frames, masks, keypoints)
                per_seq.setdefault("mask_iou", {})[name] = {
                    "mean": float(np.mean(ious)),
                    "worst_frame": float(np.min(ious)),
                }
        figures[sequence] = per_seq
        print(json.dumps({sequence: per_seq}, indent=1))
    line = {
        "bench": "track",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "flow": args.flow,
        "dilate": args.dilate,
        "figures": figures,
    }
    append_result(args.results, line)


if __name__ == "__main__":
    main()
