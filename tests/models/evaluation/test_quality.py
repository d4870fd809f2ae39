"""models.evaluation.quality: a mask's quality from its probability map and its prior, and its calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from models.evaluation.quality import (
    MASK_KINDS,
    PRIOR_EXPONENT,
    QUALITY_FILE,
    Calibration,
    QualityHead,
    better_overlaps,
    combine_quality,
    expected_iou,
    fit_calibration,
    fit_quality_head,
    image_overlap_decay,
    mask_quality,
    overlap_decay,
    photo_overlap_decay,
    prior_agreement,
    read_calibration,
    write_calibration,
)


def test_a_sharp_map_expects_a_high_iou_and_an_unsure_one_a_low_one():
    sharp = np.zeros((20, 20))
    sharp[5:15, 5:15] = 0.99
    assert expected_iou(sharp) == pytest.approx(0.99)
    blob = np.full((20, 20), 0.45)
    blob[5:15, 5:15] = 0.55  # the same mask, every pixel near the threshold
    assert expected_iou(blob) == pytest.approx(100 * 0.55 / (100 + 300 * 0.45))
    assert expected_iou(blob) < 0.5 < expected_iou(sharp)
    assert expected_iou(np.zeros((4, 4))) == 0.0  # no mask, no quality
    assert expected_iou(np.full((4, 4), 0.7), threshold=0.8) == 0.0


def test_the_expected_iou_is_the_mean_iou_of_masks_drawn_from_the_map():
    """The definition: with pixels drawn as coins of probability p, the mean IoU of the truth with
    the thresholded mask is close to expected_iou (ratio of expectations, on many pixels)."""
    rng = np.random.default_rng(0)
    prob = np.clip(rng.beta(0.6, 0.6, (60, 60)), 0, 1)
    mask = prob >= 0.5
    ious = []
    for _ in range(200):
        truth = rng.random(prob.shape) < prob
        ious.append((truth & mask).sum() / (truth | mask).sum())
    assert expected_iou(prob) == pytest.approx(np.mean(ious), abs=0.01)


def test_the_calibration_is_monotone_and_reads_as_the_measured_iou():
    rng = np.random.default_rng(1)
    raw = rng.random(400)
    true = np.clip(0.2 + 0.7 * raw**2 + rng.normal(0, 0.05, raw.size), 0, 1)
    cal = fit_calibration(raw, true, bins=10)
    grid = np.linspace(0, 1, 50)
    assert np.all(np.diff(cal.apply(grid)) > 0)  # strictly: the raw score's order is kept
    for lo, hi in ((0.0, 0.1), (0.45, 0.55), (0.9, 1.0)):
        inside = (raw >= lo) & (raw < hi)
        assert float(np.mean(cal.apply(raw[inside]))) == pytest.approx(float(true[inside].mean()), abs=0.05)
    assert Calibration.from_dict(cal.to_dict()) == cal
    # a noisy, non-monotone relation is pooled into a monotone one
    bumpy = fit_calibration(np.arange(6.0), np.array([0.1, 0.5, 0.3, 0.6, 0.55, 0.9]), bins=6)
    assert list(bumpy.iou) == pytest.approx([0.1, 0.4, 0.4, 0.575, 0.575, 0.9])
    assert bumpy.apply(1.5) < bumpy.apply(2.5) < bumpy.apply(3.0)  # pooled knots still rank apart
    with pytest.raises(ValueError):
        Calibration((0.5, 0.2), (0.1, 0.2))


def test_prior_agreement_falls_when_the_mask_leaves_the_limbs_or_takes_a_neighbour():
    prior = np.zeros((20, 20), np.uint8)
    prior[5:15, 8:12] = 255  # the person's limbs
    own = np.zeros((20, 20))
    own[5:15, 8:12] = 0.9
    assert prior_agreement(own, prior) == pytest.approx(1.0)
    neighbour = own.copy()
    neighbour[5:15, 12:20] = 0.9  # a second body taken along
    assert prior_agreement(neighbour, prior) == pytest.approx(40 / 120)
    assert prior_agreement(np.zeros((20, 20)), np.zeros((20, 20))) == 0.0
    assert prior_agreement(own, prior.astype(np.float32) / 255) == pytest.approx(1.0)  # float prior in [0, 1]


def test_quality_combines_both_parts_and_keeps_their_order_through_a_calibration(tmp_path):
    prior = np.zeros((20, 20), np.uint8)
    prior[5:15, 8:12] = 255
    sharp, blob = np.zeros((20, 20)), np.zeros((20, 20))
    sharp[5:15, 8:12] = 0.95
    blob[3:17, 6:16] = 0.6
    raw_sharp, raw_blob = mask_quality(sharp, prior), mask_quality(blob, prior)
    assert raw_sharp == pytest.approx(expected_iou(sharp))  # agreement 1: the network's own estimate
    assert raw_blob == pytest.approx(expected_iou(blob) * prior_agreement(blob, prior) ** PRIOR_EXPONENT)
    assert 0 < raw_blob < raw_sharp <= 1
    cal = Calibration((0.3, 0.6, 0.9), (0.2, 0.5, 0.5))
    assert mask_quality(blob, prior, calibration=cal) < mask_quality(sharp, prior, calibration=cal)
    assert combine_quality(0.8, 1.0, cal) == pytest.approx(cal.apply(0.8))
    path = tmp_path / QUALITY_FILE
    assert read_calibration(path) is None  # no file: the raw score is the quality
    write_calibration(path, cal, fitted_on="test")
    back = read_calibration(path)
    assert back == cal and json.loads(path.read_text())["fitted_on"] == "test"
    path.write_text('{"raw": [0.5, 0.2], "iou": [0.1, 0.2]}')
    with pytest.raises(ValueError, match="not a quality calibration"):
        read_calibration(path)


def test_the_shipped_model_has_its_quality_head():
    """Fitted on the validation set's nightly masks (bench/quality.py --fit-calibration): the quality
    rises with the raw score and with the mask's size, and a box person's is lower than a posed
    person's of the same raw score and size, lowest where another person took its pose."""
    from models.utils.assets import SHIPPED_DIR

    head = read_calibration(SHIPPED_DIR / QUALITY_FILE)
    assert isinstance(head, QualityHead)
    grid = np.linspace(0.4, 0.9, 11)
    posed = [head.apply(r, "posed", 0.05) for r in grid]
    assert np.all(np.diff(posed) > 0) and all(0 <= q <= 1 for q in posed)
    assert head.apply(0.7, "posed", 0.001) < head.apply(0.7, "posed", 0.1)
    assert head.apply(0.7, "box_pose_lost", 0.05) < head.apply(0.7, "box", 0.05) < head.apply(0.7, "posed", 0.05)


def test_the_quality_head_is_fitted_by_least_squares_and_kept_in_quality_json(tmp_path):
    """fit_quality_head recovers the weights of IoUs made by a known head; apply clips to [0, 1];
    the head goes through quality.json and combine_quality reads the kind and the size."""
    rng = np.random.default_rng(3)
    n = 300
    raw = rng.uniform(0.3, 0.9, n)
    kinds = rng.choice(["posed", "box", "box_pose_lost"], n, p=[0.6, 0.3, 0.1]).tolist()
    shares = np.exp(rng.uniform(np.log(1e-4), np.log(0.5), n))
    offsets = {"posed": 0.0, "box": -0.15, "box_pose_lost": -0.4}
    truth = 0.1 + 0.8 * raw + np.array([offsets[k] for k in kinds]) + 0.03 * np.log(shares)
    head = fit_quality_head(raw, kinds, shares, truth + rng.normal(0, 0.01, n))
    assert head.bias == pytest.approx(0.1, abs=0.02) and head.raw_weight == pytest.approx(0.8, abs=0.02)
    offsets = dict(head.kind_offsets)
    assert offsets.pop("given") == pytest.approx(head.area_weight * np.median(np.log(shares)))
    assert offsets == pytest.approx({"box": -0.15, "box_pose_lost": -0.4}, abs=0.01)
    assert head.area_weight == pytest.approx(0.03, abs=0.003)
    assert head.apply(0.0, "box_pose_lost", 1e-9) == 0.0  # clipped to [0, 1]
    assert QualityHead(0.5, 0.8, (), 0.0).apply(1.0) == 1.0
    assert head.apply(0.5, "posed") == pytest.approx(0.1 + 0.4, abs=0.02)  # no size: its term left out
    typical = float(np.exp(np.median(np.log(shares))))  # a given person scores as a posed one of median size
    given = head.apply(0.5, "given", 1e-4)
    assert given == head.apply(0.5, "given", 0.5) == pytest.approx(head.apply(0.5, "posed", typical))
    assert combine_quality(0.6, 1.0, head, "box", 0.01) == pytest.approx(head.apply(0.6, "box", 0.01))
    only_posed = fit_quality_head(raw[:10], ["posed"] * 10, shares[:10], truth[:10])
    assert [k for k, _ in only_posed.kind_offsets] == ["given"]
    assert only_posed.apply(0.5, "box", 0.1) == only_posed.apply(0.5, "posed", 0.1)
    path = tmp_path / QUALITY_FILE
    write_calibration(path, head, fitted_on="test")
    assert read_calibration(path) == head and json.loads(path.read_text())["fitted_on"] == "test"
    with pytest.raises(ValueError, match="unknown mask kinds"):
        QualityHead(0.1, 0.8, (("crowd", -0.1),), 0.0)
    with pytest.raises(ValueError, match="raw_weight"):
        QualityHead(0.1, -0.8, (), 0.0)
    with pytest.raises(ValueError, match="at least 5"):
        fit_quality_head(raw[:3], kinds[:3], shares[:3], truth[:3])
    with pytest.raises(ValueError, match="given keypoints"):
        fit_quality_head(raw[:6], ["given"] * 6, shares[:6], truth[:6])
    assert set(MASK_KINDS) == {*offsets, "given", "posed"}


def test_a_mask_keeps_only_the_quality_a_better_mask_does_not_overlap():
    """overlap_decay: the best mask keeps its quality, one that repeats it loses all, one that
    half-overlaps it keeps (1 - IoU); masks without a quality neither decay nor are decayed."""
    ious = np.array([[1.0, 0.9, 0.0, 1.0], [0.9, 1.0, 0.5, 0.0], [0.0, 0.5, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    decayed = overlap_decay([0.6, 0.8, 0.7, None], ious)
    assert decayed[1] == pytest.approx(0.8)  # the best
    assert decayed[0] == pytest.approx(0.6 * 0.1)  # IoU 0.9 with the best
    assert decayed[2] == pytest.approx(0.7 * 0.5)  # below the best, not below mask 0 (0.6 < 0.7)
    assert decayed[3] is None
    assert better_overlaps([0.6, 0.8, 0.7, None], ious) == [(1, 0.9), None, (1, 0.5), None]
    # ties: the earlier mask is the better one
    assert overlap_decay([0.5, 0.5], np.array([[1.0, 0.4], [0.4, 1.0]])) == pytest.approx([0.5, 0.3])
    with pytest.raises(ValueError, match="ious must be"):
        overlap_decay([0.5, 0.5], np.eye(3))


def test_photo_overlap_decay_measures_the_overlap_of_rle_masks():
    a = np.zeros((20, 20), np.uint8)
    a[0:10, 0:10] = 1
    b = np.zeros((20, 20), np.uint8)
    b[0:10, 5:15] = 1  # IoU with a: 50 / 150
    c = np.zeros((20, 20), np.uint8)
    c[15:20, 15:20] = 1
    rles = [mask_utils.encode(np.asfortranarray(m)) for m in (a, b, c)]
    decayed = photo_overlap_decay([0.9, 0.6, 0.5], rles)
    assert decayed == pytest.approx([0.9, 0.6 * (1 - 1 / 3), 0.5])
    assert photo_overlap_decay([0.9], rles[:1]) == [0.9]
    with pytest.raises(ValueError, match="masks for"):
        photo_overlap_decay([0.9, 0.5], rles)


def test_image_overlap_decay_compares_masks_of_the_same_image_only():
    a = np.zeros((10, 10), np.uint8)
    a[:5] = 1
    rle = mask_utils.encode(np.asfortranarray(a))
    # the same mask in images 1, 2, 1: only image 1's second copy repeats a better mask
    assert image_overlap_decay([1, 2, 1], [0.9, 0.5, 0.7], [rle, rle, rle]) == pytest.approx([0.9, 0.5, 0.0])
    with pytest.raises(ValueError, match="image ids"):
        image_overlap_decay([1], [0.9, 0.5], [rle, rle])
