"""pipeline.lib.report's sentences that compare two networks (the head, the pretrained encoder)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.lib.report import verdicts


def summary(mean: float) -> dict:
    return {"iou_full": {"mean": mean}}


def test_each_verdict_names_the_winner_on_every_set_that_holds_both_methods():
    per_set = {
        "coco/val": {
            "unet-coco": summary(0.74),
            "unet-coco-pretrained": summary(0.78),
            "unet-coco-paper": summary(0.7),
        },
        "ochuman/val": {"unet-coco": summary(0.55), "unet-coco-pretrained": summary(0.52)},
    }
    head, pretrained = verdicts(per_set)
    assert head == "Which head wins, by mean IoU (full): coco/val: logit (logit 0.740, paper 0.700)."
    assert pretrained.startswith("Pretrained encoder or from scratch, by mean IoU (full): ")
    assert "coco/val: pretrained (pretrained 0.780, from scratch 0.740)" in pretrained
    assert "ochuman/val: from scratch (pretrained 0.520, from scratch 0.550)" in pretrained


def test_no_sentence_without_both_methods():
    assert verdicts({"coco/val": {"unet-coco": summary(0.7), "grabcut": summary(0.72)}}) == []


def test_evaluate_decays_each_instances_quality_by_the_better_masks_of_its_image():
    """Two instances of one image with the same mask: the better keeps its quality (and score), the
    other's falls to 0; an instance of another image is untouched."""
    from models.sample import encode_rle
    from pipeline.lib.scoring import Scores, decay_image_overlaps

    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    scores = Scores()
    for image_id, quality in ((1, 0.7), (1, 0.8), (2, 0.5)):
        scores.rows.append({"image_id": image_id, "quality": quality, "score": quality})
        scores.results.append({"image_id": image_id, "segmentation": encode_rle(mask), "score": quality})
    decay_image_overlaps(scores)
    assert [r["quality"] for r in scores.rows] == pytest.approx([0.0, 0.8, 0.5])
    assert [r["score"] for r in scores.results] == pytest.approx([0.0, 0.8, 0.5])
