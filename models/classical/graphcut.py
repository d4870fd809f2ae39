"""Gaussian-mixture colour models fitted by EM, and a graph cut over them (the paper's classical method).

    fit_gmm(pixels, components, iterations, rng)     EM for a full-covariance GMM -> GMM
    GMM.log_likelihood(pixels)                        (N,) log p(pixel)
    contrast_weights(image, smoothness)               pairwise capacities of a 4-connected grid
    gmm_unaries(flat, fg_pixels, bg_pixels, ...)      (H,W) costs of each label from two EM-fitted GMMs
    min_cut(cost_fg, cost_bg, w_right, w_down)        (H,W) bool foreground of the max-flow / min cut
    gmm_graph_cut(image, fg_seed, bg_seed, ...)       binary mask: GMM unaries + contrast pairwise, max-flow
    gmm_graphcut_baseline(image, joints, ...)         seeded by the skeleton (as the GrabCut baseline)
    slic_gmm_graphcut_baseline(image, joints, ...)    seeded by the SLIC superpixels the skeleton crosses

Energy (Boykov & Jolly; Rother et al.'s GrabCut without its box): each pixel p pays
-log p(I_p | fg) or -log p(I_p | bg); each neighbour pair pays smoothness * exp(-beta |I_p - I_q|^2)
when cut, beta = 1 / (2 <|I_p - I_q|^2>). Seeds are hard constraints. After each cut the two
mixtures are refitted on the pixels of each side (`rounds`). Colours are RGB or CIELAB. The
max-flow solver is PyMaxflow's (Boykov-Kolmogorov).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import maxflow
import numpy as np

from models.classical.baselines import _check_image_joints, skeleton_seeds, slic_superpixels
from models.sample import visible

COLOUR_SPACES = ("rgb", "lab")
MAX_FIT_PIXELS = 4000  # EM runs on at most this many pixels of a side (a random subset): 15x faster
MIN_SEED_PIXELS = 10  # fewer seed pixels than this cannot fit a mixture: the seeds are the answer
HARD = 1e9  # capacity of a hard constraint (larger than any sum of soft terms on a 256x256 grid)
COVARIANCE_FLOOR = 1.0  # added to each covariance's diagonal (colour units^2): no singular component


@dataclass(frozen=True)
class GMM:
    """A Gaussian mixture: weights (K,), means (K,D), covariances (K,D,D)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def component_log_densities(self, pixels: np.ndarray) -> np.ndarray:
        """(N,D) -> (N,K) log(weight_k N(x | mean_k, cov_k))."""
        dim = pixels.shape[1]
        out = np.empty((len(pixels), len(self.weights)), np.float64)
        for k, (weight, mean, cov) in enumerate(zip(self.weights, self.means, self.covariances, strict=True)):
            chol = np.linalg.cholesky(cov)
            solved = np.linalg.solve(chol, (pixels - mean).T)
            log_det = 2.0 * np.log(np.diag(chol)).sum()
            out[:, k] = np.log(max(weight, 1e-12)) - 0.5 * (dim * np.log(2 * np.pi) + log_det + (solved**2).sum(0))
        return out

    def log_likelihood(self, pixels: np.ndarray) -> np.ndarray:
        """(N,D) float -> (N,) log p(x)."""
        dens = self.component_log_densities(np.asarray(pixels, np.float64))
        top = dens.max(1, keepdims=True)
        return (top + np.log(np.exp(dens - top).sum(1, keepdims=True)))[:, 0]


def fit_gmm(pixels: np.ndarray, components: int, iterations: int, rng: np.random.Generator) -> GMM:
    """EM for a full-covariance Gaussian mixture on (N,D) pixels; k-means++-style seeding from `rng`.

    Components that lose all their pixels are re-seeded on the worst-explained pixel. Covariances
    get COVARIANCE_FLOOR on their diagonal, so a flat region never makes them singular.
    """
    x = np.asarray(pixels, np.float64)
    n, dim = x.shape
    k = max(1, min(components, n))
    means = x[rng.choice(n, 1)]
    for _ in range(1, k):  # k-means++: next centre far from the chosen ones
        dist = ((x[:, None, :] - means[None]) ** 2).sum(-1).min(1)
        total = dist.sum()
        pick = rng.choice(n, p=dist / total) if total > 0 else rng.integers(n)
        means = np.vstack([means, x[pick]])
    covariance = np.cov(x.T).reshape(dim, dim) + COVARIANCE_FLOOR * np.eye(dim)
    gmm = GMM(np.full(k, 1.0 / k), means, np.repeat(covariance[None], k, 0))
    for _ in range(iterations):
        dens = gmm.component_log_densities(x)
        dens -= dens.max(1, keepdims=True)
        resp = np.exp(dens)
        resp /= resp.sum(1, keepdims=True)
        mass = resp.sum(0)
        weights, means, covs = np.empty(k), np.empty((k, dim)), np.empty((k, dim, dim))
        for j in range(k):
            if mass[j] < 1e-6:
                worst = int(np.argmin(gmm.log_likelihood(x)))
                weights[j], means[j], covs[j] = 1.0 / n, x[worst], covariance
                continue
            weights[j] = mass[j] / n
            means[j] = resp[:, j] @ x / mass[j]
            centred = x - means[j]
            covs[j] = (resp[:, j, None] * centred).T @ centred / mass[j] + COVARIANCE_FLOOR * np.eye(dim)
        gmm = GMM(weights / weights.sum(), means, covs)
    return gmm


def colour_features(image_rgb: np.ndarray, colour_space: str) -> np.ndarray:
    """(H,W,3) uint8 RGB -> (H,W,3) float64 in the colour space the models are fitted in."""
    if colour_space not in COLOUR_SPACES:
        raise ValueError(f"colour_space must be one of {COLOUR_SPACES}, got {colour_space!r}")
    if colour_space == "lab":
        return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2LAB).astype(np.float64)
    return image_rgb.astype(np.float64)


def contrast_weights(features: np.ndarray, smoothness: float) -> tuple[np.ndarray, np.ndarray]:
    """Capacities of the right and down edges of a 4-connected grid: (H,W) each (0 past the border).

    smoothness * exp(-beta |I_p - I_q|^2), beta = 1 / (2 mean |I_p - I_q|^2) over all neighbour pairs.
    """
    right = ((features[:, 1:] - features[:, :-1]) ** 2).sum(-1)
    down = ((features[1:] - features[:-1]) ** 2).sum(-1)
    mean = (right.sum() + down.sum()) / max(right.size + down.size, 1)
    beta = 1.0 / (2.0 * mean) if mean > 0 else 0.0
    w_right = np.zeros(features.shape[:2])
    w_down = np.zeros(features.shape[:2])
    w_right[:, :-1] = smoothness * np.exp(-beta * right)
    w_down[:-1] = smoothness * np.exp(-beta * down)
    return w_right, w_down


def fit_pixels(flat: np.ndarray, side: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The (N,3) colours of the (H,W) bool `side` of (H*W,3) `flat`, at most MAX_FIT_PIXELS (a random subset)."""
    pixels = flat[side.ravel()]
    return pixels if len(pixels) <= MAX_FIT_PIXELS else pixels[rng.choice(len(pixels), MAX_FIT_PIXELS, False)]


def gmm_unaries(
    flat: np.ndarray,
    fg_side: np.ndarray,
    bg_side: np.ndarray,
    fg_seed: np.ndarray,
    bg_seed: np.ndarray,
    components: int,
    em_iterations: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(H,W) costs of labelling each pixel foreground / background: -log p(I | side) of a GMM fitted by
    EM on each (H,W) bool side's pixels of (H*W,3) `flat`, shifted so the smaller is 0; the seeds
    ((H,W) bool) are hard."""
    fg_model = fit_gmm(fit_pixels(flat, fg_side, rng), components, em_iterations, rng)
    bg_model = fit_gmm(fit_pixels(flat, bg_side, rng), components, em_iterations, rng)
    cost_fg = -fg_model.log_likelihood(flat).reshape(fg_seed.shape)
    cost_bg = -bg_model.log_likelihood(flat).reshape(fg_seed.shape)
    shift = np.minimum(cost_fg, cost_bg)  # only the difference matters: keep capacities small
    cost_fg, cost_bg = cost_fg - shift, cost_bg - shift
    cost_fg[fg_seed], cost_bg[fg_seed] = 0.0, HARD
    cost_fg[bg_seed], cost_bg[bg_seed] = HARD, 0.0
    return cost_fg, cost_bg


def min_cut(cost_fg: np.ndarray, cost_bg: np.ndarray, w_right: np.ndarray, w_down: np.ndarray) -> np.ndarray:
    """(H,W) bool foreground of the minimum cut: unaries (H,W) each, right / down capacities (H,W) each."""
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(cost_fg.shape)
    graph.add_grid_edges(nodes, w_right, np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]]), symmetric=True)
    graph.add_grid_edges(nodes, w_down, np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]]), symmetric=True)
    # source side = foreground: the source edge carries the cost of labelling p background
    graph.add_grid_tedges(nodes, cost_bg, cost_fg)
    graph.maxflow()
    return ~graph.get_grid_segments(nodes)  # True = sink side; the source side is foreground


def gmm_graph_cut(
    image_rgb: np.ndarray,
    fg_seed: np.ndarray,
    bg_seed: np.ndarray,
    components: int = 5,
    em_iterations: int = 10,
    rounds: int = 2,
    smoothness: float = 50.0,
    colour_space: str = "lab",
    seed: int = 0,
) -> np.ndarray:
    """Foreground mask by GMM colour models (EM) and a contrast-sensitive graph cut (max-flow).

    image_rgb (H,W,3) uint8; fg_seed, bg_seed (H,W) bool hard constraints (fg wins where both).
    rounds: cut, refit both mixtures on the two sides, cut again. Returns (H,W) float32 {0,1};
    the seeds' foreground when either side has fewer than MIN_SEED_PIXELS pixels.
    """
    fg_seed, bg_seed = np.asarray(fg_seed, bool), np.asarray(bg_seed, bool) & ~np.asarray(fg_seed, bool)
    if fg_seed.sum() < MIN_SEED_PIXELS or bg_seed.sum() < MIN_SEED_PIXELS:
        return fg_seed.astype(np.float32)
    if rounds < 1 or em_iterations < 1 or components < 1:
        raise ValueError("gmm_graph_cut: rounds, em_iterations and components must be >= 1")
    rng = np.random.default_rng(seed)
    features = colour_features(image_rgb, colour_space)
    flat = features.reshape(-1, 3)
    w_right, w_down = contrast_weights(features, smoothness)
    fg_pixels, bg_pixels = fg_seed, bg_seed
    mask = fg_seed

    for _ in range(rounds):
        cost_fg, cost_bg = gmm_unaries(flat, fg_pixels, bg_pixels, fg_seed, bg_seed, components, em_iterations, rng)
        mask = min_cut(cost_fg, cost_bg, w_right, w_down)
        if mask.sum() < MIN_SEED_PIXELS or (~mask).sum() < MIN_SEED_PIXELS:
            break
        fg_pixels, bg_pixels = mask, ~mask
    return mask.astype(np.float32)


def gmm_graphcut_baseline(
    image_rgb: np.ndarray,
    joints: np.ndarray,
    fg_thickness: int = 7,
    bg_thickness: int = 60,
    components: int = 5,
    em_iterations: int = 10,
    rounds: int = 2,
    smoothness: float = 50.0,
    colour_space: str = "lab",
) -> np.ndarray:
    """GMM + EM + graph cut seeded by the skeleton: the thick skeleton is foreground, outside the
    wide skeleton background (the GrabCut baseline's seeds). Returns (H,W) float32 {0,1}; zeros
    when no joint is visible."""
    joints = np.asarray(joints, np.float32)
    _check_image_joints(image_rgb, joints, "gmm_graphcut_baseline")
    shape = image_rgb.shape[:2]
    if not visible(joints).any():
        return np.zeros(shape, np.float32)
    fg, bg = skeleton_seeds(joints, shape, fg_thickness, bg_thickness)
    return gmm_graph_cut(image_rgb, fg, bg, components, em_iterations, rounds, smoothness, colour_space)


def slic_gmm_graphcut_baseline(
    image_rgb: np.ndarray,
    joints: np.ndarray,
    region_size: int = 16,
    ruler: float = 10.0,
    skeleton_thickness: int = 3,
    bg_thickness: int = 60,
    components: int = 5,
    em_iterations: int = 10,
    rounds: int = 2,
    smoothness: float = 50.0,
    colour_space: str = "lab",
) -> np.ndarray:
    """The paper's SLIC ensemble: the SLIC superpixels that the thin skeleton crosses are the
    foreground seeds (whole clusters, so the colour model sees clothes and skin, not only the bones),
    outside the wide skeleton is background; then GMM + EM + graph cut. (H,W) float32 {0,1}."""
    joints = np.asarray(joints, np.float32)
    _check_image_joints(image_rgb, joints, "slic_gmm_graphcut_baseline")
    shape = image_rgb.shape[:2]
    if not visible(joints).any():
        return np.zeros(shape, np.float32)
    labels = slic_superpixels(image_rgb, region_size, ruler, 10, "SLICO", 3)
    bones, bg = skeleton_seeds(joints, shape, skeleton_thickness, bg_thickness)
    fg = np.isin(labels, np.unique(labels[bones])) & ~bg
    return gmm_graph_cut(image_rgb, fg, bg, components, em_iterations, rounds, smoothness, colour_space)
