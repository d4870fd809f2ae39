"""models.quality: the expected IoU of a probability map with its own mask, and its calibration."""

from __future__ import annotations

import numpy as np
import pytest

from models.quality import Calibration, expected_iou, fit_calibration


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
    assert np.all(np.diff(cal.apply(grid)) >= 0)
    for lo, hi in ((0.0, 0.1), (0.45, 0.55), (0.9, 1.0)):
        inside = (raw >= lo) & (raw < hi)
        assert float(np.mean(cal.apply(raw[inside]))) == pytest.approx(float(true[inside].mean()), abs=0.05)
    assert Calibration.from_dict(cal.to_dict()) == cal
    # a noisy, non-monotone relation is pooled into a monotone one
    bumpy = fit_calibration(np.arange(6.0), np.array([0.1, 0.5, 0.3, 0.6, 0.55, 0.9]), bins=6)
    assert list(bumpy.iou) == pytest.approx([0.1, 0.4, 0.4, 0.575, 0.575, 0.9])
    with pytest.raises(ValueError):
        Calibration((0.5, 0.2), (0.1, 0.2))
