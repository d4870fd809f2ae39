"""models/classical/graphcut.py: EM finds the mixtures that made the pixels; the cut follows colour and contrast."""

from __future__ import annotations

import numpy as np
import pytest

from models.classical.graphcut import (
    contrast_weights,
    fit_gmm,
    gmm_graph_cut,
    gmm_graphcut_baseline,
    slic_gmm_graphcut_baseline,
)
from models.sample.skeleton import NUM_JOINTS


def test_em_recovers_two_well_separated_components() -> None:
    rng = np.random.default_rng(0)
    pixels = np.vstack([rng.normal([20, 20, 20], 3, (500, 3)), rng.normal([200, 100, 50], 3, (300, 3))])
    gmm = fit_gmm(pixels, 2, 20, np.random.default_rng(1))
    order = np.argsort(gmm.means[:, 0])
    np.testing.assert_allclose(gmm.means[order], [[20, 20, 20], [200, 100, 50]], atol=1.0)
    np.testing.assert_allclose(gmm.weights[order], [500 / 800, 300 / 800], atol=0.01)
    assert gmm.log_likelihood(np.array([[20.0, 20, 20]]))[0] > gmm.log_likelihood(np.array([[110.0, 60, 35]]))[0]


def test_em_survives_a_flat_region_and_more_components_than_colours() -> None:
    gmm = fit_gmm(np.full((50, 3), 7.0), 5, 5, np.random.default_rng(0))
    assert np.isfinite(gmm.log_likelihood(np.full((3, 3), 7.0))).all()


def _two_tone(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A noisy bright square (the 'person') on a noisy dark background, and its mask."""
    rng = np.random.default_rng(3)
    image = rng.normal(50, 12, (size, size, 3))
    truth = np.zeros((size, size), bool)
    truth[12:36, 16:32] = True
    image[truth] = rng.normal(190, 12, (truth.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8), truth


@pytest.mark.parametrize("colour_space", ["rgb", "lab"])
def test_graph_cut_grows_small_seeds_to_the_region_of_their_colour(colour_space) -> None:
    image, truth = _two_tone()
    fg = np.zeros_like(truth)
    fg[22:26, 22:26] = True
    bg = np.zeros_like(truth)
    bg[:4] = True
    mask = gmm_graph_cut(image, fg, bg, components=2, colour_space=colour_space) > 0
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.95


def test_smoothness_cleans_the_noise_that_colour_alone_gets_wrong() -> None:
    rng = np.random.default_rng(5)
    truth = np.zeros((48, 48), bool)
    truth[12:36, 16:32] = True
    image = np.where(truth[..., None], rng.normal(150, 40, (48, 48, 3)), rng.normal(90, 40, (48, 48, 3)))
    image = np.clip(image, 0, 255).astype(np.uint8)
    fg, bg = np.zeros_like(truth), np.zeros_like(truth)
    fg[22:26, 22:26], bg[:2] = True, True
    errors = {}
    for smoothness in (0.0, 5.0):
        mask = gmm_graph_cut(image, fg, bg, components=2, smoothness=smoothness) > 0
        errors[smoothness] = int((mask != truth).sum())
    # measured: 289 wrong pixels without the pairwise term, 8 with it (this weak-colour image needs
    # a smaller weight than photos, where 50 (GrabCut's) fits: the unaries are larger there)
    assert errors[5.0] < 0.1 * errors[0.0]


def test_contrast_weights_are_small_across_edges() -> None:
    image, _ = _two_tone()
    w_right, w_down = contrast_weights(image.astype(np.float64), 10.0)
    assert w_right[20, 15] < 0.1 * w_right[20, 5] and w_right[:, -1].max() == 0 and w_down[-1].max() == 0


def test_degenerate_seeds_and_missing_joints() -> None:
    image, truth = _two_tone()
    only_fg = gmm_graph_cut(image, truth, np.zeros_like(truth))
    np.testing.assert_array_equal(only_fg, truth.astype(np.float32))
    none = np.zeros((NUM_JOINTS, 3), np.float32)
    assert gmm_graphcut_baseline(image, none).max() == 0 and slic_gmm_graphcut_baseline(image, none).max() == 0
    with pytest.raises(ValueError, match="colour_space"):
        gmm_graph_cut(image, truth, ~truth, colour_space="hsv")


def test_skeleton_seeded_baselines_find_the_bar() -> None:
    image, truth = _two_tone(64)
    joints = np.zeros((NUM_JOINTS, 3), np.float32)
    joints[[1, 8], :] = [[24, 16, 2], [24, 32, 2]]  # neck -> right hip down the bright square
    for method in (gmm_graphcut_baseline, slic_gmm_graphcut_baseline):
        mask = method(image, joints, bg_thickness=30) > 0
        assert mask[truth].mean() > 0.6 and mask[~truth].mean() < 0.1, method.__name__
