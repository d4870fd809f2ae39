"""The tracking baseline the paper found to fail: ORB descriptor matching around each keypoint
(models.people.track is the tracker posemask uses).

    orb_track(frames, first, patch, search, max_distance)   (K,3) COCO keypoints per frame
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from models.people.track import _grey
from models.sample import outside_image


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
