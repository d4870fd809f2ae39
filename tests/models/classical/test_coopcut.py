"""models/classical/coopcut.py: a long boundary between two colours costs less than in a graph cut, and the
majorise-minimise steps never raise the energy."""

from __future__ import annotations

import numpy as np
import pytest

from models.classical.coopcut import coopcut_baseline, cooperative_cut, cooperative_energy, cut_loads, edge_classes
from models.classical.graphcut import colour_features, contrast_weights, gmm_graph_cut
from models.sample.skeleton import NUM_JOINTS


def _body_and_arm(size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A bright body with a long thin arm on a dark background (low contrast, noisy): image, truth,
    the foreground seed (the body's middle) and the background seed (the border)."""
    rng = np.random.default_rng(5)
    image = rng.normal(90, 14, (size, size, 3))
    truth = np.zeros((size, size), bool)
    truth[20:44, 8:24] = True  # body
    truth[30:33, 24:60] = True  # arm, 3 px wide
    image[truth] = rng.normal(150, 14, (truth.sum(), 3))
    fg = np.zeros_like(truth)
    fg[26:38, 12:20] = True
    bg = np.ones_like(truth)
    bg[4:-4, 4:-2] = False
    return np.clip(image, 0, 255).astype(np.uint8), truth, fg, bg


def test_edge_classes_are_unordered_colour_pairs_and_the_border_has_none() -> None:
    features = np.zeros((4, 4, 3))
    features[:, 2:] = 200.0
    right, down = edge_classes(features, 2, np.random.default_rng(0))
    assert (right[:, -1] == -1).all() and (down[-1] == -1).all()
    assert len(np.unique(right[:, 1])) == 1 and right[0, 1] not in (right[0, 0], right[0, 2])  # the 0|200 pair
    assert right[0, 0] != right[0, 2] and (down[:-1, 0] == right[0, 0]).all()


def test_cooperative_cut_keeps_a_thin_arm_that_the_graph_cut_cuts_off() -> None:
    image, truth, fg, bg = _body_and_arm()
    # strong smoothing: the plain cut's cheapest boundary goes round the body and drops the arm
    plain = gmm_graph_cut(image, fg, bg, smoothness=800.0) > 0
    coop = cooperative_cut(image, fg, bg, smoothness=800.0, theta=0.02, discount=0.1) > 0
    arm = np.zeros_like(truth)
    arm[30:33, 30:56] = True
    assert plain[arm].mean() < 0.2 and coop[arm].mean() > 0.9
    assert coop[~truth].mean() < 0.02


def test_each_step_lowers_the_energy_and_discount_one_is_the_graph_cut() -> None:
    image, truth, fg, bg = _body_and_arm()
    features = colour_features(image, "lab")
    weights = contrast_weights(features, 120.0)
    classes = edge_classes(features, 6, np.random.default_rng(0))
    loads = cut_loads(truth, *weights, *classes, 36)
    cut_right = truth[:, :-1] != truth[:, 1:]
    cut_down = truth[:-1] != truth[1:]
    assert loads.sum() == pytest.approx(weights[0][:, :-1][cut_right].sum() + weights[1][:-1][cut_down].sum())
    zeros = np.zeros(truth.shape)
    theta = np.full(36, 1.0)
    full = cooperative_energy(truth, zeros, zeros, weights, classes, theta, 1.0)
    discounted = cooperative_energy(truth, zeros, zeros, weights, classes, theta, 0.1)
    assert discounted < full == pytest.approx(loads.sum())
    np.testing.assert_array_equal(
        cooperative_cut(image, fg, bg, discount=1.0, smoothness=120.0), gmm_graph_cut(image, fg, bg, smoothness=120.0)
    )


def test_the_baseline_needs_joints_and_rejects_bad_settings() -> None:
    image, truth, fg, bg = _body_and_arm()
    assert coopcut_baseline(image, np.zeros((NUM_JOINTS, 3), np.float32)).max() == 0
    with pytest.raises(ValueError, match="discount"):
        cooperative_cut(image, fg, bg, discount=0.0)
