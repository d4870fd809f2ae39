"""Person boxes as arrays: overlap, suppression, clipping, tiling, matching against the truth.

Boxes are (K, 5) float32 [x, y, w, h, score] in pixels (or (N, 4) xywh without a score).

    box_iou(box, boxes) -> (N,)              IoU of one (4,) box with each of (N, 4) boxes
    non_max_suppression(boxes, iou) -> (K', 5)   greedy NMS, the kept rows by score descending
    clip_boxes(boxes, image_hw) -> (K', 5)   clipped to the image, the empty ones dropped
    tiles(image_hw, grid, overlap)           (x0, y0, x1, y1) tiles of a grid x grid cut of an image
    _crosses_inner_edge(box, region, image_hw, tolerance)   whether a tile's box leaves it through
                                             an edge that is not the image's (models.people.detect)
    keypoint_box(keypoints, pad, pad_top) -> (4,) | None    box around the present (17, 3) keypoints
    match_detections(boxes, gt_boxes, ignore_boxes, iou) -> (tp, fp, gt count)   greedy COCO-style
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with each of (N, 4) boxes, all [x, y, w, h]. Returns (N,) float."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def non_max_suppression(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS. boxes: (K, 5) [x, y, w, h, score]. Returns the kept rows, by score descending."""
    if len(boxes) == 0:
        return np.zeros((0, 5), np.float32)
    order = np.argsort(-boxes[:, 4], kind="stable")
    boxes = boxes[order]
    keep = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if keep[i]:
            later = np.arange(i + 1, len(boxes))
            keep[later[box_iou(boxes[i], boxes[later, :4]) > iou_threshold]] = False
    return boxes[keep].astype(np.float32)


def clip_boxes(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Clip (K, 5) [x, y, w, h, score] boxes to an image of (H, W); drop those left empty."""
    height, width = image_hw
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    out = np.stack([x0, y0, x1 - x0, y1 - y0, boxes[:, 4]], axis=1).astype(np.float32)
    return out[(out[:, 2] > 0) & (out[:, 3] > 0)]


def tiles(image_hw: tuple[int, int], grid: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) tiles of a grid x grid cut of an (H, W) image, overlapping by `overlap`."""
    height, width = image_hw
    if grid == 1:
        return [(0, 0, width, height)]
    tile_w = width / (grid - (grid - 1) * overlap)
    tile_h = height / (grid - (grid - 1) * overlap)
    out = []
    for row in range(grid):
        for col in range(grid):
            x0 = col * tile_w * (1 - overlap)
            y0 = row * tile_h * (1 - overlap)
            x1 = min(width, int(np.ceil(x0 + tile_w)))
            y1 = min(height, int(np.ceil(y0 + tile_h)))
            out.append((int(x0), int(y0), x1, y1))
    return out


def _crosses_inner_edge(
    box: Sequence[float], region: tuple[int, int, int, int], image_hw: tuple[int, int], tolerance: float
) -> bool:
    """Whether xywh `box` sticks out of `region` by > tolerance * its size through a non-image edge."""
    x, y, w, h = box[:4]
    x0, y0, x1, y1 = region
    height, width = image_hw
    return bool(
        (x0 > 0 and x < x0 - tolerance * w)
        or (y0 > 0 and y < y0 - tolerance * h)
        or (x1 < width and x + w > x1 + tolerance * w)
        or (y1 < height and y + h > y1 + tolerance * h)
    )


def keypoint_box(keypoints: np.ndarray, pad: float, pad_top: float) -> np.ndarray | None:
    """Box around the present keypoints. keypoints: (17, 3) [x, y, v]. Returns (4,) xywh or None.

    The extent grows by pad * its height on the left, right and bottom, pad_top * height on top.
    """
    present = keypoints[keypoints[:, 2] > 0, :2]
    if len(present) == 0:
        return None
    (x0, y0), (x1, y1) = present.min(0), present.max(0)
    size = max(y1 - y0, x1 - x0)
    x0, x1 = x0 - pad * size, x1 + pad * size
    y0, y1 = y0 - pad_top * size, y1 + pad * size
    return np.array([x0, y0, x1 - x0, y1 - y0], np.float32)


def match_detections(
    boxes: np.ndarray, gt_boxes: np.ndarray, ignore_boxes: np.ndarray, iou_threshold: float = 0.5
) -> tuple[int, int, int]:
    """Greedy COCO-style matching of one image's detections to its ground truth.

    boxes: (K, 5) [x, y, w, h, score]; gt_boxes: (G, 4) people to find; ignore_boxes: (I, 4)
    people neither to find nor to punish (crowd, too small). A detection matching no ground truth
    at `iou_threshold` but an ignored box is not a false positive.
    Returns (true positives, false positives, ground-truth count).
    """
    gt_boxes, ignore_boxes = _as_box_array(gt_boxes), _as_box_array(ignore_boxes)
    matched = np.zeros(len(gt_boxes), bool)
    true_pos = false_pos = 0
    for box in boxes[np.argsort(-boxes[:, 4], kind="stable")] if len(boxes) else []:
        ious = box_iou(box[:4], gt_boxes) if len(gt_boxes) else np.zeros(0)
        ious = np.where(matched, -1.0, ious)
        if len(ious) and ious.max() >= iou_threshold:
            matched[int(ious.argmax())] = True
            true_pos += 1
        elif not (len(ignore_boxes) and box_iou(box[:4], ignore_boxes).max() >= iou_threshold):
            false_pos += 1
    return true_pos, false_pos, len(gt_boxes)


def _as_box_array(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    return np.asarray(boxes, np.float32).reshape(-1, 4)
