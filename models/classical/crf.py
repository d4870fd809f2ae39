"""Fully connected CRF refinement of a foreground probability map, and its coarse-to-fine tuning.

The network's per-pixel foreground probability becomes the unary term of a 2-label dense CRF
(Krähenbühl & Koltun, pydensecrf) with a Gaussian (smoothness) kernel and a bilateral
(appearance) kernel over position and RGB colour. `grid_search` picks the kernel parameters
that maximise mean IoU on tuning samples; "no refinement" is always a candidate and wins ties,
so the chosen parameters are never worse than the raw network on those samples.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pydensecrf.densecrf as dcrf

from models.evaluation import iou

# Background / foreground label indices of the 2-label CRF.
_BG, _FG = 0, 1


@dataclass(frozen=True)
class CRFParams:
    """Parameters of the dense CRF.

    enabled: False means "no refinement": `refine` returns the input probability unchanged.
    iterations: mean-field inference steps.
    gaussian_sxy: spatial std (pixels) of the smoothness kernel; gaussian_compat its weight.
    bilateral_sxy: spatial std (pixels) of the appearance kernel; bilateral_srgb its colour std
        (0..255 units); bilateral_compat its weight. A weight of 0 drops that kernel.
    prob_clip: probabilities are clipped to [prob_clip, 1 - prob_clip] before -log, so that a
        saturated network output gives a finite unary.
    """

    enabled: bool = True
    iterations: int = 5
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 5.0
    prob_clip: float = 1e-4

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"CRFParams.iterations must be >= 1, got {self.iterations}")
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CRFParams.{name} must be > 0, got {getattr(self, name)}")
        for name in ("gaussian_compat", "bilateral_compat"):
            if getattr(self, name) < 0:
                raise ValueError(f"CRFParams.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.prob_clip < 0.5:
            raise ValueError(f"CRFParams.prob_clip must be in (0, 0.5), got {self.prob_clip}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (for crf.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CRFParams:
        """Inverse of `to_dict`; unknown keys are an error (they signal a stale or foreign file)."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"CRFParams.from_dict: unknown keys {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "enabled":
                kwargs[key] = bool(value)
            elif key == "iterations":
                kwargs[key] = int(value)
            else:
                kwargs[key] = float(value)
        return cls(**kwargs)


NO_REFINEMENT = CRFParams(enabled=False)

# Default coarse grid of `grid_search` (keys are CRFParams field names); TuneCRF's default too
# (luigi.cfg [TuneCRF] grid overrides it). The smoothness kernel stays at the usual DeepLab values;
# only the appearance kernel is searched: 27 coarse + at most 26 fine candidates (+ "no
# refinement"), i.e. ~54 x n_samples x ~0.1 s at 256x256 (50 samples: ~5 min on one core).
# Every extra searched parameter multiplies the fine stage by 3.
DEFAULT_COARSE_GRID: dict[str, list[float]] = {
    "iterations": [5],
    "gaussian_sxy": [3.0],
    "gaussian_compat": [3.0],
    "bilateral_sxy": [20.0, 50.0, 80.0],
    "bilateral_srgb": [5.0, 13.0, 30.0],
    "bilateral_compat": [3.0, 5.0, 10.0],
}
# Fine stage: every parameter that had more than one coarse value is tried at
# best / factor, best, best * factor (a 3^k grid around the best coarse point).
DEFAULT_REFINE_FACTOR = 1.5
_INT_FIELDS = {"iterations"}


def _check_pair(image_rgb: np.ndarray, prob: np.ndarray) -> None:
    if prob.ndim != 2:
        raise ValueError(f"refine: prob must be (H, W), got shape {prob.shape}")
    if image_rgb.shape != (*prob.shape, 3):
        raise ValueError(f"refine: image must be (H, W, 3) = {(*prob.shape, 3)}, got {image_rgb.shape}")
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"refine: image must be uint8, got {image_rgb.dtype}")


def refine(image_rgb: np.ndarray, prob: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """Refine a foreground probability map with a dense CRF.

    image_rgb: (H, W, 3) uint8. prob: (H, W) float in [0, 1] (foreground probability).
    Returns (H, W) float32 in [0, 1]: the CRF's foreground marginal, or a float32 copy of
    `prob` when `params.enabled` is False.
    """
    prob = np.asarray(prob)
    _check_pair(image_rgb, prob)
    if not params.enabled:
        return prob.astype(np.float32, copy=True)
    if not np.isfinite(prob).all():
        raise ValueError("refine: prob contains NaN or infinite values")
    height, width = prob.shape
    fg = np.clip(prob.astype(np.float32), params.prob_clip, 1.0 - params.prob_clip)
    # pydensecrf wants (labels, H*W) float32 and an (H, W, 3) uint8 image, both C-contiguous.
    unary = np.ascontiguousarray(-np.log(np.stack([1.0 - fg, fg]).reshape(2, -1)), dtype=np.float32)
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(unary)
    if params.gaussian_compat > 0:
        crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
    if params.bilateral_compat > 0:
        crf.addPairwiseBilateral(
            sxy=params.bilateral_sxy,
            srgb=params.bilateral_srgb,
            rgbim=np.ascontiguousarray(image_rgb),
            compat=params.bilateral_compat,
        )
    marginals = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    return np.clip(marginals[_FG].reshape(height, width), 0.0, 1.0)


def mean_iou(probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float = 0.5) -> float:
    """Mean IoU of `prob >= threshold` against the masks.

    probs: sequence of (H, W) float; masks: sequence of (H, W) {0, 1} (any shape per pair).
    An instance where both prediction and mask are empty counts as IoU 1 (models.evaluation.metrics.iou).
    """
    if len(probs) != len(masks):
        raise ValueError(f"mean_iou: {len(probs)} predictions but {len(masks)} masks")
    if not probs:
        raise ValueError("mean_iou: no samples")
    pairs = zip(probs, masks, strict=True)
    ious = [iou(np.asarray(prob) >= threshold, np.asarray(mask) > 0) for prob, mask in pairs]
    return float(np.mean(ious))


def _grid_candidates(grid: Mapping[str, Sequence[float]], base: CRFParams) -> list[CRFParams]:
    """Cartesian product of the grid's values, other fields taken from `base`; in grid order."""
    valid = {f.name for f in fields(CRFParams)} - {"enabled"}
    unknown = set(grid) - valid
    if unknown:
        raise ValueError(f"grid_search: unknown grid keys {sorted(unknown)}; valid: {sorted(valid)}")
    empty = [key for key, values in grid.items() if len(values) == 0]
    if empty:
        raise ValueError(f"grid_search: grid keys with no values: {empty}")
    keys = list(grid)
    candidates = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = {k: int(round(v)) if k in _INT_FIELDS else float(v) for k, v in zip(keys, combo, strict=True)}
        candidates.append(replace(base, enabled=True, **values))
    return candidates


def fine_grid(
    coarse_grid: Mapping[str, Sequence[float]], best: CRFParams, refine_factor: float
) -> dict[str, list[float]]:
    """Grid around `best`: each parameter with several coarse values gets best / f, best, best * f.

    Parameters with a single coarse value stay fixed. Integer fields are rounded and kept >= 1.
    """
    if refine_factor <= 1:
        raise ValueError(f"grid_search: refine_factor must be > 1, got {refine_factor}")
    grid: dict[str, list[float]] = {}
    for key, values in coarse_grid.items():
        centre = getattr(best, key)
        if len(set(values)) <= 1:
            grid[key] = [centre]
            continue
        points = [centre / refine_factor, centre, centre * refine_factor]
        if key in _INT_FIELDS:
            points = [max(1, int(round(p))) for p in points]
        grid[key] = sorted(set(points))
    return grid


def grid_search(
    images: Sequence[np.ndarray],
    probs: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    grid: Mapping[str, Sequence[float]] = DEFAULT_COARSE_GRID,
    refine_factor: float = DEFAULT_REFINE_FACTOR,
    refine_fn: Callable[[np.ndarray, np.ndarray, CRFParams], np.ndarray] = refine,
    metric: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float] = mean_iou,
    base: CRFParams = CRFParams(),
    on_candidate: Callable[[CRFParams, float], None] | None = None,
) -> tuple[CRFParams, list[tuple[CRFParams, float]]]:
    """Coarse-to-fine grid search of CRF parameters on tuning samples.

    images: sequence of (H, W, 3) uint8; probs: (H, W) float in [0, 1] (network output);
    masks: (H, W) {0, 1} ground truth. grid: CRFParams field name -> list of coarse values;
    fields not in the grid come from `base`. The fine stage searches `fine_grid(grid, best,
    refine_factor)`. "No refinement" is evaluated first and only a strictly better score
    replaces the current best, so ties go to no refinement (then to the earlier candidate).

    Returns (best params, table of (params, score) for every distinct candidate, in evaluation
    order). `on_candidate(params, score)` is called after each evaluation (for logging).
    """
    if not (len(images) == len(probs) == len(masks)):
        raise ValueError(f"grid_search: {len(images)} images, {len(probs)} probs, {len(masks)} masks")
    if not images:
        raise ValueError("grid_search: no tuning samples")
    table: list[tuple[CRFParams, float]] = []
    seen: set[CRFParams] = set()
    best, best_score = NO_REFINEMENT, -np.inf

    def evaluate(candidates: Sequence[CRFParams]) -> None:
        nonlocal best, best_score
        for params in candidates:
            if params in seen:
                continue
            seen.add(params)
            refined = [refine_fn(img, prob, params) for img, prob in zip(images, probs, strict=True)]
            score = float(metric(refined, masks))
            table.append((params, score))
            if on_candidate is not None:
                on_candidate(params, score)
            if score > best_score:
                best, best_score = params, score

    evaluate([NO_REFINEMENT])
    evaluate(_grid_candidates(grid, base))
    if best.enabled:
        evaluate(_grid_candidates(fine_grid(grid, best, refine_factor), base))
    return best, table
