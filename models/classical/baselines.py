"""Classical person segmenters used as baselines (and as seeds): prior, GrabCut, SLIC + GrabCut.

Every function works on one crop: image_rgb (H, W, 3) uint8 (256x256 in the pipeline), joints
(14, 3) float32 in crop pixel coordinates (missing = (0, 0, 0)), prior (H, W) float in (0, 1),
and returns an (H, W) float32 binary mask in {0, 1}.

GrabCut seeding (both GrabCut baselines): the skeleton drawn thick is definite foreground
(GC_FGD): a limb's centre line is inside the person. Outside a much wider skeleton is definite
background (GC_BGD): nothing of the person is that far from its bones. The band between is
*probable background* (GC_PR_BGD), not probable foreground: GrabCut fits its initial colour
models on FGD + PR_FGD vs. BGD + PR_BGD pixels, and the band is mostly background (a limb is
much narrower than the band), so labelling it foreground would pour background colours into
the foreground model and bleed the mask outwards; as probable background the band's body
pixels are still free to flip to foreground in the graph cut when their colour fits the
skeleton's colours better. (Measured on the sample crops: PR_BGD band beats a PR_FGD band.)
"""

from __future__ import annotations

import cv2
import numpy as np

from models.sample import NUM_JOINTS, draw_skeleton, visible

# Names accepted for `slic_grabcut_baseline(algorithm=...)` (config-friendly strings).
SLIC_ALGORITHMS: dict[str, int] = {
    "SLIC": cv2.ximgproc.SLIC,
    "SLICO": cv2.ximgproc.SLICO,
    "MSLIC": cv2.ximgproc.MSLIC,
}


def _check_image_joints(image_rgb: np.ndarray, joints: np.ndarray, caller: str) -> None:
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"{caller}: image must be (H, W, 3) uint8, got {image_rgb.shape} {image_rgb.dtype}")
    if joints.shape != (NUM_JOINTS, 3):
        raise ValueError(f"{caller}: joints must be ({NUM_JOINTS}, 3), got {joints.shape}")


def prior_baseline(prior: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The skeleton prior alone, thresholded.

    prior: (H, W) float in (0, 1) (the cache stores it as uint8 * 255: divide by 255 first).
    Returns (H, W) float32 in {0, 1}: prior >= threshold.
    """
    prior = np.asarray(prior)
    if prior.ndim != 2:
        raise ValueError(f"prior_baseline: prior must be (H, W), got shape {prior.shape}")
    if not np.issubdtype(prior.dtype, np.floating):
        raise ValueError(f"prior_baseline: prior must be float in (0, 1), got dtype {prior.dtype} (cache uint8 / 255?)")
    return (prior >= threshold).astype(np.float32)


def skeleton_seeds(
    joints: np.ndarray, shape: tuple[int, int], fg_thickness: int, bg_thickness: int
) -> tuple[np.ndarray, np.ndarray]:
    """(definite foreground, definite background) (H, W) bool: the thick skeleton, and outside the
    wide one (the seeds of GrabCut and of models/classical/graphcut.py)."""
    if bg_thickness <= fg_thickness:
        raise ValueError(f"bg_thickness ({bg_thickness}) must be larger than fg_thickness ({fg_thickness})")
    fg = draw_skeleton(joints, shape, fg_thickness).astype(bool)
    bg = ~draw_skeleton(joints, shape, bg_thickness).astype(bool)
    return fg, bg


def _skeleton_seed_mask(joints: np.ndarray, shape: tuple[int, int], fg_thickness: int, bg_thickness: int) -> np.ndarray:
    """GrabCut label mask (H, W) uint8: thick skeleton FGD, outside the wide skeleton BGD, band PR_BGD."""
    fg, bg = skeleton_seeds(joints, shape, fg_thickness, bg_thickness)
    gc_mask = np.where(bg, cv2.GC_BGD, cv2.GC_PR_BGD).astype(np.uint8)
    gc_mask[fg] = cv2.GC_FGD
    return gc_mask


def _foreground(gc_mask: np.ndarray) -> np.ndarray:
    """(H, W) GrabCut labels -> (H, W) float32 {0, 1}: definite or probable foreground."""
    return ((gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)).astype(np.float32)


def grabcut_from_mask(image_rgb: np.ndarray, gc_mask: np.ndarray, iterations: int, seed: int = 0) -> np.ndarray:
    """Run GrabCut from an initial label mask; never raises on degenerate seeds.

    image_rgb: (H, W, 3) uint8; gc_mask: (H, W) uint8 of cv2.GC_* labels.
    Returns (H, W) float32 {0, 1}. If either side (foreground: FGD/PR_FGD, background:
    BGD/PR_BGD) has too few pixels for the colour models, or OpenCV rejects the input,
    the seeds' foreground is returned as is (GrabCut has nothing to decide).
    """
    if iterations < 1:
        raise ValueError(f"grabcut: iterations must be >= 1, got {iterations}")
    fg_count = int(np.count_nonzero((gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)))
    bg_count = gc_mask.size - fg_count
    # GrabCut's GMMs have 5 components each, initialised by k-means: fewer samples cannot fit them.
    min_samples = 5
    if fg_count < min_samples or bg_count < min_samples:
        return _foreground(gc_mask)
    labels = np.ascontiguousarray(gc_mask, dtype=np.uint8).copy()
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)  # k-means initialisation of the GMMs is random
    try:
        cv2.grabCut(
            np.ascontiguousarray(image_rgb),
            labels,
            None,
            bgd_model,
            fgd_model,
            int(iterations),
            cv2.GC_INIT_WITH_MASK,
        )
    except cv2.error:
        return _foreground(gc_mask)
    return _foreground(labels)


def grabcut_baseline(
    image_rgb: np.ndarray,
    joints: np.ndarray,
    fg_thickness: int = 7,
    bg_thickness: int = 60,
    iterations: int = 5,
) -> np.ndarray:
    """GrabCut (GMM colour models + graph cut) seeded by the skeleton.

    image_rgb: (H, W, 3) uint8; joints: (14, 3) float32 in image pixels.
    fg_thickness: skeleton line width (px) that is definite foreground.
    bg_thickness: width (px) of the wide skeleton; outside it is definite background, the band
        between is probable background (see module docstring for why).
    iterations: GrabCut iterations.
    Returns (H, W) float32 {0, 1}; all zeros when no joint is visible.
    """
    joints = np.asarray(joints, np.float32)
    _check_image_joints(image_rgb, joints, "grabcut_baseline")
    shape = image_rgb.shape[:2]
    if not visible(joints).any():
        return np.zeros(shape, np.float32)
    gc_mask = _skeleton_seed_mask(joints, shape, fg_thickness, bg_thickness)
    return grabcut_from_mask(image_rgb, gc_mask, iterations)


def slic_superpixels(
    image_rgb: np.ndarray,
    region_size: int,
    ruler: float,
    slic_iterations: int,
    algorithm: str,
    blur_ksize: int,
) -> np.ndarray:
    """SLIC superpixels of an RGB image, computed in CIELAB after a small blur (OpenCV's advice).

    Returns (H, W) int32 superpixel labels 0..K-1.
    """
    if algorithm not in SLIC_ALGORITHMS:
        raise ValueError(f"slic: unknown algorithm {algorithm!r}; choose from {sorted(SLIC_ALGORITHMS)}")
    smoothed = cv2.GaussianBlur(image_rgb, (blur_ksize, blur_ksize), 0) if blur_ksize > 1 else image_rgb
    lab = cv2.cvtColor(np.ascontiguousarray(smoothed), cv2.COLOR_RGB2LAB)
    slic = cv2.ximgproc.createSuperpixelSLIC(lab, SLIC_ALGORITHMS[algorithm], int(region_size), float(ruler))
    slic.iterate(int(slic_iterations))
    return slic.getLabels().astype(np.int32)


def slic_grabcut_baseline(
    image_rgb: np.ndarray,
    joints: np.ndarray,
    region_size: int = 16,
    ruler: float = 10.0,
    slic_iterations: int = 10,
    algorithm: str = "SLICO",
    blur_ksize: int = 3,
    skeleton_thickness: int = 3,
    min_skeleton_fraction: float = 0.1,
    bg_thickness: int = 60,
    iterations: int = 5,
) -> np.ndarray:
    """SLIC superpixels touched by the skeleton as foreground seed, then GrabCut.

    image_rgb: (H, W, 3) uint8; joints: (14, 3) float32 in image pixels.
    region_size, ruler, slic_iterations, algorithm ("SLIC" | "SLICO" | "MSLIC"), blur_ksize:
        superpixel settings (see `slic_superpixels`).
    skeleton_thickness: width (px) of the thin skeleton; it is definite foreground itself.
    min_skeleton_fraction: a superpixel is a foreground seed when at least this fraction of its
        pixels lies on the thin skeleton. Seed superpixels are *probable* foreground: a
        superpixel can straddle the person's outline, so the graph cut may still cut it.
    bg_thickness: outside the skeleton drawn this wide is definite background; the rest is
        probable background.
    iterations: GrabCut iterations.
    Returns (H, W) float32 {0, 1}; all zeros when no joint is visible.
    """
    joints = np.asarray(joints, np.float32)
    _check_image_joints(image_rgb, joints, "slic_grabcut_baseline")
    shape = image_rgb.shape[:2]
    if not visible(joints).any():
        return np.zeros(shape, np.float32)
    labels = slic_superpixels(image_rgb, region_size, ruler, slic_iterations, algorithm, blur_ksize)
    skeleton = draw_skeleton(joints, shape, skeleton_thickness).astype(bool)
    sizes = np.bincount(labels.ravel())
    on_skeleton = np.bincount(labels[skeleton], minlength=sizes.size)
    seed_superpixels = on_skeleton >= min_skeleton_fraction * np.maximum(sizes, 1)
    seed_superpixels &= on_skeleton > 0  # a fraction of 0 must not make every superpixel a seed

    gc_mask = _skeleton_seed_mask(joints, shape, skeleton_thickness, bg_thickness)
    gc_mask[seed_superpixels[labels] & (gc_mask != cv2.GC_FGD)] = cv2.GC_PR_FGD
    return grabcut_from_mask(image_rgb, gc_mask, iterations)


GRABCUT_MARGIN = 0.15  # grabcut_person works in the box grown by this share of its sides


def grabcut_region(box_xywh: np.ndarray, image_hw: tuple[int, int], margin: float) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the part of an (H, W) image grabcut_person works in: the (4,) xywh box
    grown by `margin` of its sides, clipped; None for a box that is not finite or under 2 px."""
    height, width = image_hw
    x, y, w, h = (float(v) for v in box_xywh[:4])
    if not (np.isfinite([x, y, w, h]).all() and w >= 2 and h >= 2):
        return None
    x0, y0 = max(0, int(x - margin * w)), max(0, int(y - margin * h))
    x1, y1 = min(width, int(np.ceil(x + w + margin * w))), min(height, int(np.ceil(y + h + margin * h)))
    return x0, y0, x1, y1


def box_in_region(box_xywh: np.ndarray, region: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """(bx0, by0, bx1, by1): the pixels of the (4,) xywh box inside region (x0, y0, x1, y1), in
    the region's coordinates; empty (bx1 <= bx0 or by1 <= by0) when the box misses it."""
    x0, y0, x1, y1 = region
    x, y, w, h = (float(v) for v in box_xywh[:4])
    bx0, by0 = max(0, int(x) - x0), max(0, int(y) - y0)
    return bx0, by0, min(x1, int(np.ceil(x + w))) - x0, min(y1, int(np.ceil(y + h))) - y0


def grabcut_person(
    image_rgb: np.ndarray,
    box_xywh: np.ndarray,
    prob: np.ndarray | None = None,
    margin: float = GRABCUT_MARGIN,
    max_side: int = 256,
    iterations: int = 3,
    threshold: float = 0.5,
    sure_foreground: float = 0.9,
) -> np.ndarray:
    """One person's mask by GrabCut inside its box, seeded by the box alone or by a probability map.

    Without `prob` (a detected person whose pose could not be estimated), GrabCut starts as from a
    rectangle: inside the box probable foreground, outside definite background. With `prob`
    (H, W) float (the network's full-size probability), it refines that mask: prob >= threshold is
    probable foreground, prob >= `sure_foreground` definite foreground, the rest of the box
    probable background, and outside the box enlarged by `margin` definite background; the colour
    models then move the mask's edges onto the person's real boundary, which the network's
    pose-shaped output tends to draw too thin.
    Only the box enlarged by `margin` is processed, scaled so its longer side is at most
    `max_side` pixels (GrabCut's cost grows with the pixel count and the iterations). 3 iterations
    measured as good as 5 on the nightly bench (val2017 0.685 both, OCHuman 0.477 / 0.476) at ~60 %
    of the time; 160 px instead of 256 lost 0.011 / 0.009.
    image_rgb: (H, W, 3) uint8; box_xywh: (4,) pixels. Returns (H, W) bool, False outside the region.
    """
    height, width = image_rgb.shape[:2]
    out = np.zeros((height, width), bool)
    region = grabcut_region(box_xywh, (height, width), margin)
    if region is None:
        return out
    x0, y0, x1, y1 = region
    if x1 - x0 < 2 or y1 - y0 < 2:
        return out
    seeds = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, np.uint8)
    bx0, by0, bx1, by1 = box_in_region(box_xywh, region)
    if prob is None:
        seeds[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
    else:
        region_prob = prob[y0:y1, x0:x1]
        seeds[by0:by1, bx0:bx1] = cv2.GC_PR_BGD
        seeds[region_prob >= threshold] = cv2.GC_PR_FGD
        seeds[region_prob >= sure_foreground] = cv2.GC_FGD
    scale = min(1.0, max_side / max(x1 - x0, y1 - y0))
    region = image_rgb[y0:y1, x0:x1]
    if scale < 1:
        size = (max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        seeds = cv2.resize(seeds, size, interpolation=cv2.INTER_NEAREST)
    fg = grabcut_from_mask(region, seeds, iterations).astype(np.uint8)
    if scale < 1:
        fg = cv2.resize(fg, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    out[y0:y1, x0:x1] = fg.astype(bool)
    return out
