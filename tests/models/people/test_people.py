"""models.people: per-person masks through crops, instance labels, people from detector + estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.network.unet import ModelConfig, PoseUNet
from models.people.boxmask import grabcut_window, near_edge
from models.people.find import estimate_people, person_from_keypoints
from models.people.ownership import OwnerCheck
from models.people.person import SOURCE_BOX, SOURCE_KEYPOINTS, Person, instance_labels
from models.people.segment import segment_people
from models.sample.prior import BoxPriorConfig, box_prior
from models.sample.sample import CropConfig, box_person_sample


def standing_person(cx: float, top: float, height: float) -> np.ndarray:
    """(17,3) COCO keypoints of an upright person."""
    ys = top + height * np.array(
        [0.05, 0.03, 0.03, 0.05, 0.05, 0.2, 0.2, 0.35, 0.35, 0.5, 0.5, 0.55, 0.55, 0.75, 0.75, 0.95, 0.95]
    )
    dx = height * np.array(
        [0, 0.02, -0.02, 0.04, -0.04, 0.1, -0.1, 0.12, -0.12, 0.13, -0.13, 0.07, -0.07, 0.07, -0.07, 0.07, -0.07]
    )
    return np.stack([cx + dx, ys, np.full(17, 2.0)], 1).astype(np.float32)


def test_instance_labels_give_overlaps_to_the_more_likely_person():
    a = np.array([[0.9, 0.6, 0.1, 0.0]], np.float32)
    b = np.array([[0.2, 0.7, 0.3, 0.8]], np.float32)
    labels = instance_labels([a, b], 0.5)
    assert labels.dtype == np.uint8
    assert labels.tolist() == [[1, 2, 0, 2]]
    with pytest.raises(ValueError):
        instance_labels([], 0.5)


def test_person_from_keypoints_drops_outside_points_and_boxes_the_rest():
    kps = standing_person(50, 10, 80)
    kps[0] = [500, 5, 2]  # outside a 100x100 image
    person = person_from_keypoints(kps, None, (100, 100), 0.05, 0.12, annotation_id=7)
    assert person.keypoints[0].tolist() == [0, 0, 0] and person.annotation_id == 7
    x, y, w, h = person.bbox
    assert x < kps[1:, 0].min() and y < kps[1:, 1].min() and x + w > kps[1:, 0].max()
    assert person_from_keypoints(np.zeros((17, 3)), None, (100, 100), 0.05, 0.12) is None


def test_estimate_people_keeps_people_with_enough_keypoints():
    image = np.zeros((100, 120, 3), np.uint8)
    boxes = np.array([[10, 10, 30, 80, 0.9], [60, 10, 30, 80, 0.8]], np.float32)
    full, sparse = standing_person(25, 10, 80), standing_person(75, 10, 80)
    sparse[3:, 2] = 0
    sparse[3:, :2] = 0
    poses = {10.0: full, 60.0: sparse}
    people = estimate_people(image, lambda img: boxes, lambda img, box: poses[float(box[0])], min_keypoints=4)
    assert len(people) == 1 and people[0].bbox.tolist() == [10, 10, 30, 80]


def test_segment_people_pastes_each_person_back_where_they_stand():
    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2)).eval()  # zero-init head: the output is the prior
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), np.uint8)
    left, right = standing_person(50, 10, 100), standing_person(150, 10, 100)
    people = [
        Person(left, np.array([30, 10, 40, 100], np.float32)),
        Person(right, np.array([130, 10, 40, 100], np.float32)),
    ]
    masks = segment_people(net, image, people, CropConfig(size=64), threshold=0.5)
    assert len(masks) == 2
    for m, cx in zip(masks, (50, 150), strict=True):
        assert m.prob.shape == (120, 200) and m.mask.dtype == bool and 0 < m.score <= 1
        ys, xs = np.nonzero(m.mask)
        assert len(xs) > 100 and abs(xs.mean() - cx) < 10
    labels = instance_labels([m.prob for m in masks], 0.5)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels[:, :100] != 2).all() and (labels[:, 100:] != 1).all()


def test_estimate_people_keeps_a_poseless_detection_as_a_box_person_when_asked():
    image = np.zeros((100, 120, 3), np.uint8)
    boxes = np.array([[10, 10, 30, 80, 0.9], [60, 10, 30, 80, 0.7]], np.float32)
    poses = {10.0: standing_person(25, 10, 80), 60.0: None}
    people = estimate_people(image, lambda img: boxes, lambda img, box: poses[float(box[0])], 4, box_fallback=True)
    assert [p.source for p in people] == [SOURCE_KEYPOINTS, SOURCE_BOX]
    assert people[1].keypoints.shape == (17, 3) and not people[1].keypoints.any()
    assert people[1].detection_score == pytest.approx(0.7)
    assert len(estimate_people(image, lambda img: boxes, lambda img, box: poses[float(box[0])], 4)) == 1


def test_box_person_gets_grabcut_mask_and_the_network_person_wins_shared_pixels():
    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2)).eval()
    image = np.full((120, 200, 3), 30, np.uint8)
    image[20:110, 135:165] = (220, 60, 60)  # a red "person" inside the right box
    people = [
        Person(standing_person(50, 10, 100), np.array([30, 10, 40, 100], np.float32)),
        Person(
            np.zeros((17, 3), np.float32),
            np.array([125, 10, 50, 105], np.float32),
            source=SOURCE_BOX,
            detection_score=0.6,
        ),
    ]
    masks = segment_people(net, image, people, CropConfig(size=64), threshold=0.5)
    box = masks[1]
    assert box.score == pytest.approx(0.6)
    red = np.zeros((120, 200), bool)
    red[20:110, 135:165] = True
    assert (box.mask & red).sum() / (box.mask | red).sum() > 0.8
    assert not box.mask[:, :120].any()


def test_box_person_gets_the_box_segmenter_mask_inside_its_box():
    """A box segmenter sees the box's region with its margin (context) and its mask is kept
    inside the box; the pose-guided person is segmented by the network as before."""
    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2)).eval()
    image = np.full((120, 200, 3), 30, np.uint8)
    image[20:110, 135:165] = (220, 60, 60)
    box = np.array([125, 10, 50, 105], np.float32)
    people = [
        Person(standing_person(50, 10, 100), np.array([30, 10, 40, 100], np.float32)),
        Person(np.zeros((17, 3), np.float32), box, source=SOURCE_BOX, detection_score=0.6),
    ]
    seen = []

    def red_segmenter(region: np.ndarray) -> np.ndarray:
        seen.append(region.shape)
        return (region[..., 0] > 128).astype(np.float32) * 0.9 + 0.05 * (region[..., 0] <= 128)

    plain = segment_people(net, image, people, CropConfig(size=64), threshold=0.5)
    masks = segment_people(net, image, people, CropConfig(size=64), threshold=0.5, box_segmenter=red_segmenter)
    window = grabcut_window(box, image.shape[:2])
    assert seen == [(window[1] - window[0], window[3] - window[2], 3)]  # called once, on the box's window
    red = np.zeros((120, 200), bool)
    red[20:110, 135:165] = True
    np.testing.assert_array_equal(masks[1].mask, red)
    np.testing.assert_array_equal(masks[0].prob, plain[0].prob)
    everything = segment_people(
        net, image, people[1:], CropConfig(size=64), 0.5, box_segmenter=lambda r: np.ones(r.shape[:2], np.float32)
    )[0]
    inside = np.zeros((120, 200), bool)
    inside[10:115, 125:175] = True
    np.testing.assert_array_equal(everything.mask, inside)  # clipped to the box, not the window


def test_grabcut_refinement_moves_a_thin_mask_onto_the_person():
    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2)).eval()  # output = the thin skeleton prior
    image = np.full((140, 120, 3), 20, np.uint8)
    kps = standing_person(60, 15, 110)
    body = np.zeros((140, 120), bool)
    body[10:130, 35:86] = True  # a wide, evenly coloured figure around the skeleton
    image[body] = (200, 180, 60)
    person = Person(kps, np.array([30, 5, 60, 130], np.float32))
    plain = segment_people(net, image, [person], CropConfig(size=64), 0.5)[0]
    refined = segment_people(net, image, [person], CropConfig(size=64), 0.5, grabcut=True)[0]

    def iou(mask: np.ndarray) -> float:
        return (mask & body).sum() / (mask | body).sum()

    assert iou(refined.mask) > iou(plain.mask) + 0.1 and iou(refined.mask) > 0.8
    assert (refined.prob[refined.mask] >= 0.5).all() and (refined.prob[~refined.mask] == 0).all()


def test_a_box_that_is_not_finite_or_misses_the_image_falls_back_to_the_keypoints():
    kps = standing_person(50, 10, 80)
    for bad in ([np.nan, 0, 10, 10], [0, 0, np.inf, 10], [1e30, 1e30, 1e30, 1e30], [500, 500, 20, 20]):
        person = person_from_keypoints(kps, bad, (100, 100), 0.05, 0.12)
        x, y, w, h = person.bbox
        assert np.isfinite(person.bbox).all() and w < 100 and h < 120  # the keypoints' extent, not the photo
    clipped = person_from_keypoints(kps, [-50, -50, 1e30, 1e30], (100, 100), 0.05, 0.12).bbox
    assert clipped.tolist() == [0, 0, 100, 100]


def test_memory_of_one_photo_is_bounded_by_the_batch_whatever_the_number_of_people(monkeypatch):
    """300 people in one photo: the network sees at most batch_size crops at once, masks come one by
    one, and the label map (uint16 past 255 people) matches the one built from all of them."""
    import models.people.segment as people_module
    from models.people.person import LabelMap

    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2)).eval()
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), np.uint8)
    crowd = [
        Person(standing_person(20 + (k % 160), 10, 100), np.array([5 + k % 160, 10, 40, 100], np.float32))
        for k in range(300)
    ]
    seen = []
    real = people_module.crop_probabilities

    def spy(net, samples, device, prior_eps=1e-4):
        seen.append(len(samples))
        return real(net, samples, device, prior_eps)

    monkeypatch.setattr(people_module, "crop_probabilities", spy)
    masks = people_module.iter_person_masks(net, image, crowd, CropConfig(size=32), 0.5, batch_size=8)
    labels = LabelMap(image.shape[:2], len(crowd), 0.5)
    first = next(masks)
    assert seen == [8]  # the first mask comes before the other 292 crops exist
    labels.add(first.prob)
    probs = [first.prob]
    for m in masks:
        labels.add(m.prob)
        probs.append(m.prob)
    assert max(seen) == 8 and sum(seen) == 300
    assert labels.result().dtype == np.uint16
    np.testing.assert_array_equal(labels.result(), instance_labels(probs, 0.5))
    with pytest.raises(ValueError, match="batch_size"):
        next(people_module.iter_person_masks(net, image, crowd, CropConfig(size=32), 0.5, batch_size=0))


@pytest.mark.parametrize("grabcut", [False, True])
def test_windowed_masks_equal_the_full_photo_computation(grabcut: bool) -> None:
    """A person is computed in the window of the photo it can touch: the same masks as pasting the
    crop back onto the whole photo (and running GrabCut on it), for people at the photo's edges."""
    from models.classical.baselines import grabcut_person
    from models.people.person import LabelMap
    from models.people.segment import crop_probabilities
    from models.sample.crop import paste_back
    from models.sample.sample import person_sample

    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2)).eval()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (160, 260, 3), np.uint8)
    image[20:150, 5:60] = (200, 180, 60)
    people = [
        Person(standing_person(30, 15, 130), np.array([2, 12, 55, 140], np.float32)),  # at the left edge
        Person(standing_person(240, 40, 140), np.array([215, 38, 45, 122], np.float32)),  # cut by the bottom
        Person(np.zeros((17, 3), np.float32), np.array([100, 30, 50, 100], np.float32), source=SOURCE_BOX),
    ]
    cfg = CropConfig(size=64)
    masks = segment_people(net, image, people, cfg, 0.5, grabcut=grabcut)
    labels = LabelMap(image.shape[:2], len(people), 0.5)
    for person, m in zip(people, masks, strict=True):
        if person.source == SOURCE_BOX:
            full_mask = grabcut_person(image, person.bbox)
            full = full_mask.astype(np.float32) * 0.5
        else:
            sample = person_sample(image, None, person.keypoints, person.bbox, cfg)
            full = paste_back(crop_probabilities(net, [sample], "cpu")[0], sample["affine"], image.shape[:2])
            if grabcut:
                full_mask = grabcut_person(image, person.bbox, full, threshold=0.5)
                full = np.where(full_mask, np.maximum(full, 0.5), 0.0).astype(np.float32)
        np.testing.assert_allclose(m.prob, full, atol=1e-5)
        np.testing.assert_array_equal(m.mask, full >= 0.5)
        labels.add(m.window_prob, m.window)
    np.testing.assert_array_equal(labels.result(), instance_labels([m.prob for m in masks], 0.5))


def test_samples_made_beforehand_give_the_same_masks():
    """iter_person_masks with person_samples made beforehand (the nightly read-ahead) equals the
    masks it makes itself; samples that do not match the posed people are refused."""
    from models.people.segment import iter_person_masks, person_samples

    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2, zero_init_last=False)).eval()
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    people = [
        Person(standing_person(50, 10, 100), np.array([30, 10, 40, 100], np.float32)),
        Person(np.zeros((17, 3), np.float32), np.array([125, 10, 50, 105], np.float32), source=SOURCE_BOX),
        Person(standing_person(150, 20, 90), np.array([130, 20, 40, 90], np.float32)),
    ]
    cfg = CropConfig(size=32)
    samples = person_samples(image, people, cfg)
    assert len(samples) == 2
    own = list(iter_person_masks(net, image, people, cfg, 0.5, batch_size=2))
    given = list(iter_person_masks(net, image, people, cfg, 0.5, batch_size=2, samples=samples))
    for a, b in zip(own, given, strict=True):
        np.testing.assert_array_equal(a.window_prob, b.window_prob)
    with pytest.raises(ValueError, match="people the network segments"):
        list(iter_person_masks(net, image, people, cfg, 0.5, samples=samples[:1]))
    # with a box prior the network also segments the box person: three samples, the same masks
    prior = BoxPriorConfig()
    with_box = person_samples(image, people, cfg, prior)
    assert len(with_box) == 3
    own = list(iter_person_masks(net, image, people, cfg, 0.5, batch_size=2, box_prior=prior))
    given = list(iter_person_masks(net, image, people, cfg, 0.5, batch_size=2, samples=with_box, box_prior=prior))
    for a, b in zip(own, given, strict=True):
        np.testing.assert_array_equal(a.window_prob, b.window_prob)


def test_box_prior_is_a_soft_ellipse_in_the_box_strictly_inside_0_1():
    cfg = BoxPriorConfig(inside=0.6, outside=0.05, blur_sigma=2.0)
    prior = box_prior(np.array([8, 4, 24, 60]), 64, cfg)
    assert prior.shape == (64, 64) and prior.dtype == np.float32
    assert prior.min() >= np.float32(0.05) and prior.max() <= np.float32(0.6)
    assert prior[32, 16] == pytest.approx(0.6) and prior[2, 2] == pytest.approx(0.05)
    assert prior[5, 9] < 0.3  # the box's corner lies outside the ellipse
    with pytest.raises(ValueError, match="outside < inside"):
        BoxPriorConfig(inside=0.05, outside=0.6)


def test_a_box_person_segmented_by_the_network_gets_a_mask_inside_its_box_that_yields_to_the_posed():
    """With a box prior and an untrained head (the output is the prior), a box person's mask is
    the prior's ellipse cut to its box, and a posed neighbour keeps the pixels both claim."""
    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2)).eval()
    image = np.full((120, 200, 3), 30, np.uint8)
    box = np.array([125, 10, 50, 105], np.float32)
    people = [
        Person(standing_person(50, 10, 100), np.array([30, 10, 40, 100], np.float32)),
        Person(np.zeros((17, 3), np.float32), box, source=SOURCE_BOX, detection_score=0.6),
    ]
    masks = segment_people(net, image, people, CropConfig(size=64), 0.5, box_prior=BoxPriorConfig(blur_sigma=1.0))
    mask = masks[1].mask
    inside = np.zeros((120, 200), bool)
    inside[10:115, 125:175] = True
    assert mask.any() and not (mask & ~inside).any()
    assert mask[62, 150] and not mask[12, 127]  # the ellipse's centre, not the box's corner
    assert mask.sum() / inside.sum() == pytest.approx(np.pi / 4, abs=0.08)
    assert masks[1].prob.max() == pytest.approx(0.5)  # threshold: a posed person wins shared pixels
    sample = box_person_sample(image, box, CropConfig(size=64))
    assert sample["posemap"].max() == 0 and not sample["joints"].any()


def test_near_edge_is_within_a_share_of_the_photo_side_of_any_edge():
    hw = (100, 200)  # 2 % = 4 px across, 2 px down
    assert not near_edge(np.array([10, 10, 50, 50]), hw, 0.02)
    assert near_edge(np.array([3, 10, 50, 50]), hw, 0.02)  # left
    assert near_edge(np.array([150, 10, 47, 50]), hw, 0.02)  # right: ends at 197 > 196
    assert not near_edge(np.array([150, 10, 45, 50]), hw, 0.02)
    assert near_edge(np.array([10, 1, 50, 50]), hw, 0.02) and near_edge(np.array([10, 40, 50, 59]), hw, 0.02)
    assert not near_edge(np.array([0, 0, 200, 100]), hw, 0.0)  # 0: never
    with pytest.raises(ValueError, match="edge_grabcut"):
        BoxPriorConfig(edge_grabcut=0.5)


def test_a_box_person_cut_by_the_photo_edge_gets_grabcut_on_the_network_mask():
    """A person the photo cuts fills their box, not the box's ellipse: near the edge
    (edge_grabcut) GrabCut, seeded by the network's probability, takes the mask to the person's
    colour boundary; with edge_grabcut = 0, or away from the edge, the mask stays the ellipse."""
    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2)).eval()  # untrained head: the output is the prior
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal((40, 90, 160), 8, (120, 200, 3)), 0, 255).astype(np.uint8)
    image[20:, 150:] = np.clip(rng.normal((220, 180, 150), 8, (100, 50, 3)), 0, 255).astype(np.uint8)
    truth = np.zeros((120, 200), bool)
    truth[20:, 150:] = True
    person = Person(np.zeros((17, 3), np.float32), np.array([150, 20, 50, 100], np.float32), source=SOURCE_BOX)

    def mask_iou(edge_grabcut: float) -> float:
        prior = BoxPriorConfig(blur_sigma=1.0, edge_grabcut=edge_grabcut)
        mask = segment_people(net, image, [person], CropConfig(size=64), 0.5, box_prior=prior)[0].mask
        return (mask & truth).sum() / (mask | truth).sum()

    assert mask_iou(0.0) == pytest.approx(np.pi / 4, abs=0.08)
    assert mask_iou(0.02) > 0.95


def test_estimate_people_says_why_each_detected_person_has_their_pose_or_none():
    image = np.zeros((130, 110, 3), np.uint8)
    left, right = np.array([10, 10, 40, 100, 0.9], np.float32), np.array([55, 10, 40, 100, 0.8], np.float32)
    neighbour = standing_person(75, 10, 100)  # the right person's pose, whichever box is asked

    def detect(img: np.ndarray) -> np.ndarray:
        return np.stack([left, right])

    people = estimate_people(image, detect, lambda img, box: neighbour.copy(), 4, box_fallback=True)
    assert [(p.source, p.pose_reason) for p in people] == [(SOURCE_BOX, "pose_borrowed"), (SOURCE_KEYPOINTS, "pose")]
    before = estimate_people(
        image, detect, lambda img, box: neighbour.copy(), 4, box_fallback=True, check=OwnerCheck(enabled=False)
    )
    assert [p.source for p in before] == [SOURCE_KEYPOINTS, SOURCE_KEYPOINTS]  # a mask on someone else
    few = neighbour.copy()
    few[11:] = 0  # the upper body's 11 joints (its own: they fit the box), too few for min_keypoints 12
    people = estimate_people(image, lambda img: right[None], lambda img, box: few.copy(), 12, box_fallback=True)
    assert [(p.source, p.pose_reason) for p in people] == [(SOURCE_BOX, "pose_few_joints")]


def test_decay_overlaps_lowers_the_mask_that_repeats_a_better_one():
    """decay_overlaps leaves the better of two overlapping masks (their IoU measured on the
    full-size masks) and lowers the other's quality and score; a mask that meets none is left."""
    from models.people.person import PersonMask, decay_overlaps

    rng = np.random.default_rng(0)
    hw = (60, 80)
    windows = [(0, 40, 0, 50), (10, 60, 20, 80), (45, 60, 0, 15)]
    masks = []
    for k, (y0, y1, x0, x1) in enumerate(windows):
        person = Person(np.zeros((17, 3), np.float32), np.array([x0, y0, x1 - x0, y1 - y0], np.float32))
        person.detection_score = 0.5
        prob = rng.random((y1 - y0, x1 - x0)).astype(np.float32)
        quality = (0.8, 0.6, 0.7)[k]
        masks.append(PersonMask(person, prob, (y0, y1, x0, x1), 0.5 * quality, hw, 0.5, quality=quality))
    full = [m.mask for m in masks]
    expected = np.array([[(a & b).sum() / (a | b).sum() for b in full] for a in full])
    assert expected[0, 1] > 0.05 and expected[0, 2] == 0
    decay_overlaps(masks)
    assert masks[0].quality == pytest.approx(0.8) and masks[2].quality == pytest.approx(0.7)
    assert masks[1].quality == pytest.approx(0.6 * (1 - expected[0, 1]))
    assert masks[1].score == pytest.approx(0.5 * masks[1].quality)  # the detector's share kept
