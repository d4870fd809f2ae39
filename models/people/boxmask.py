"""Masks of box people (no usable pose) and GrabCut in a person's window of the photo.

grabcut_window(box_xywh, image_hw) -> Window    where models.classical.grabcut_person works for a box
near_edge(box_xywh, image_hw, share) -> bool    whether a box comes within `share` of the photo's side of its edge
box_mask(image_rgb, box_xywh, window, segmenter) -> bool (y1-y0, x1-x0)   a box segmenter's mask
mask_in_box(box_xywh, window, threshold, window_probability)   a window's probability >= threshold,
                                                kept inside the box
_grabcut_in_window(image_rgb, box_xywh, window, window_prob, threshold)   grabcut_person on the window
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.classical import GRABCUT_MARGIN, box_in_region, grabcut_person, grabcut_region
from models.people.person import BoxSegmenter
from models.sample import Window


def grabcut_window(box_xywh: np.ndarray, image_hw: tuple[int, int]) -> Window:
    """The window models.classical.baselines.grabcut_person works in (grabcut_region), empty for no box."""
    region = grabcut_region(box_xywh, image_hw, GRABCUT_MARGIN)
    if region is None:
        return (0, 0, 0, 0)
    x0, y0, x1, y1 = region
    return (y0, max(y0, y1), x0, max(x0, x1))


def near_edge(box_xywh: np.ndarray, image_hw: tuple[int, int], share: float) -> bool:
    """Whether the box (4,) xywh comes within `share` x the photo's width (left, right) or height
    (top, bottom) of the photo's edge: a person the photo cuts (share 0: never)."""
    if share <= 0:
        return False
    height, width = image_hw
    x, y, w, h = (float(v) for v in box_xywh[:4])
    return x < share * width or y < share * height or x + w > (1 - share) * width or y + h > (1 - share) * height


def box_mask(image_rgb: np.ndarray, box_xywh: np.ndarray, window: Window, segmenter: BoxSegmenter) -> np.ndarray:
    """A box person's mask: `segmenter` on the window's part of the photo (grabcut_window: the box
    and a margin around it, for context), >= 0.5, kept inside the box: (y1-y0, x1-x0) bool.

    Measured on the 93 people >= 40 px of the sample's val2017 and OCHuman, given their true box:
    MediaPipe's selfie segmenter 0.587 IoU at 11 ms, GrabCut from the box 0.420 at 96 ms
    (the box itself: 0.464).
    """
    y0, y1, x0, x1 = window
    return mask_in_box(box_xywh, window, 0.5, lambda: segmenter(np.ascontiguousarray(image_rgb[y0:y1, x0:x1])))


def mask_in_box(
    box_xywh: np.ndarray, window: Window, threshold: float, window_probability: Callable[[], np.ndarray]
) -> np.ndarray:
    """A box person's (y1-y0, x1-x0) bool mask in `window`: window_probability() >= threshold,
    kept inside the box. window_probability: the window's (y1-y0, x1-x0) probability, asked for
    only when the window and the box's part of it are not empty (a box segmenter's, or the
    network's from the box prior)."""
    y0, y1, x0, x1 = window
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    if y1 <= y0 or x1 <= x0:
        return mask
    bx0, by0, bx1, by1 = box_in_region(box_xywh, (x0, y0, x1, y1))
    if bx1 <= bx0 or by1 <= by0:
        return mask
    prob = window_probability()
    mask[by0:by1, bx0:bx1] = prob[by0:by1, bx0:bx1] >= threshold
    return mask


def _grabcut_in_window(
    image_rgb: np.ndarray, box_xywh: np.ndarray, window: Window, window_prob: np.ndarray | None, threshold: float
) -> np.ndarray:
    """grabcut_person on the window's part of the photo (the window holds its whole working region,
    so the result equals the full-photo call's there): (y1-y0, x1-x0) bool."""
    y0, y1, x0, x1 = window
    if y1 <= y0 or x1 <= x0:
        return np.zeros((y1 - y0, x1 - x0), bool)
    box = np.asarray(box_xywh[:4], np.float64) - np.array([x0, y0, 0, 0])
    region = np.ascontiguousarray(image_rgb[y0:y1, x0:x1])
    if window_prob is None:
        return grabcut_person(region, box, margin=GRABCUT_MARGIN)
    return grabcut_person(region, box, window_prob, margin=GRABCUT_MARGIN, threshold=threshold)
