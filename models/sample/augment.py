"""Training augmentation of one cached person: image, mask and joints move together, and the pose map
and prior are redrawn from the moved joints (so they always describe the augmented person).

    AugmentConfig                    how strong each part is; AUGMENTATIONS names the presets
    random_affine(rng, size, cfg)    (2,3) crop -> augmented crop (scale, rotation, shift, flip)
    augment_person(image, mask, joints, rng, cfg, crop_cfg)  one augmented sample (dict)
    FLIPPED_JOINTS                   joint order after a horizontal flip (left <-> right)

Joints that leave the crop, or are dropped on purpose, become invisible (v = 0): the network learns
to segment from a partial skeleton, and with `all_joints_drop` from none at all (the estimated
poses of nightly photos are partial, and a detected person without a pose still needs a mask).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from models.sample.posemap import pose_map, to_uint8
from models.sample.prior import BoxPriorConfig, box_prior, prior_mask, prior_to_uint8
from models.sample.sample import CropConfig
from models.sample.skeleton import JOINT_NAMES


def _flipped_joint_order() -> list[int]:
    index = {name: i for i, name in enumerate(JOINT_NAMES)}
    swapped = {"l_": "r_", "r_": "l_"}
    return [index[swapped[name[:2]] + name[2:]] if name[:2] in swapped else index[name] for name in JOINT_NAMES]


#: joints[FLIPPED_JOINTS] after a mirror image keeps "l_" on the person's left.
FLIPPED_JOINTS: list[int] = _flipped_joint_order()


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation (0 turns it off).

    flip_prob: horizontal mirror (left/right joints swapped). scale: zoom drawn log-uniformly in
    [1/(1+scale), 1+scale]. rotate_deg: rotation in [-rotate_deg, rotate_deg]. translate: shift
    up to this fraction of the crop size on each axis. brightness, contrast, saturation: colour
    jitter, each factor in [1 - x, 1 + x] (brightness adds (factor - 1) x 128 grey levels).
    joint_noise_px: standard deviation of the Gaussian noise on each joint, crop pixels.
    joint_drop: probability of dropping each visible joint; all_joints_drop: of dropping all.
    box_prior_share: probability that the sample is a box-only person, as the nightly path segments
      a detected person without a usable pose: no joints, an empty pose map and the box prior
      (models.sample.prior.box_prior) of the mask's bounding box, each side moved by up to box_jitter of
      the box's size (a detector's box is not the mask's).
    """

    flip_prob: float = 0.5
    scale: float = 0.25
    rotate_deg: float = 20.0
    translate: float = 0.08
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    joint_noise_px: float = 2.0
    joint_drop: float = 0.1
    all_joints_drop: float = 0.05
    box_prior_share: float = 0.0
    box_jitter: float = 0.1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"AugmentConfig.{name} must be finite and >= 0, got {value}")
        probabilities = ("flip_prob", "joint_drop", "all_joints_drop", "box_prior_share")
        for name in (*probabilities, "brightness", "contrast", "saturation"):
            if getattr(self, name) > 1:
                raise ValueError(f"AugmentConfig.{name} must be <= 1, got {getattr(self, name)}")

    @property
    def geometric(self) -> bool:
        return bool(self.scale or self.rotate_deg or self.translate)

    @property
    def redraws(self) -> bool:
        """Whether the joints change beyond a flip (then pose map and prior must be redrawn)."""
        return self.geometric or bool(
            self.joint_noise_px or self.joint_drop or self.all_joints_drop or self.box_prior_share
        )


_NONE = AugmentConfig(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
#: named presets of TrainConfig.augment: none; flip (the paper's); full (every part, the defaults).
AUGMENTATIONS: dict[str, AugmentConfig] = {
    "none": _NONE,
    "flip": replace(_NONE, flip_prob=0.5),
    "full": AugmentConfig(),
    # full, and a share of box-only people (issue 20/21: the nightly path's people without a pose)
    "full+box": AugmentConfig(box_prior_share=0.2),
}


def random_affine(rng: np.random.Generator, size: int, cfg: AugmentConfig) -> tuple[np.ndarray, bool]:
    """A random (2,3) affine of a size x size crop about its centre, and whether it mirrors."""
    zoom = float(np.exp(rng.uniform(-1, 1) * np.log1p(cfg.scale)))
    angle = float(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    shift = rng.uniform(-cfg.translate, cfg.translate, 2) * size
    flip = bool(rng.random() < cfg.flip_prob)
    centre = (size - 1) / 2.0
    affine = cv2.getRotationMatrix2D((centre, centre), angle, zoom)
    if flip:  # mirror before the rotation: x -> size - 1 - x
        affine = affine @ np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    affine[:, 2] += shift
    return affine.astype(np.float64), flip


def jitter_colour(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """(S,S,3) uint8 RGB -> the same with random brightness, contrast and saturation."""
    if not (cfg.brightness or cfg.contrast or cfg.saturation):
        return image
    out = image.astype(np.float32)
    grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
    saturation = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    out = grey[..., None] + saturation * (out - grey[..., None])
    contrast = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    out = float(grey.mean()) + contrast * (out - float(grey.mean()))
    out += (rng.uniform(1 - cfg.brightness, 1 + cfg.brightness) - 1.0) * 128.0
    return np.clip(out, 0, 255).astype(np.uint8)


def perturb_joints(joints: np.ndarray, size: int, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """(14,3) crop joints -> noisy copy; dropped and off-crop joints get v = 0 (and x = y = 0)."""
    out = joints.astype(np.float32).copy()
    visible = out[:, 2] > 0
    if cfg.joint_noise_px:
        out[:, :2] += rng.normal(0.0, cfg.joint_noise_px, (len(out), 2)).astype(np.float32)
    drop = rng.random(len(out)) < cfg.joint_drop
    if rng.random() < cfg.all_joints_drop:
        drop[:] = True
    inside = (out[:, 0] >= 0) & (out[:, 0] <= size - 1) & (out[:, 1] >= 0) & (out[:, 1] <= size - 1)
    keep = visible & ~drop & inside
    out[~keep] = 0.0
    return out


def augment_person(
    image: np.ndarray,
    mask: np.ndarray,
    joints: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    crop_cfg: CropConfig,
) -> dict[str, np.ndarray]:
    """One augmented sample of a cached person.

    image (S,S,3) uint8, mask (S,S) uint8, joints (14,3) crop pixels -> dict with image, mask
    (same shapes), joints (14,3) float32, posemap (S/2,S/2) or (14,S/2,S/2) uint8 and prior (S,S)
    uint8, the last two drawn from the augmented joints with `crop_cfg` exactly as the cache draws them.
    """
    size = image.shape[0]
    affine, flipped = random_affine(rng, size, cfg)
    if cfg.geometric or flipped:
        # Reflect both image and mask at the border, so that the two stay consistent.
        image = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        mask = cv2.warpAffine(mask, affine, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
        moved = joints.astype(np.float32).copy()
        moved[:, :2] = joints[:, :2] @ affine[:, :2].T.astype(np.float32) + affine[:, 2].astype(np.float32)
        moved[joints[:, 2] <= 0] = 0.0
        joints = moved[FLIPPED_JOINTS] if flipped else moved
    joints = perturb_joints(joints, size, rng, cfg)
    box = None
    if cfg.box_prior_share and rng.random() < cfg.box_prior_share and mask.any():
        box = jittered_mask_box(mask, rng, cfg.box_jitter)
        joints = np.zeros_like(joints)
    prior = prior_mask(joints, size, crop_cfg.prior) if box is None else box_prior(box, size, BoxPriorConfig())
    return {
        "image": jitter_colour(image, rng, cfg),
        "mask": mask,
        "joints": joints,
        "posemap": to_uint8(pose_map(joints, size, crop_cfg.posemap_sigma, crop_cfg.per_joint_posemap)),
        "prior": prior_to_uint8(prior),
    }


def jittered_mask_box(mask: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """(4,) [x0, y0, x1, y1] of a (S,S) mask's bounding box, each side moved by up to `jitter` x the
    box's width (x) or height (y): a detector's box around the person."""
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    w, h = x1 - x0, y1 - y0
    dx0, dx1, dy0, dy1 = rng.uniform(-jitter, jitter, 4)
    return np.array([x0 + dx0 * w, y0 + dy0 * h, x1 + dx1 * w, y1 + dy1 * h], np.float32)
