"""One person as a sample: the 14-joint body, COCO keypoints, the crop, the pose map, the prior,
the training augmentation and the ground-truth masks (numpy and OpenCV; imports models.utils only).

    skeleton.py    JOINT_NAMES, NUM_JOINTS, LIMBS, visible(joints), draw_skeleton(...)
    keypoints.py   COCO17_NAMES, HeadConfig, coco17_to_joints14(...), outside_image(...)
    crop.py        crop_affine, warp_image / warp_mask / warp_points, paste_back, crop_footprint,
                   paste_back_window, union_window, Window
    posemap.py     pose_map(joints, crop_size, sigma, per_joint), to_uint8(values)
    prior.py       PriorConfig, prior_mask(...), BoxPriorConfig, box_prior(...)
    sample.py      CropConfig, person_sample(...), box_person_sample(...): one cache sample
    augment.py     AugmentConfig, AUGMENTATIONS, augment_person(...), FLIPPED_JOINTS
    masks.py       coco_instance_mask(...), voc_person_instances(...), encode_rle(mask), VOC_VOID
"""

from models.sample.augment import AUGMENTATIONS, FLIPPED_JOINTS, AugmentConfig, augment_person
from models.sample.crop import (
    Window,
    crop_footprint,
    paste_back,
    paste_back_window,
    union_window,
    warp_mask,
)
from models.sample.keypoints import COCO17_NAMES, HeadConfig, coco17_to_joints14, outside_image
from models.sample.masks import VOC_VOID, coco_instance_mask, encode_rle, voc_person_instances
from models.sample.posemap import pose_map
from models.sample.prior import BoxPriorConfig, PriorConfig, prior_mask
from models.sample.sample import CropConfig, box_person_sample, person_sample
from models.sample.skeleton import JOINT_NAMES, LIMBS, NUM_JOINTS, draw_skeleton, visible

__all__ = [
    "AUGMENTATIONS",
    "COCO17_NAMES",
    "FLIPPED_JOINTS",
    "JOINT_NAMES",
    "LIMBS",
    "NUM_JOINTS",
    "VOC_VOID",
    "AugmentConfig",
    "BoxPriorConfig",
    "CropConfig",
    "HeadConfig",
    "PriorConfig",
    "Window",
    "augment_person",
    "box_person_sample",
    "coco17_to_joints14",
    "coco_instance_mask",
    "crop_footprint",
    "draw_skeleton",
    "encode_rle",
    "outside_image",
    "paste_back",
    "paste_back_window",
    "person_sample",
    "pose_map",
    "prior_mask",
    "union_window",
    "visible",
    "voc_person_instances",
    "warp_mask",
]
