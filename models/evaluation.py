"""Scoring predictions against ground truth: per-instance IoU at crop and full size, COCO mask AP."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from models.crop import paste_back, warp_mask
from models.metrics import boundary_f_score, iou


def score_instance(
    prob_crop: np.ndarray,
    mask_crop: np.ndarray,
    affine: np.ndarray,
    gt_full: np.ndarray,
    threshold: float,
    boundary_px: int,
    ignore_full: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Scores of one prediction.

    prob_crop: (S,S) probability; mask_crop: (S,S) ground truth at crop size; affine: (2,3)
    original -> crop; gt_full: (H,W) ground truth at full size; ignore_full: (H,W) bool pixels
    left out of both IoUs (VOC's void band), or None. Returns ({iou_crop, iou_full, boundary_f,
    score}, (H,W) uint8 pasted-back mask). `score` is the mean probability inside the predicted
    mask: the confidence COCO AP ranks predictions by.
    """
    pred_crop = prob_crop >= threshold
    full = paste_back(prob_crop, affine, gt_full.shape) >= threshold
    confidence = float(prob_crop[pred_crop].mean()) if pred_crop.any() else 0.0
    ignore_crop = None
    if ignore_full is not None:
        ignore_crop = warp_mask(ignore_full.astype(np.uint8), affine, prob_crop.shape[0]).astype(bool)
    scores = {
        "iou_crop": iou(pred_crop, mask_crop, ignore_crop),
        "iou_full": iou(full, gt_full, ignore_full),
        "boundary_f": boundary_f_score(pred_crop, mask_crop, boundary_px),
        "score": confidence,
    }
    return scores, full.astype(np.uint8)


def coco_mask_ap(gt_masks: list[tuple[int, int, dict]], results: list[dict]) -> dict[str, float]:
    """COCO mask AP for persons (pycocotools COCOeval, iouType="segm").

    gt_masks: [(image_id, instance_id, compressed RLE of the (H,W) mask)] - the evaluated
    instances, as RLE so that a whole split fits in memory; results: COCO
    results records {image_id, category_id, segmentation (RLE), score}. Returns {AP, AP50, AP75}
    (NaN when there is nothing to evaluate).
    """
    if not gt_masks or not results:
        return {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
    images, annotations = {}, []
    for k, (image_id, _instance_id, rle) in enumerate(gt_masks):
        h, w = rle["size"]
        images[image_id] = {"id": image_id, "height": h, "width": w}
        compressed = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        annotations.append(
            {
                "id": k + 1,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": rle,
                "area": float(mask_utils.area(compressed)),
                "bbox": [float(v) for v in mask_utils.toBbox(compressed)],
                "iscrowd": 0,
            }
        )
    gt = COCO()
    gt.dataset = {
        "images": list(images.values()),
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        dt = gt.loadRes([dict(r) for r in results])
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2])}
