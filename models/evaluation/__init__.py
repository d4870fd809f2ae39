"""How good a mask is: against the truth (metrics, COCO scoring) and without it (quality), and the
pictures people look at (imports models.sample and models.utils only).

    metrics.py     iou(pred, gt, ignore), summarize(ious), boundary_f_score(...)
    scoring.py     score_instance(...), coco_mask_ap(...), coco_person_ap(...), people_found(...),
                   box_ious(...), box_matched_ious(...),
                   size_bucket(area), SIZE_BUCKETS
    quality.py     mask_quality(...), expected_iou(...), prior_agreement(...), combine_quality(...),
                   Calibration, fit_calibration / read_calibration / write_calibration, QUALITY_FILE, QUALITY_RULE,
                   QualityHead, QualityModel, fit_quality_head, MASK_KINDS,
                   model_calibration, overlap_decay / photo_overlap_decay / image_overlap_decay, better_overlaps,
                   rle_ious
    visualize.py   overlay(...), grid(...), overlay_people(...)
"""

from models.evaluation.metrics import boundary_f_score, iou, summarize
from models.evaluation.quality import (
    MASK_KINDS,
    QUALITY_FILE,
    QUALITY_RULE,
    Calibration,
    QualityHead,
    QualityModel,
    better_overlaps,
    combine_quality,
    expected_iou,
    fit_calibration,
    fit_quality_head,
    image_overlap_decay,
    mask_quality,
    model_calibration,
    overlap_decay,
    photo_overlap_decay,
    prior_agreement,
    read_calibration,
    rle_ious,
    write_calibration,
)
from models.evaluation.scoring import (
    SIZE_BUCKETS,
    box_ious,
    box_matched_ious,
    coco_mask_ap,
    coco_person_ap,
    people_found,
    score_instance,
    size_bucket,
)
from models.evaluation.visualize import grid, overlay, overlay_people

__all__ = [
    "MASK_KINDS",
    "QUALITY_FILE",
    "QUALITY_RULE",
    "SIZE_BUCKETS",
    "Calibration",
    "QualityHead",
    "QualityModel",
    "better_overlaps",
    "boundary_f_score",
    "box_ious",
    "box_matched_ious",
    "coco_mask_ap",
    "coco_person_ap",
    "combine_quality",
    "expected_iou",
    "image_overlap_decay",
    "fit_calibration",
    "fit_quality_head",
    "grid",
    "iou",
    "mask_quality",
    "overlay",
    "overlay_people",
    "people_found",
    "prior_agreement",
    "model_calibration",
    "overlap_decay",
    "photo_overlap_decay",
    "read_calibration",
    "rle_ious",
    "score_instance",
    "size_bucket",
    "summarize",
    "write_calibration",
]
