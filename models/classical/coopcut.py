"""Cooperative cut (Jegelka & Bilmes, "Submodularity beyond submodular energies: coupling edges in
graph cuts", CVPR 2011) over the GMM colour models of models/classical/graphcut.py.

    edge_classes(features, classes, rng)        (H,W) class of each right / down grid edge
    cut_loads(mask, w_right, w_down, ...)       total weight of the cut edges of each class
    cooperative_energy(mask, ...)               unaries + sum over classes of the discounted load
    cooperative_cut(image, fg_seed, bg_seed)    (H,W) mask minimising that energy by majorise-minimise
    coopcut_baseline(image, joints, ...)        seeded by the skeleton (as the graph-cut baseline)

Energy. A graph cut pays each cut edge on its own, so it prefers short boundaries and cuts off thin
limbs. A cooperative cut groups the edges into classes and pays a concave function of each class's
cut weight: once a class has paid `theta` (a share of that class's total weight), its further cut
edges cost `discount` times their weight. A long boundary between the same two colours (a sleeve
against a wall) then costs little more than a short one. Here the classes are the unordered pairs
of colour clusters (k-means in the colour space, `classes` clusters) of an edge's two pixels,
the grouping J&B use in their experiments (they cluster the colour-pair features of edges);
the per-class function is their thresholded linear one, g(x) = min(x, t) + discount * max(x - t, 0).

Minimisation (J&B's iterative bound scheme): start from the ordinary graph cut; at the current cut
C, replace g by its two modular upper bounds tight at C (one from the marginal costs of C's edges
given the rest of C, one from the marginal costs given all other edges), solve a max-flow for each,
keep the best cut by the true energy, and stop when it no longer goes down (`iterations` at most).
Each step cannot raise the energy. The unaries come from GMMs fitted by EM on the graph cut's
two sides, as in models.classical.graphcut.gmm_graph_cut.

Differences from J&B, stated: the classes come from k-means of pixel colours, not of edge
features; theta is a share of each class's weight; there is no GMM refit inside the iterations.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.classical.baselines import _check_image_joints, skeleton_seeds
from models.classical.graphcut import (
    MIN_SEED_PIXELS,
    colour_features,
    contrast_weights,
    gmm_graph_cut,
    gmm_unaries,
    min_cut,
)
from models.sample import visible

MAX_KMEANS_PIXELS = 4000


def edge_classes(features: np.ndarray, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,3) float colours -> class ids (H,W) int of the right and down edges: the unordered pair of
    the k-means colour clusters (`classes` of them) of the edge's two pixels; -1 past the border."""
    h, w = features.shape[:2]
    flat = features.reshape(-1, 3).astype(np.float32)
    subset = flat if len(flat) <= MAX_KMEANS_PIXELS else flat[rng.choice(len(flat), MAX_KMEANS_PIXELS, False)]
    k = max(1, min(classes, len(np.unique(subset, axis=0))))
    cv2.setRNGSeed(int(rng.integers(1 << 31)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, _, centres = cv2.kmeans(subset, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    labels = ((flat[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1).reshape(h, w)

    def pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        low, high = np.minimum(a, b), np.maximum(a, b)
        return low * k + high

    right = np.full((h, w), -1, np.int64)
    down = np.full((h, w), -1, np.int64)
    right[:, :-1] = pair(labels[:, :-1], labels[:, 1:])
    down[:-1] = pair(labels[:-1], labels[1:])
    return right, down


def _cut_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H,W) bool -> which right / down edges the cut crosses, (H,W) bool each."""
    right = np.zeros(mask.shape, bool)
    down = np.zeros(mask.shape, bool)
    right[:, :-1] = mask[:, :-1] != mask[:, 1:]
    down[:-1] = mask[:-1] != mask[1:]
    return right, down


def cut_loads(
    mask: np.ndarray, w_right: np.ndarray, w_down: np.ndarray, c_right: np.ndarray, c_down: np.ndarray, n: int
) -> np.ndarray:
    """(n,) total weight of the cut edges of each class."""
    cut_right, cut_down = _cut_edges(mask)
    loads = np.bincount(c_right[cut_right], w_right[cut_right], minlength=n)
    return loads + np.bincount(c_down[cut_down], w_down[cut_down], minlength=n)


def _g(load: np.ndarray, theta: np.ndarray, discount: float) -> np.ndarray:
    """The per-class cost of a cut load: linear up to theta, then `discount` times as steep."""
    return np.minimum(load, theta) + discount * np.maximum(load - theta, 0.0)


def cooperative_energy(
    mask: np.ndarray,
    cost_fg: np.ndarray,
    cost_bg: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray],
    edge_class: tuple[np.ndarray, np.ndarray],
    theta: np.ndarray,
    discount: float,
) -> float:
    """Unaries of the labelling plus sum over classes of g(cut load)."""
    unary = cost_fg[mask].sum() + cost_bg[~mask].sum()
    loads = cut_loads(mask, *weights, *edge_class, len(theta))
    return float(unary + _g(loads, theta, discount).sum())


def _bound_weights(
    mask: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray],
    edge_class: tuple[np.ndarray, np.ndarray],
    theta: np.ndarray,
    totals: np.ndarray,
    discount: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The capacities of the two modular upper bounds of sum_g g(load_g) that are tight at `mask`:
    (1) C's edges at their marginal cost given the rest of C, others at g(w) (their cost alone);
    (2) C's edges at their marginal cost given every other edge, others at their marginal given C."""
    loads = cut_loads(mask, *weights, *edge_class, len(theta))
    cuts = _cut_edges(mask)
    first, second = [], []
    for w, c, cut in zip(weights, edge_class, cuts, strict=True):
        cls = np.where(c >= 0, c, 0)
        load, t, total = loads[cls], theta[cls], totals[cls]
        alone = _g(w, t, discount)
        given_rest_of_cut = _g(load, t, discount) - _g(load - w, t, discount)
        given_all_others = _g(total, t, discount) - _g(total - w, t, discount)
        given_cut = _g(load + w, t, discount) - _g(load, t, discount)
        valid = c >= 0
        first.append(np.where(valid, np.where(cut, given_rest_of_cut, alone), 0.0))
        second.append(np.where(valid, np.where(cut, given_all_others, given_cut), 0.0))
    return [tuple(first), tuple(second)]


def cooperative_cut(
    image_rgb: np.ndarray,
    fg_seed: np.ndarray,
    bg_seed: np.ndarray,
    classes: int = 6,
    theta: float = 0.05,
    discount: float = 0.2,
    iterations: int = 6,
    components: int = 5,
    em_iterations: int = 10,
    smoothness: float = 50.0,
    colour_space: str = "lab",
    seed: int = 0,
) -> np.ndarray:
    """Foreground mask by cooperative cut (module doc). image_rgb (H,W,3) uint8; fg_seed, bg_seed
    (H,W) bool hard constraints. theta: the share of a class's total weight paid in full; discount:
    the slope beyond it (1 = the ordinary graph cut). Returns (H,W) float32 {0,1}."""
    if not 0 < discount <= 1 or theta < 0 or classes < 1 or iterations < 0:
        raise ValueError("cooperative_cut: 0 < discount <= 1, theta >= 0, classes >= 1, iterations >= 0")
    fg_seed, bg_seed = np.asarray(fg_seed, bool), np.asarray(bg_seed, bool) & ~np.asarray(fg_seed, bool)
    start = gmm_graph_cut(image_rgb, fg_seed, bg_seed, components, em_iterations, 2, smoothness, colour_space, seed)
    mask = start > 0.5
    if fg_seed.sum() < MIN_SEED_PIXELS or bg_seed.sum() < MIN_SEED_PIXELS or mask.all() or not mask.any():
        return start
    rng = np.random.default_rng(seed)
    features = colour_features(image_rgb, colour_space)
    flat = features.reshape(-1, 3)

    cost_fg, cost_bg = gmm_unaries(flat, mask, ~mask, fg_seed, bg_seed, components, em_iterations, rng)
    weights = contrast_weights(features, smoothness)
    edge_class = edge_classes(features, classes, rng)
    n = classes * classes
    totals = np.zeros(n)
    for w, c in zip(weights, edge_class, strict=True):
        totals += np.bincount(c[c >= 0], w[c >= 0], minlength=n)
    thresholds = theta * totals
    energy = cooperative_energy(mask, cost_fg, cost_bg, weights, edge_class, thresholds, discount)
    for _ in range(iterations):
        candidates = [
            min_cut(cost_fg, cost_bg, *bound)
            for bound in _bound_weights(mask, weights, edge_class, thresholds, totals, discount)
        ]
        scored = [
            (cooperative_energy(m, cost_fg, cost_bg, weights, edge_class, thresholds, discount), i)
            for i, m in enumerate(candidates)
        ]
        best_energy, best = min(scored)
        if best_energy >= energy - 1e-6:
            break
        mask, energy = candidates[best], best_energy
    return mask.astype(np.float32)


def coopcut_baseline(
    image_rgb: np.ndarray,
    joints: np.ndarray,
    fg_thickness: int = 7,
    bg_thickness: int = 60,
    **kwargs: object,
) -> np.ndarray:
    """Cooperative cut seeded by the skeleton (the seeds of models.classical.graphcut.gmm_graphcut_baseline);
    kwargs go to cooperative_cut. (H,W) float32 {0,1}; zeros when no joint is visible."""
    joints = np.asarray(joints, np.float32)
    _check_image_joints(image_rgb, joints, "coopcut_baseline")
    shape = image_rgb.shape[:2]
    if not visible(joints).any():
        return np.zeros(shape, np.float32)
    fg, bg = skeleton_seeds(joints, shape, fg_thickness, bg_thickness)
    return cooperative_cut(image_rgb, fg, bg, **kwargs)
