"""Scoring predictions against ground truth: per-instance IoU at crop and full size, COCO mask AP."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from models.crop import paste_back
from models.masks import encode_rle
from models.metrics import boundary_f_score, iou


def score_instance(prob_crop: np.ndarray, mask_crop: np.ndarray, affine: np.ndarray, gt_full: np.ndarray,
                   threshold: float, boundary_px: int) -> tuple[dict[str, float], np.ndarray]:  # fmt: skip
    """Scores of one prediction.

    prob_crop: (S,S) probability; mask_crop: (S,S) ground truth at crop size; affine: (2,3)
    original -> crop; gt_full: (H,W) ground truth at full size. Returns ({iou_crop, iou_full,
    boundary_f, score}, (H,W) uint8 pasted-back mask). `score` is the mean probability inside
    the predicted mask: the confidence COCO AP ranks predictions by.
    """
    pred_crop = prob_crop >= threshold
    full = paste_back(prob_crop, affine, gt_full.shape) >= threshold
    confidence = float(prob_crop[pred_crop].mean()) if pred_crop.any() else 0.0
    scores = {
        "iou_crop": iou(pred_crop, mask_crop),
        "iou_full": iou(full, gt_full),
        "boundary_f": boundary_f_score(pred_crop, mask_crop, boundary_px),
        "score": confidence,
    }
    return scores, full.astype(np.uint8)


def coco_mask_ap(gt_masks: list[tuple[int, int, np.ndarray]], results: list[dict]) -> dict[str, float]:
    """COCO mask AP for persons (pycocotools COCOeval, iouType="segm").

    gt_masks: [(image_id, instance_id, (H,W) mask)] - the evaluated instances; results: COCO
    results records {image_id, category_id, segmentation (RLE), score}. Returns {AP, AP50, AP75}
    (NaN when there is nothing to evaluate).
    """
    if not gt_masks or not results:
        return {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
    images, annotations = {}, []
    for k, (image_id, _instance_id, mask) in enumerate(gt_masks):
        h, w = mask.shape
        images[image_id] = {"id": image_id, "height": h, "width": w}
        rle = encode_rle(mask)
        ys, xs = np.nonzero(mask)
        bbox = [0.0, 0.0, 0.0, 0.0]
        if len(xs):
            bbox = [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]
        annotations.append({"id": k + 1, "image_id": image_id, "category_id": 1, "segmentation": rle,
                            "area": float(mask.sum()), "bbox": bbox, "iscrowd": 0})  # fmt: skip
    gt = COCO()
    gt.dataset = {"images": list(images.values()), "annotations": annotations,
                  "categories": [{"id": 1, "name": "person"}]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        dt = gt.loadRes([dict(r) for r in results])
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2])}
