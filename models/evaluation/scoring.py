"""Scoring predictions against ground truth: per-instance IoU at crop and full size, COCO mask AP, which
annotated people a prediction found."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from models.evaluation.metrics import boundary_f_score, iou
from models.evaluation.quality import expected_iou, mask_quality
from models.sample import paste_back, warp_mask


def score_instance(
    prob_crop: np.ndarray,
    mask_crop: np.ndarray,
    affine: np.ndarray,
    gt_full: np.ndarray,
    threshold: float,
    boundary_px: int,
    ignore_full: np.ndarray | None = None,
    prior_crop: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Scores of one prediction.

    prob_crop: (S,S) probability; mask_crop: (S,S) ground truth at crop size; affine: (2,3)
    original -> crop; gt_full: (H,W) ground truth at full size; ignore_full: (H,W) bool pixels
    left out of both IoUs (VOC's void band), or None; prior_crop: (S,S) the person's prior. Returns
    ({iou_crop, iou_full, boundary_f, confidence, quality, score}, (H,W) uint8 pasted-back mask).
    `confidence` is the mean probability inside the predicted mask; `quality` the mask's expected
    IoU (models.evaluation.quality.mask_quality, uncalibrated; with no prior: its expected_iou); `score`, what
    COCO AP ranks predictions by, is the quality.
    """
    pred_crop = prob_crop >= threshold
    full = paste_back(prob_crop, affine, gt_full.shape) >= threshold
    confidence = float(prob_crop[pred_crop].mean()) if pred_crop.any() else 0.0
    ignore_crop = None
    if ignore_full is not None:
        ignore_crop = warp_mask(ignore_full.astype(np.uint8), affine, prob_crop.shape[0]).astype(bool)
    quality = (
        expected_iou(prob_crop, threshold) if prior_crop is None else mask_quality(prob_crop, prior_crop, threshold)
    )
    scores = {
        "iou_crop": iou(pred_crop, mask_crop, ignore_crop),
        "iou_full": iou(full, gt_full, ignore_full),
        "boundary_f": boundary_f_score(pred_crop, mask_crop, boundary_px),
        "confidence": confidence,
        "quality": quality,
        "score": quality,
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
    stats = person_segm_stats(list(images.values()), annotations, [dict(r) for r in results])
    return {"AP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2])}


def person_segm_stats(images: list[dict], annotations: list[dict], results: list[dict]) -> np.ndarray:
    """pycocotools' 12 segm summary figures (COCOeval.stats: AP, AP50, AP75, AP small / medium /
    large, AR...) of the person category (id 1): images [{id, height, width}], annotations and
    results COCO records with category_id 1 (results not empty: loadRes refuses an empty list)."""
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


# COCO's area buckets (pixels of the annotated mask): small < 32^2 <= medium < 96^2 <= large.
SIZE_BUCKETS: dict[str, tuple[float, float]] = {
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, float("inf")),
}


def size_bucket(area: float) -> str:
    """COCO's size bucket ("small", "medium", "large") of a mask of `area` pixels."""
    for name, (low, high) in SIZE_BUCKETS.items():
        if low <= area < high:
            return name
    return "large"


def box_ious(pred_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """(K, G) float64 IoU of K predicted and G ground-truth boxes (xywh), both non-empty."""
    return np.asarray(
        mask_utils.iou(
            [list(map(float, b)) for b in pred_boxes], [list(map(float, b)) for b in gt_boxes], [0] * len(gt_boxes)
        )
    )


def box_matched_ious(
    pred_boxes: np.ndarray, gt_boxes: np.ndarray, mask_ious: np.ndarray, iou_threshold: float = 0.5
) -> np.ndarray:
    """Each prediction's mask IoU with the person its box found, NaN where its box found nobody.

    pred_boxes (K, 4) / gt_boxes (G, 4) xywh of one image, the ground truth's non-crowd people;
    mask_ious (K, G): the predictions' mask IoU with each of them (pycocotools' mask.iou of their
    RLEs, which the caller has for its other figures). A prediction's person is the one whose box overlaps its box
    most, at box IoU >= iou_threshold (several predictions may find the same person: a duplicate's
    mask is scored against the person it repeats). Matching by box, not by mask, keeps the mask's
    own IoU free to be anything, 0 included; a mask of someone the ground truth leaves out (or of
    no one) has no truth to compare with. Returns (K,) float64.
    """
    out = np.full(len(pred_boxes), np.nan)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return out
    box_iou = box_ious(pred_boxes, gt_boxes)
    person = box_iou.argmax(axis=1)
    found = box_iou[np.arange(len(pred_boxes)), person] >= iou_threshold
    out[found] = np.asarray(mask_ious)[np.flatnonzero(found), person[found]]
    return out


def people_found(
    gt_boxes: np.ndarray,
    gt_rles: list[dict],
    pred_boxes: np.ndarray,
    pred_rles: list[dict],
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Which ground-truth people some prediction overlaps at IoU >= iou_threshold, by box and by mask.

    gt_boxes (G, 4) / pred_boxes (K, 4) xywh; gt_rles / pred_rles: compressed RLEs of one image
    (pycocotools). A person counts as found when *some* prediction overlaps it (not a one-to-one
    match: how many people a detector and a segmenter reach, not how they rank; mask AP ranks).
    Returns (box_found (G,) bool, mask_found (G,) bool).
    """
    gt_count = len(gt_boxes)
    if gt_count == 0 or len(pred_boxes) == 0:
        return np.zeros(gt_count, bool), np.zeros(gt_count, bool)
    box_iou = box_ious(pred_boxes, gt_boxes)
    mask_iou = np.asarray(mask_utils.iou(pred_rles, gt_rles, [0] * gt_count))
    return (box_iou >= iou_threshold).any(axis=0), (mask_iou >= iou_threshold).any(axis=0)


def coco_person_ap(images: list[dict], annotations: list[dict], results: list[dict]) -> dict[str, float]:
    """COCO mask AP of the person category as COCO scores it: crowd regions ignored, areas as given.

    images: [{id, height, width}]; annotations: COCO person annotations {id, image_id,
    segmentation (RLE or polygons), area, bbox, iscrowd}; results: {image_id, segmentation (RLE),
    score}. Returns {AP, AP50, AP75, AP_small, AP_medium, AP_large} (-1 where a bucket has no
    person, as pycocotools; NaN when there is nothing to evaluate).
    """
    names = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
    if not images or not annotations:
        return dict.fromkeys(names, float("nan"))
    if not results:  # pycocotools cannot load an empty result list; nothing found scores 0
        return {n: 0.0 for n in names}
    people = [{**a, "category_id": 1} for a in annotations]
    stats = person_segm_stats(images, people, [{**r, "category_id": 1} for r in results])
    return {name: float(stats[k]) for k, name in enumerate(names)}
