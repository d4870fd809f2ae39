"""Mask metrics: IoU per instance, summaries, boundary F-score."""

from __future__ import annotations

import cv2
import numpy as np


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two binary (H,W) masks; 1.0 when both are empty.

    `ignore` (H,W) bool marks pixels left out of both counts (e.g. VOC's void band).
    """
    p, g = pred.astype(bool), gt.astype(bool)
    if ignore is not None:
        keep = ~ignore.astype(bool)
        p, g = p & keep, g & keep
    union = np.logical_or(p, g).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(p, g).sum() / union)


def summarize(values: np.ndarray | list) -> dict[str, float]:
    """Mean, median, count of per-instance scores (NaN-free input expected)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "n": int(v.size)}


def boundary_f_score(pred: np.ndarray, gt: np.ndarray, tolerance_px: int) -> float:
    """F-measure of boundary pixels matched within `tolerance_px` (1.0 when both are empty)."""

    def boundary(m: np.ndarray) -> np.ndarray:
        m = m.astype(np.uint8)
        return (m - cv2.erode(m, np.ones((3, 3), np.uint8))).astype(bool)

    bp, bg = boundary(pred), boundary(gt)
    if not bp.any() and not bg.any():
        return 1.0
    if not bp.any() or not bg.any():
        return 0.0
    k = np.ones((2 * tolerance_px + 1, 2 * tolerance_px + 1), np.uint8)
    near_g = cv2.dilate(bg.astype(np.uint8), k).astype(bool)
    near_p = cv2.dilate(bp.astype(np.uint8), k).astype(bool)
    precision = (bp & near_g).sum() / bp.sum()
    recall = (bg & near_p).sum() / bg.sum()
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
