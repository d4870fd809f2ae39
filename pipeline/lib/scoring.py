"""Scoring one method's predictions against the ground truth of one evaluation set (Evaluate's work).

score_predictions(records, root, cache_path, pred_path, threshold, boundary_px, progress)
    -> Scores: one row per instance (SCORE_FIELDS), COCO results (RLE), COCO mask AP
Scores.summary(extra)   the summary.json dict (mean/median per metric, AP, instances)
decay_image_overlaps(scores)   each instance's quality x (1 - its IoU with a better mask of its image)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from models.evaluation import coco_mask_ap, image_overlap_decay, score_instance, summarize
from models.sample import encode_rle
from pipeline.lib.cachefile import cache_samples, cache_size
from pipeline.lib.predictions import stream_predictions
from pipeline.lib.records import record_ignore, record_mask

# Columns of scores.csv (and of the report's iou.csv after set and method).
# score: what AP ranks by, the mask's quality (models/evaluation/quality.py); confidence: its mean probability
SCORE_FIELDS = ("image_id", "instance_id", "iou_crop", "iou_full", "boundary_f", "confidence", "quality", "score")


@dataclass
class Scores:
    """Per-instance rows, COCO results records and the mask AP of one method on one set."""

    rows: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    mask_ap: dict = field(default_factory=dict)

    def summary(self, **extra: object) -> dict:
        return {
            **extra,
            "instances": len(self.rows),
            "iou_crop": summarize([r["iou_crop"] for r in self.rows]),
            "iou_full": summarize([r["iou_full"] for r in self.rows]),
            "boundary_f": summarize([r["boundary_f"] for r in self.rows]),
            "mask_ap": self.mask_ap,
        }


def score_predictions(
    records: dict[int, dict],
    root: Path,
    cache_path: str,
    pred_path: str,
    threshold: float,
    boundary_px: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
    desc: str = "evaluate",
) -> Scores:
    """Score every sample of a cache (in its order) with the matching pred.h5 probabilities.

    records: persons.jsonl records by instance id (the full-size ground truth comes from them).
    Predictions are streamed, so memory stays flat; the ground truth for AP is kept as RLE.
    """
    scores, gt_masks = Scores(), []
    total = cache_size(cache_path)
    samples = cache_samples(cache_path, ("instance_id", "mask", "affine", "prior"))
    pairs = zip(samples, stream_predictions(pred_path), strict=True)
    for i, (sample, prob) in enumerate(tqdm(pairs, total=total, desc=desc)):
        record = records[int(sample["instance_id"])]
        gt_full = record_mask(record, root)
        ignore = record_ignore(record, root)
        row, full = score_instance(
            prob, sample["mask"], sample["affine"], gt_full, threshold, boundary_px, ignore, sample["prior"]
        )
        scores.rows.append({"image_id": record["image_id"], "instance_id": record["instance_id"], **row})
        gt_masks.append((record["image_id"], record["instance_id"], encode_rle(gt_full)))
        scores.results.append(
            {
                "image_id": record["image_id"],
                "category_id": 1,
                "segmentation": encode_rle(full),
                "score": row["score"],
                "instance_id": record["instance_id"],
            }
        )
        if i % 16 == 0:
            progress(i, total)
    decay_image_overlaps(scores)
    scores.mask_ap = coco_mask_ap(gt_masks, scores.results)
    return scores


def decay_image_overlaps(scores: Scores) -> None:
    """In place: each instance's quality and score x (1 - its mask's IoU with a better mask of the
    same image): models.evaluation.image_overlap_decay, as the nightly path scores its masks."""
    decayed = image_overlap_decay(
        [r["image_id"] for r in scores.results],
        [row["quality"] for row in scores.rows],
        [r["segmentation"] for r in scores.results],
    )
    for row, result, quality in zip(scores.rows, scores.results, decayed, strict=True):
        row["quality"] = row["score"] = result["score"] = quality
