"""Pictures people look at: crops with mask and skeleton overlaid, tiled into one grid image."""

from __future__ import annotations

import cv2
import numpy as np

from models.sample import LIMBS, visible


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    joints: np.ndarray | None = None,
    color: tuple[int, int, int] = (0, 200, 255),
    alpha: float = 0.45,
) -> np.ndarray:
    """(H,W,3) uint8 RGB + (H,W) binary mask (+ (14,3) joints) -> (H,W,3) uint8 with overlays."""
    out = image.copy()
    m = mask.astype(bool)
    out[m] = ((1 - alpha) * out[m] + alpha * np.array(color)).astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, color, 1)
    if joints is not None:
        vis = visible(joints)
        pts = np.round(joints[:, :2]).astype(int)
        for a, b in LIMBS:
            if vis[a] and vis[b]:
                cv2.line(out, tuple(map(int, pts[a])), tuple(map(int, pts[b])), (255, 255, 255), 1, cv2.LINE_AA)
        for i in np.flatnonzero(vis):
            cv2.circle(out, tuple(map(int, pts[i])), 2, (255, 0, 0), -1)
    return out


LABEL_SCALE = 0.38  # caption font scale on a 160 px tile


def grid(tiles: list[np.ndarray], columns: int, labels: list[str] | None = None) -> np.ndarray:
    """Tile equally sized (H,W,3) uint8 images row-major into one image, with optional captions."""
    if not tiles:
        return np.zeros((1, 1, 3), np.uint8)
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    canvas = np.full((rows * h, columns * w, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        t = tile.copy()
        if labels is not None:
            # the caption shrinks to fit the tile (a long method name with its ms per person)
            width = cv2.getTextSize(labels[k], cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, 1)[0][0]
            scale = LABEL_SCALE * min(1.0, (w - 6) / max(width, 1))
            cv2.putText(t, labels[k], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(t, labels[k], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = t
    return canvas


# COCO-17 skeleton (pycocotools' person category, 0-based): legs, hips, torso, arms, face.
COCO17_LIMBS: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
# One colour per person, cycled (RGB, distinguishable on photos).
PERSON_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 80, 80), (80, 200, 255), (120, 255, 90), (255, 200, 40), (220, 90, 255), (40, 255, 210), (255, 130, 200),
)  # fmt: skip


def overlay_people(
    image: np.ndarray,
    masks: list[np.ndarray],
    keypoints: list[np.ndarray | None],
    boxes: list[np.ndarray],
    labels: list[str] | None = None,
    alpha: float = 0.4,
) -> np.ndarray:
    """A photo with every person's mask (one colour each), detector box, COCO-17 skeleton and label.

    image (H,W,3) uint8 RGB; masks: (H,W) bool per person; keypoints: (17,3) [x, y, v] or None per
    person (none drawn); boxes: (4,) xywh per person. Returns (H,W,3) uint8.
    """
    out = image.copy()
    for k, mask in enumerate(masks):
        color = np.array(PERSON_COLORS[k % len(PERSON_COLORS)])
        m = mask.astype(bool)
        out[m] = ((1 - alpha) * out[m] + alpha * color).astype(np.uint8)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for k, mask in enumerate(masks):
        color = tuple(int(c) for c in PERSON_COLORS[k % len(PERSON_COLORS)])
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, thickness)
        x, y, w, h = (int(round(float(v))) for v in boxes[k][:4])
        cv2.rectangle(out, (x, y), (x + w, y + h), color, 1)
        kps = keypoints[k]
        if kps is not None:
            present = kps[:, 2] > 0
            pts = np.round(kps[:, :2]).astype(int)
            for a, b in COCO17_LIMBS:
                if present[a] and present[b]:
                    cv2.line(out, tuple(map(int, pts[a])), tuple(map(int, pts[b])), color, thickness, cv2.LINE_AA)
            for i in np.flatnonzero(present):
                cv2.circle(out, tuple(map(int, pts[i])), thickness + 1, (255, 255, 255), -1)
        if labels is not None:
            origin = (x + 2, max(10, y - 3))
            cv2.putText(out, labels[k], origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(out, labels[k], origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return out
