"""One cache sample from one person: crop, mask, joints, pose map and prior at crop size."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from models.sample.crop import box_around, crop_affine, warp_image, warp_mask, warp_points
from models.sample.keypoints import HeadConfig, coco17_to_joints14, joints_inside
from models.sample.posemap import pose_map, to_uint8
from models.sample.prior import BoxPriorConfig, PriorConfig, box_prior, prior_mask, prior_to_uint8
from models.utils import from_plain_dict


@dataclass(frozen=True)
class CropConfig:
    """How people are cropped and encoded (set in luigi.cfg [crop]; these are the defaults)."""

    size: int = 256
    margin: float = 0.15
    posemap_sigma: float = 3.0
    per_joint_posemap: bool = False
    head: HeadConfig = field(default_factory=HeadConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CropConfig:
        """Inverse of to_dict (a cache file's ``crop_config`` attribute); unknown keys are an error."""
        data = dict(data)
        head = from_plain_dict(HeadConfig, data.pop("head", {}))
        prior = from_plain_dict(PriorConfig, data.pop("prior", {}))
        return from_plain_dict(cls, {**data, "head": head, "prior": prior})


def person_sample(
    image: np.ndarray, mask: np.ndarray | None, keypoints17: np.ndarray, bbox_xywh: np.ndarray, cfg: CropConfig
) -> dict[str, np.ndarray]:
    """Everything the network and the evaluation need for one person.

    image: (H,W,3) uint8 RGB; mask: (H,W) uint8 {0,1} or None (inference); keypoints17: (17,3)
    COCO keypoints in image pixels; bbox_xywh: (4,). Returns a dict of
    image (S,S,3) uint8, mask (S,S) uint8, posemap (S/2,S/2) or (14,S/2,S/2) uint8,
    prior (S,S) uint8 in 1..254, joints (14,3) float32 crop pixels, affine (2,3) float32,
    orig_size (2,) int32.
    """
    h, w = image.shape[:2]
    joints_img, _ = coco17_to_joints14(keypoints17, cfg.head)
    joints_img = joints_inside(joints_img, h, w)
    affine = crop_affine(box_around(bbox_xywh, joints_img), cfg.margin, cfg.size)
    joints = warp_points(joints_img, affine, cfg.size)
    return {
        "image": warp_image(image, affine, cfg.size),
        "mask": (warp_mask(mask, affine, cfg.size) if mask is not None else np.zeros((cfg.size, cfg.size), np.uint8)),
        "posemap": to_uint8(pose_map(joints, cfg.size, cfg.posemap_sigma, cfg.per_joint_posemap)),
        "prior": prior_to_uint8(prior_mask(joints, cfg.size, cfg.prior)),
        "joints": joints,
        "affine": affine,
        "orig_size": np.array([h, w], np.int32),
    }


def box_person_sample(
    image: np.ndarray, bbox_xywh: np.ndarray, cfg: CropConfig, box_cfg: BoxPriorConfig | None = None
) -> dict[str, np.ndarray]:
    """person_sample of a person known only by a box: the crop around the box, an empty pose map
    and the box prior (models.sample.prior.box_prior) in place of the limb prior. Same keys and shapes."""
    h, w = image.shape[:2]
    no_joints = np.zeros((14, 3), np.float32)
    affine = crop_affine(np.asarray(bbox_xywh, np.float32), cfg.margin, cfg.size)
    x, y, bw, bh = (float(v) for v in bbox_xywh[:4])
    corners = warp_points(np.array([[x, y, 1.0], [x + bw, y + bh, 1.0]], np.float32), affine)
    return {
        "image": warp_image(image, affine, cfg.size),
        "mask": np.zeros((cfg.size, cfg.size), np.uint8),
        "posemap": to_uint8(pose_map(no_joints, cfg.size, cfg.posemap_sigma, cfg.per_joint_posemap)),
        "prior": prior_to_uint8(box_prior(corners[:, :2].reshape(-1), cfg.size, box_cfg)),
        "joints": no_joints,
        "affine": affine,
        "orig_size": np.array([h, w], np.int32),
    }
