"""Square person crops through one 2x3 affine matrix, and pasting predictions back.

The same matrix moves image (bilinear), mask (nearest) and joints; its inverse warps a
crop-size prediction back onto the original image: over the whole image (paste_back), or only
over the window the crop covers (crop_footprint + paste_back_window: a person's cost then does
not grow with the photo's size).
"""

from __future__ import annotations

import cv2
import numpy as np


def crop_affine(bbox_xywh: np.ndarray | list, margin: float, size: int) -> np.ndarray:
    """Affine matrix (2,3) float32 mapping original pixels to a size x size crop.

    The crop is the square around the box centre whose side is the longer box side enlarged
    by `margin` on each side (side = max(w, h) * (1 + 2 * margin)).
    """
    x, y, w, h = (float(v) for v in bbox_xywh)
    side = max(w, h, 1.0) * (1.0 + 2.0 * margin)
    scale = size / side
    cx, cy = x + w / 2.0, y + h / 2.0
    return np.array([[scale, 0.0, size / 2.0 - scale * cx], [0.0, scale, size / 2.0 - scale * cy]], np.float32)


def box_around(bbox_xywh: np.ndarray | list, joints: np.ndarray) -> np.ndarray:
    """Smallest box (4,) xywh containing the bbox and every visible joint (e.g. an estimated head)."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    x0, y0, x1, y1 = x, y, x + w, y + h
    vis = joints[:, 2] > 0
    if vis.any():
        x0 = min(x0, float(joints[vis, 0].min()))
        y0 = min(y0, float(joints[vis, 1].min()))
        x1 = max(x1, float(joints[vis, 0].max()))
        y1 = max(y1, float(joints[vis, 1].max()))
    return np.array([x0, y0, x1 - x0, y1 - y0], np.float32)


def warp_image(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """(H,W,3) uint8 -> (size,size,3) uint8, bilinear, black outside the image."""
    return cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def warp_mask(mask: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """(H,W) uint8 -> (size,size) uint8, nearest neighbour so labels stay labels."""
    return cv2.warpAffine(mask, affine, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)


def warp_points(joints: np.ndarray, affine: np.ndarray, size: int | None = None) -> np.ndarray:
    """(K,3) x, y, v -> (K,3) in crop coordinates; missing stay (0,0,0).

    With `size`, joints that land outside the crop become missing.
    """
    out = np.zeros_like(joints, dtype=np.float32)
    vis = joints[:, 2] > 0
    xy1 = np.concatenate([joints[:, :2], np.ones((len(joints), 1), np.float32)], axis=1)
    out[:, :2] = xy1 @ affine.T
    out[:, 2] = joints[:, 2]
    if size is not None:
        inside = (out[:, 0] >= 0) & (out[:, 1] >= 0) & (out[:, 0] <= size - 1) & (out[:, 1] <= size - 1)
        vis &= inside
    out[~vis] = 0.0
    return out


Window = tuple[int, int, int, int]  # (y0, y1, x0, x1) of an image: rows y0..y1-1, columns x0..x1-1


def crop_footprint(affine: np.ndarray, size: int, orig_hw: tuple[int, int] | np.ndarray, pad: int = 2) -> Window:
    """The window of the original (H,W) image that an (S,S) crop made by `affine` (image -> crop
    pixels) covers, grown by `pad` pixels (bilinear interpolation reaches one pixel past the edge)
    and clipped to the image; empty (y0 == y1) when the crop misses the image."""
    h, w = (int(v) for v in orig_hw)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    image_xy = cv2.transform(corners[None], cv2.invertAffineTransform(np.asarray(affine, np.float64)))[0]
    (x0, y0), (x1, y1) = np.floor(image_xy.min(0)) - pad, np.ceil(image_xy.max(0)) + pad
    x0, x1 = int(min(max(x0, 0), w)), int(min(max(x1, 0), w))
    y0, y1 = int(min(max(y0, 0), h)), int(min(max(y1, 0), h))
    return (y0, max(y0, y1), x0, max(x0, x1))


def union_window(a: Window, b: Window) -> Window:
    """The smallest window holding both (an empty one adds nothing)."""
    if a[0] == a[1] or a[2] == a[3]:
        return b
    if b[0] == b[1] or b[2] == b[3]:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def paste_back_window(prob: np.ndarray, affine: np.ndarray, window: Window) -> np.ndarray:
    """paste_back restricted to `window`: (y1-y0, x1-x0) float32, equal to paste_back(...)[y0:y1, x0:x1]
    (the affine is moved to the window's origin), at the cost of the window, not of the photo."""
    y0, y1, x0, x1 = window
    moved = np.asarray(affine, np.float64).copy()
    moved[:, 2] += moved[:, :2] @ np.array([x0, y0], np.float64)
    return cv2.warpAffine(
        prob.astype(np.float32),
        moved,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderValue=0,
    )


def paste_back(prob: np.ndarray, affine: np.ndarray, orig_hw: tuple[int, int] | np.ndarray) -> np.ndarray:
    """(S,S) float32 crop prediction -> (H,W) float32 on the original image (0 outside the crop)."""
    h, w = (int(v) for v in orig_hw)
    return cv2.warpAffine(
        prob.astype(np.float32), affine, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0
    )
