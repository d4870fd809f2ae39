"""models/sample/augment.py: image, mask and joints move together; pose map and prior are redrawn from the joints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.synthetic import write_synthetic_cache
from models.network.dataset import CacheDataset
from models.sample.augment import (
    AUGMENTATIONS,
    FLIPPED_JOINTS,
    AugmentConfig,
    augment_person,
    perturb_joints,
    random_affine,
)
from models.sample.posemap import pose_map, to_uint8
from models.sample.prior import prior_mask, prior_to_uint8
from models.sample.sample import CropConfig
from models.sample.skeleton import JOINT_NAMES, J

SIZE = 64
CROP = CropConfig(size=SIZE)
NONE = AUGMENTATIONS["none"]


def _person() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 64x64 crop: a bright vertical bar (the mask) and joints down its middle, left ones at x=28."""
    image = np.full((SIZE, SIZE, 3), 40, np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[8:56, 24:40] = 1
    image[mask > 0] = 200
    joints = np.zeros((14, 3), np.float32)
    joints[:, 1] = np.linspace(10, 54, 14)
    joints[:, 0] = [28.0 if name.startswith("l_") else 36.0 if name.startswith("r_") else 32.0 for name in JOINT_NAMES]
    joints[:, 2] = 2
    return image, mask, joints


def test_no_augmentation_is_the_identity_and_redraws_what_the_cache_holds() -> None:
    image, mask, joints = _person()
    out = augment_person(image, mask, joints, np.random.default_rng(0), NONE, CROP)
    np.testing.assert_array_equal(out["image"], image)
    np.testing.assert_array_equal(out["mask"], mask)
    np.testing.assert_array_equal(out["joints"], joints)
    np.testing.assert_array_equal(out["prior"], prior_to_uint8(prior_mask(joints, SIZE, CROP.prior)))
    np.testing.assert_array_equal(out["posemap"], to_uint8(pose_map(joints, SIZE, CROP.posemap_sigma)))


def test_flip_mirrors_everything_and_swaps_left_and_right() -> None:
    image, mask, joints = _person()
    out = augment_person(image, mask, joints, np.random.default_rng(0), replace(NONE, flip_prob=1.0), CROP)
    np.testing.assert_array_equal(out["mask"], mask[:, ::-1])
    np.testing.assert_array_equal(out["image"], image[:, ::-1])
    # the person's left wrist is still called l_wrist, now on the mirrored side of the right one
    left, right = out["joints"][J["l_wrist"]], out["joints"][J["r_wrist"]]
    assert left[0] == pytest.approx(SIZE - 1 - 36.0) and right[0] == pytest.approx(SIZE - 1 - 28.0)
    assert JOINT_NAMES[FLIPPED_JOINTS[J["l_knee"]]] == "r_knee"


def test_geometry_moves_image_mask_and_joints_together() -> None:
    image, mask, joints = _person()
    cfg = replace(NONE, scale=0.3, rotate_deg=30.0, translate=0.1)
    for seed in range(20):
        out = augment_person(image, mask, joints, np.random.default_rng(seed), cfg, CROP)
        vis = out["joints"][:, 2] > 0
        xy = np.round(out["joints"][vis, :2]).astype(int)
        # every visible joint still sits on (or next to) the person's warped mask, and on its bright pixels
        assert out["mask"][xy[:, 1], xy[:, 0]].mean() > 0.9
        assert (out["image"][xy[:, 1], xy[:, 0], 0] > 120).mean() > 0.9
        assert set(np.unique(out["mask"])) <= {0, 1}
        np.testing.assert_array_equal(out["prior"], prior_to_uint8(prior_mask(out["joints"], SIZE, CROP.prior)))


def test_joints_off_the_crop_and_dropped_ones_become_invisible() -> None:
    _, _, joints = _person()
    joints[0, 0] = -5.0
    out = perturb_joints(joints, SIZE, np.random.default_rng(0), NONE)
    assert out[0, 2] == 0 and (out[1:, 2] > 0).all()
    none_left = perturb_joints(joints, SIZE, np.random.default_rng(0), replace(NONE, all_joints_drop=1.0))
    assert (none_left == 0).all()
    image, mask, _ = _person()
    blind = augment_person(image, mask, joints, np.random.default_rng(0), replace(NONE, all_joints_drop=1.0), CROP)
    assert blind["posemap"].max() == 0
    assert np.unique(blind["prior"]).size == 1  # the prior's floor everywhere: no skeleton left
    noisy = perturb_joints(joints, SIZE, np.random.default_rng(1), replace(NONE, joint_noise_px=2.0))
    moved = np.abs(noisy[1:, :2] - joints[1:, :2])
    assert 0 < moved.mean() < 6


def test_colour_jitter_keeps_geometry_and_range() -> None:
    image, mask, joints = _person()
    cfg = replace(NONE, brightness=0.5, contrast=0.5, saturation=0.5)
    out = augment_person(image, mask, joints, np.random.default_rng(3), cfg, CROP)
    np.testing.assert_array_equal(out["mask"], mask)
    assert out["image"].dtype == np.uint8 and not np.array_equal(out["image"], image)
    assert out["image"][mask > 0].mean() > out["image"][mask == 0].mean()  # the person stays brighter


def test_same_seed_same_sample_and_affine_about_the_centre() -> None:
    image, mask, joints = _person()
    full = AUGMENTATIONS["full"]
    a = augment_person(image, mask, joints, np.random.default_rng(7), full, CROP)
    b = augment_person(image, mask, joints, np.random.default_rng(7), full, CROP)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    affine, _ = random_affine(np.random.default_rng(0), SIZE, replace(NONE, rotate_deg=45.0))
    centre = np.array([(SIZE - 1) / 2] * 2)
    np.testing.assert_allclose(affine[:, :2] @ centre + affine[:, 2], centre, atol=1e-9)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=float("nan"))


def test_cache_dataset_full_augmentation(tmp_path) -> None:
    path = write_synthetic_cache(tmp_path / "c.h5", 3, seed=1, size=SIZE)
    torch.manual_seed(0)
    item = CacheDataset(path, augment=AUGMENTATIONS["full"])[1]
    assert item["image"].shape == (3, SIZE, SIZE) and item["posemap"].shape == (1, SIZE // 2, SIZE // 2)
    assert item["prior"].min() > 0 and item["prior"].max() < 1
    torch.manual_seed(0)
    again = CacheDataset(path, augment=AUGMENTATIONS["full"])[1]
    for key in item:
        torch.testing.assert_close(item[key], again[key], atol=0, rtol=0)
    per_joint = write_synthetic_cache(tmp_path / "j.h5", 2, seed=1, size=SIZE, pose_channels=14)
    assert CacheDataset(per_joint, augment=AUGMENTATIONS["full"])[0]["posemap"].shape == (14, SIZE // 2, SIZE // 2)


def test_a_box_only_sample_has_no_joints_an_empty_pose_map_and_the_box_prior_of_its_mask():
    """box_prior_share = 1: every sample is a person known only by a (jittered) box, as the nightly
    path segments a detected person without a usable pose."""
    from models.sample.augment import AUGMENTATIONS, AugmentConfig, augment_person, jittered_mask_box
    from models.sample.sample import CropConfig

    size = 64
    image = np.full((size, size, 3), 90, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[10:58, 24:40] = 1
    joints = np.zeros((14, 3), np.float32)
    joints[:, :2], joints[:, 2] = (32, 30), 2
    cfg = AugmentConfig(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, box_prior_share=1.0, box_jitter=0.0)
    out = augment_person(image, mask, joints, np.random.default_rng(0), cfg, CropConfig(size=size))
    assert not out["joints"].any() and out["posemap"].max() == 0
    prior = out["prior"]
    assert prior[34, 32] > 120 and prior[2, 2] < 20  # the ellipse's centre inside the box; the corner out
    assert prior[:, :14].max() < 40 and prior[:, 50:].max() < 40  # nothing far outside the box
    box = jittered_mask_box(mask, np.random.default_rng(1), 0.1)
    assert np.all(np.abs(box - [24, 10, 40, 58]) <= [1.6, 4.8, 1.6, 4.8])
    assert AUGMENTATIONS["full+box"].box_prior_share == 0.2 and AUGMENTATIONS["full"].box_prior_share == 0.0
