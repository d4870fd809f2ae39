"""Pictures people look at: crops with mask and skeleton overlaid, tiled into one grid image."""

from __future__ import annotations

import cv2
import numpy as np

from models.skeleton import LIMBS, visible


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
