"""Tests of models/classical/crf.py: dense-CRF refinement and its coarse-to-fine grid search."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from models.classical.crf import DEFAULT_COARSE_GRID, NO_REFINEMENT, CRFParams, fine_grid, grid_search, mean_iou, refine

SIZE = 64


def _two_region_sample(seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A disc of one colour on a contrasting background, and a blurred, noisy, shifted guess of it.

    Returns image (size, size, 3) uint8, prob (size, size) float32, mask (size, size) uint8.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    centre = (size // 2 + int(rng.integers(-4, 5)), size // 2 + int(rng.integers(-4, 5)))
    cv2.circle(mask, centre, size // 4, 1, -1)
    image = np.where(mask[..., None] > 0, np.array([200, 40, 40]), np.array([30, 90, 200])).astype(np.float64)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    # The "network" is blurry, shifted by a few pixels and noisy: its boundary is wrong.
    guess = np.roll(mask.astype(np.float32), shift=(3, -3), axis=(0, 1))
    prob = cv2.GaussianBlur(guess, (0, 0), 4) + rng.normal(0, 0.15, guess.shape)
    prob = np.clip(prob, 0.0, 1.0).astype(np.float32)
    return image, prob, mask


def test_refine_keeps_shape_dtype_and_range() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    prob = rng.random((40, 56)).astype(np.float32)
    prob[0, 0], prob[0, 1] = 0.0, 1.0  # saturated inputs must still give finite unaries
    out = refine(image, prob, CRFParams())
    assert out.shape == (40, 56)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_refine_accepts_non_contiguous_inputs() -> None:
    image, prob, _ = _two_region_sample(0)
    image_view = np.asfortranarray(image)[:, ::-1][:, ::-1]
    prob_view = np.asfortranarray(prob)
    assert not image_view.flags.c_contiguous and not prob_view.flags.c_contiguous
    np.testing.assert_allclose(refine(image_view, prob_view), refine(image, prob), atol=1e-6)


def test_refine_improves_iou_on_two_colour_regions() -> None:
    for seed in range(3):
        image, prob, mask = _two_region_sample(seed)
        raw = mean_iou([prob], [mask])
        refined = mean_iou([refine(image, prob, CRFParams())], [mask])
        assert refined > raw + 0.05, (seed, raw, refined)
        assert refined > 0.9, (seed, refined)


def test_disabled_returns_input_unchanged() -> None:
    image, prob, _ = _two_region_sample(1)
    out = refine(image, prob, CRFParams(enabled=False))
    np.testing.assert_array_equal(out, prob)
    assert out.dtype == np.float32
    assert out is not prob  # a copy: callers may write into it


def test_refine_is_deterministic() -> None:
    image, prob, _ = _two_region_sample(2)
    np.testing.assert_array_equal(refine(image, prob), refine(image, prob))


def test_refine_rejects_bad_shapes() -> None:
    image, prob, _ = _two_region_sample(0)
    with pytest.raises(ValueError, match="image must be"):
        refine(image[:-1], prob)
    with pytest.raises(ValueError, match="prob must be"):
        refine(image, prob[None])
    with pytest.raises(ValueError, match="uint8"):
        refine(image.astype(np.float32), prob)
    with pytest.raises(ValueError, match="NaN"):
        refine(image, np.where(prob > 0.5, np.nan, prob))


def test_params_round_trip_and_validation() -> None:
    params = CRFParams(iterations=3, bilateral_sxy=30.0, enabled=True)
    assert CRFParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    assert CRFParams.from_dict({"enabled": False}) == NO_REFINEMENT
    with pytest.raises(ValueError, match="unknown keys"):
        CRFParams.from_dict({"sxy": 3})
    with pytest.raises(ValueError, match="iterations"):
        CRFParams(iterations=0)
    with pytest.raises(ValueError, match="bilateral_srgb"):
        CRFParams(bilateral_srgb=0)


def test_mean_iou_conventions() -> None:
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 1
    assert mean_iou([mask.astype(np.float32)], [mask]) == 1.0
    assert mean_iou([np.zeros((4, 4))], [np.zeros((4, 4))]) == 1.0  # both empty
    assert mean_iou([np.ones((4, 4))], [mask]) == pytest.approx(0.5)
    assert mean_iou([np.full((4, 4), 0.5)], [mask]) == pytest.approx(0.5)  # threshold is inclusive


SMALL_GRID = {"gaussian_sxy": [3.0], "bilateral_sxy": [10.0, 40.0], "bilateral_compat": [2.0, 6.0]}


def test_grid_search_never_worse_than_raw_and_deterministic() -> None:
    samples = [_two_region_sample(seed) for seed in range(3)]
    images, probs, masks = (list(x) for x in zip(*samples, strict=True))
    raw_score = mean_iou(probs, masks)
    best, table = grid_search(images, probs, masks, SMALL_GRID, refine_factor=1.5)
    scores = dict(table)
    assert table[0] == (NO_REFINEMENT, raw_score)
    assert scores[best] == max(scores.values())
    assert scores[best] >= raw_score
    assert best.enabled  # on this data the CRF helps, so refinement must be chosen
    # Coarse (1 * 2 * 2) + distinct fine points (3 * 3, minus the coarse best itself) + raw.
    assert len(table) == 1 + 4 + 8
    assert len({p for p, _ in table}) == len(table)
    best_again, table_again = grid_search(images, probs, masks, SMALL_GRID, refine_factor=1.5)
    assert best_again == best and table_again == table


def test_grid_search_keeps_raw_when_crf_only_hurts_or_ties() -> None:
    image, prob, mask = _two_region_sample(0)

    def harmful(img: np.ndarray, p: np.ndarray, params: CRFParams) -> np.ndarray:
        return p if not params.enabled else np.zeros_like(p)

    def identity(img: np.ndarray, p: np.ndarray, params: CRFParams) -> np.ndarray:
        return p

    for fn in (harmful, identity):
        best, table = grid_search([image], [prob], [mask], SMALL_GRID, refine_fn=fn)
        assert best == NO_REFINEMENT, fn.__name__
        assert len(table) == 1 + 4  # no fine stage around "no refinement"


def test_grid_search_fine_stage_explores_around_best_coarse_point() -> None:
    image, prob, mask = _two_region_sample(0)
    target = 36.0  # not on the coarse grid; reachable only by the fine stage (24 * 1.5)

    def fake_metric(refined: list[np.ndarray], masks: list[np.ndarray]) -> float:
        return float(-abs(refined[0].flat[0] - target))

    def encode_sxy(img: np.ndarray, p: np.ndarray, params: CRFParams) -> np.ndarray:
        # The fake "refinement" writes its bilateral_sxy so the metric can score it.
        return np.full_like(p, params.bilateral_sxy if params.enabled else -1000.0)

    grid = {"bilateral_sxy": [8.0, 24.0, 80.0]}
    best, table = grid_search(
        [image], [prob], [mask], grid, refine_factor=1.5, refine_fn=encode_sxy, metric=fake_metric
    )
    assert best.bilateral_sxy == pytest.approx(target)
    assert sorted(p.bilateral_sxy for p, _ in table if p.enabled) == pytest.approx([8, 16, 24, 36, 80])


def test_fine_grid_rules() -> None:
    best = CRFParams(iterations=5, gaussian_sxy=3.0, bilateral_sxy=50.0)
    grid = fine_grid({"iterations": [3, 5], "gaussian_sxy": [3.0], "bilateral_sxy": [20, 50]}, best, 2.0)
    assert grid == {"iterations": [2, 5, 10], "gaussian_sxy": [3.0], "bilateral_sxy": [25.0, 50.0, 100.0]}
    with pytest.raises(ValueError, match="refine_factor"):
        fine_grid(grid, best, 1.0)


def test_grid_search_rejects_bad_grid_and_inputs() -> None:
    image, prob, mask = _two_region_sample(0)
    with pytest.raises(ValueError, match="unknown grid keys"):
        grid_search([image], [prob], [mask], {"sxy": [1.0]})
    with pytest.raises(ValueError, match="no values"):
        grid_search([image], [prob], [mask], {"bilateral_sxy": []})
    with pytest.raises(ValueError, match="1 images, 1 probs, 0 masks"):
        grid_search([image], [prob], [], SMALL_GRID)


def test_default_grid_is_valid() -> None:
    for key, values in DEFAULT_COARSE_GRID.items():
        assert values, key
        CRFParams(**{key: values[0]})
