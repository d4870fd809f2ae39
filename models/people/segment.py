"""Several people in one photo: find them, segment each through its own crop, merge into labels.

Pure numpy/torch (no luigi; torch is imported when a network runs). Each person gets the same
treatment as a cached sample (models.sample.person_sample -> PoseUNet -> optional dense CRF at crop
size -> paste back), so a mask made here for a person equals the one PredictMasks + Evaluate make
for that person.

Detected people (estimate_people) get a pose only when it is theirs (models.ownership: checked
against the box, estimated again with the neighbours greyed out, one skeleton per person). A
detected person without a usable pose (or with fewer than `min_keypoints` joints) is kept as a
"box" person when asked: its mask comes from the network with a box prior and no pose map
(box_prior, box_person_sample), from a box segmenter run in the detector's box (box_mask), or from
GrabCut initialised with the box (models.baselines.grabcut_person), and its `source` says so in
every output. A posed person's probability can be fused with the pose estimator's own person
segmentation (segmentation_weight, fuse_segmentation). With `grabcut`, the network's masks are
refined by GrabCut, seeded by the network's probability. A mask's score is mask_score (its quality, models/quality.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.baselines import GRABCUT_MARGIN, box_in_region, grabcut_person, grabcut_region
from models.crf import CRFParams, refine
from models.crop import Window, crop_footprint, paste_back_window, union_window
from models.detect import keypoint_box
from models.keypoints import COCO17_NAMES, outside_image
from models.ownership import FEW_JOINTS, OwnerCheck, assign_poses
from models.pose import PoseResult
from models.prior import BoxPriorConfig
from models.quality import Calibration, combine_quality, expected_iou, prior_agreement
from models.sample import CropConfig, box_person_sample, person_sample

if TYPE_CHECKING:  # torch loads when a network runs, not when the nightly tasks are imported
    import torch

    from models.unet import PoseUNet

# Label maps are uint8 up to this many people, uint16 beyond (PNG holds both).
MAX_UINT8_PEOPLE = 255
# Where a person's mask comes from: the pose-guided network, or GrabCut from the box alone.
SOURCE_KEYPOINTS = "keypoints"
SOURCE_BOX = "box"
# (h,w,3) uint8 RGB region -> (h,w) float person probability: how a box person is segmented
BoxSegmenter = Callable[[np.ndarray], np.ndarray]


@dataclass
class Person:
    """One person to segment: keypoints (17,3) COCO x, y, v in image pixels; bbox (4,) xywh;
    annotation_id: the person's id in a keypoints file, when it came from one; source:
    SOURCE_KEYPOINTS (the network) or SOURCE_BOX (no usable pose: a mask from the box);
    detection_score: the detector's score when the person was detected; pose_reason: why a detected
    person has the pose it has, or none (models.ownership.REASONS; "" for given keypoints);
    segmentation: the estimator's result with its person segmentation (models.pose.PoseResult),
    when it made one: fused with the network's probability (iter_person_masks)."""

    keypoints: np.ndarray
    bbox: np.ndarray
    annotation_id: int | None = None
    source: str = SOURCE_KEYPOINTS
    detection_score: float | None = None
    pose_reason: str = ""
    segmentation: PoseResult | None = None  # the pose estimator's person probability around the person


@dataclass
class PersonMask:
    """One person's result, held in the window of the photo it can touch (its cost and memory do
    not grow with the photo): window (y0, y1, x0, x1); window_prob (y1-y0, x1-x0) float32, the
    probability there (0 outside the window); image_hw the photo's (H, W); threshold the mask's.
    `prob` and `mask` give the full-size (H,W) float32 / bool arrays when a caller needs them.
    quality: the mask's expected IoU with the truth (models.quality.mask_quality of the network's
    probability and the person's prior; None for a mask with no probability behind it: the selfie
    segmenter or GrabCut in a box), with its parts expected_iou and prior_agreement.
    score = mask_score: what COCO AP ranks by, quality x the detector's score for a detected
    person; confidence: the score before quality existed (the mean probability inside the mask,
    times the detector's score), kept for comparison."""

    person: Person
    window_prob: np.ndarray
    window: Window
    score: float
    image_hw: tuple[int, int]
    threshold: float
    quality: float | None = None
    expected_iou: float | None = None
    prior_agreement: float | None = None
    confidence: float | None = None

    @property
    def window_mask(self) -> np.ndarray:
        """(y1-y0, x1-x0) bool: window_prob >= threshold."""
        return self.window_prob >= self.threshold

    @property
    def prob(self) -> np.ndarray:
        """(H,W) float32 full-size probability (0 outside the window)."""
        full = np.zeros(self.image_hw, np.float32)
        y0, y1, x0, x1 = self.window
        full[y0:y1, x0:x1] = self.window_prob
        return full

    @property
    def mask(self) -> np.ndarray:
        """(H,W) bool full-size mask (prob >= threshold)."""
        full = np.zeros(self.image_hw, bool)
        y0, y1, x0, x1 = self.window
        full[y0:y1, x0:x1] = self.window_mask
        return full


def present_keypoints(keypoints: np.ndarray) -> int:
    """Number of keypoints with v > 0 in a (17,3) array."""
    return int((np.asarray(keypoints)[:, 2] > 0).sum())


def clean_keypoints(keypoints: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(17,3) float32 copy with keypoints outside the image set missing (as BuildCache does)."""
    kps = np.asarray(keypoints, np.float32).reshape(-1, 3).copy()
    outside = (kps[:, 2] > 0) & outside_image(kps, *image_hw)
    kps[outside] = 0.0
    return kps


def person_from_keypoints(
    keypoints: np.ndarray,
    bbox: Sequence[float] | None,
    image_hw: tuple[int, int],
    pad: float,
    pad_top: float,
    annotation_id: int | None = None,
) -> Person | None:
    """A Person from file keypoints; the box is clipped to the image, and is the keypoints' padded extent
    when none is given (or the given one is not finite or misses the image).

    pad / pad_top: as models.detect.keypoint_box. None when no keypoint is present.
    """
    kps = clean_keypoints(keypoints, image_hw)
    if present_keypoints(kps) == 0:
        return None
    box = clip_box(bbox, image_hw) if bbox is not None else None
    if box is None:  # no box, or one that does not overlap the image: the keypoints' extent
        box = keypoint_box(kps, pad, pad_top)
    return Person(kps, box, annotation_id)


def clip_box(bbox: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray | None:
    """(4,) xywh box clipped to an (H, W) image; None when it is not finite or leaves nothing inside."""
    x, y, w, h = (float(v) for v in bbox)
    if not np.isfinite([x, y, w, h]).all():
        return None
    height, width = image_hw
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return np.array([x0, y0, x1 - x0, y1 - y0], np.float32)


def estimate_people(
    image_rgb: np.ndarray,
    detect: Callable[[np.ndarray], np.ndarray],
    estimate: Callable[[np.ndarray, Sequence[float]], np.ndarray | PoseResult | None],
    min_keypoints: int,
    box_fallback: bool = False,
    check: OwnerCheck | None = None,
) -> list[Person]:
    """People without given keypoints: detect boxes, then one pose per box that belongs to it.

    detect: image (H,W,3) -> (K,5) [x, y, w, h, score]; estimate: (image, box xywh) -> (17,3)
    keypoints in image pixels (or a models.pose.PoseResult with them and the estimator's person
    segmentation, kept as the Person's `segmentation`) or None. Each pose is checked against its
    box and made unique (models.ownership.assign_poses with `check`; OwnerCheck() by default,
    OwnerCheck(enabled=False) keeps the estimator's poses as they come). A person without a pose
    of its own, or with fewer than `min_keypoints` joints, is dropped, or kept as a SOURCE_BOX
    person (no keypoints) when `box_fallback` is set. Every person's `pose_reason` says which
    (models.ownership.REASONS).
    """
    check = OwnerCheck() if check is None else check
    boxes = detect(image_rgb)
    people = []
    for box, assigned in zip(boxes, assign_poses(image_rgb, boxes, estimate, check), strict=True):
        bbox, score = np.asarray(box[:4], np.float32), float(box[4])
        keypoints, reason = assigned.keypoints, assigned.reason
        if keypoints is not None:
            keypoints = clean_keypoints(keypoints, image_rgb.shape[:2])
            if present_keypoints(keypoints) < min_keypoints:
                keypoints, reason = None, FEW_JOINTS
        if keypoints is not None:
            people.append(Person(keypoints, bbox, None, SOURCE_KEYPOINTS, score, reason, assigned.result))
        elif box_fallback:
            no_joints = np.zeros((len(COCO17_NAMES), 3), np.float32)
            people.append(Person(no_joints, bbox, source=SOURCE_BOX, detection_score=score, pose_reason=reason))
    return people


def crop_probabilities(
    net: PoseUNet, samples: Sequence[dict[str, np.ndarray]], device: torch.device | str, prior_eps: float = 1e-4
) -> np.ndarray:
    """Network probabilities of person_sample dicts (one batch) -> (B,S,S) float32.

    The inputs are normalised exactly as models.dataset.CacheDataset does for training.
    """
    import torch

    from models.dataset import UINT8_MAX, normalize_image, prior_to_probability

    with torch.inference_mode():
        images = torch.stack([normalize_image(s["image"]) for s in samples])
        posemaps = []
        for s in samples:
            pose = torch.from_numpy(s["posemap"]).float().div_(UINT8_MAX)
            posemaps.append(pose.unsqueeze(0) if pose.ndim == 2 else pose)
        priors = torch.stack([prior_to_probability(s["prior"], prior_eps) for s in samples])
        device = torch.device(device)
        # channels-last, as models.train.iter_predictions: x1.4 on this CPU, the same probabilities
        # to float rounding; converting weights already in that format costs nothing
        fmt = torch.channels_last
        net.to(memory_format=fmt)
        inputs = (t.to(device, memory_format=fmt) for t in (images, torch.stack(posemaps), priors))
        probability = net.predict_probability(*inputs)
        return probability[:, 0].float().cpu().numpy()


def by_network(person: Person, box_prior: BoxPriorConfig | None) -> bool:
    """Whether the network segments this person: posed people always, box people with a box prior."""
    return person.source == SOURCE_KEYPOINTS or box_prior is not None


def person_samples(
    image_rgb: np.ndarray, people: Sequence[Person], crop_cfg: CropConfig, box_prior: BoxPriorConfig | None = None
) -> list[dict[str, np.ndarray]]:
    """The network's inputs of the people it segments (by_network), in order: person_sample (no
    mask) of the posed people, box_person_sample of the box people when `box_prior` is given."""
    return [
        person_sample(image_rgb, None, p.keypoints, p.bbox, crop_cfg)
        if p.source == SOURCE_KEYPOINTS
        else box_person_sample(image_rgb, p.bbox, crop_cfg, box_prior)
        for p in people
        if by_network(p, box_prior)
    ]


def iter_person_masks(
    net: PoseUNet,
    image_rgb: np.ndarray,
    people: Sequence[Person],
    crop_cfg: CropConfig,
    threshold: float,
    crf: CRFParams | None = None,
    device: torch.device | str = "cpu",
    grabcut: bool = False,
    batch_size: int = 16,
    box_segmenter: BoxSegmenter | None = None,
    samples: Sequence[dict[str, np.ndarray]] | None = None,
    box_prior: BoxPriorConfig | None = None,
    segmentation_weight: float = 0.0,
    calibration: Calibration | None = None,
) -> Iterator[PersonMask]:
    """The PersonMask of each person of one image, in order, made `batch_size` people at a time.

    Memory is bounded by `batch_size` crops and one person's window at a time, whatever the
    number of people (a caller that keeps every PersonMask keeps them all: see segment_people).
    image_rgb: (H,W,3) uint8. Each person is cropped (person_sample, no mask), predicted, refined
    by the dense CRF at crop size when `crf` is enabled (as RefineCRF does), pasted back and, with
    `grabcut`, refined by GrabCut in its box seeded by that probability (models.baselines.grabcut_person;
    the probability is then kept inside GrabCut's mask, raised to `threshold`, and 0 outside).
    samples: person_samples(image_rgb, people, crop_cfg, box_prior), when already made (the
    nightly shard makes them in its read-ahead thread); by default each batch makes its own.
    SOURCE_BOX people (no usable pose) get, with `box_prior`, the network's mask from the box prior
    (box_person_sample; the dense CRF as for the posed) kept inside their box; else the mask of
    `box_segmenter` run on their box's region (box_mask; None: GrabCut's mask from their box).
    Their probability is `threshold` inside that mask (so a pose-guided neighbour wins the pixels
    both claim). With `segmentation_weight` > 0, a posed person whose pose estimator made a person
    segmentation (Person.segmentation) gets the weighted mean of the two (fuse_segmentation).
    calibration: the model's quality calibration (models.quality.read_calibration; None: the raw
    quality), which scores each network-made mask (PersonMask.quality, .score).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if samples is not None and len(samples) != (segmented := sum(by_network(p, box_prior) for p in people)):
        raise ValueError(f"{len(samples)} samples for {segmented} people the network segments")
    done_before = 0
    for start in range(0, len(people), batch_size):
        batch = people[start : start + batch_size]
        count = sum(by_network(p, box_prior) for p in batch)
        batch_samples = None if samples is None else samples[done_before : done_before + count]
        done_before += count
        yield from _batch_masks(
            net,
            image_rgb,
            batch,
            crop_cfg,
            threshold,
            crf,
            device,
            grabcut,
            box_segmenter,
            batch_samples,
            box_prior,
            segmentation_weight,
            calibration,
        )


def _batch_masks(
    net: PoseUNet,
    image_rgb: np.ndarray,
    people: Sequence[Person],
    crop_cfg: CropConfig,
    threshold: float,
    crf: CRFParams | None,
    device: torch.device | str,
    grabcut: bool,
    box_segmenter: BoxSegmenter | None = None,
    samples: Sequence[dict[str, np.ndarray]] | None = None,
    box_prior: BoxPriorConfig | None = None,
    segmentation_weight: float = 0.0,
    calibration: Calibration | None = None,
) -> Iterator[PersonMask]:
    h, w = image_rgb.shape[:2]
    if samples is None:
        samples = person_samples(image_rgb, people, crop_cfg, box_prior)
    probs = iter(crop_probabilities(net, samples, device) if samples else [])
    sample_of = iter(samples)
    for person in people:
        if person.source == SOURCE_BOX and box_prior is not None:
            sample, prob = next(sample_of), next(probs)
            if crf is not None and crf.enabled:
                prob = refine(sample["image"], prob, crf)
            window = grabcut_window(person.bbox, (h, w))
            pasted = functools.partial(paste_back_window, prob, sample["affine"], window)
            mask = mask_in_box(person.bbox, window, threshold, pasted)
            mask_prob = mask.astype(np.float32) * threshold
            yield scored_mask(person, mask_prob, window, (h, w), threshold, prob, sample["prior"], calibration)
            continue
        if person.source == SOURCE_BOX:
            window = grabcut_window(person.bbox, (h, w))
            if box_segmenter is None:
                mask = _grabcut_in_window(image_rgb, person.bbox, window, None, threshold)
            else:
                mask = box_mask(image_rgb, person.bbox, window, box_segmenter)
            score = person.detection_score if person.detection_score is not None else 0.0
            yield PersonMask(person, mask.astype(np.float32) * threshold, window, score, (h, w), threshold)
            continue
        sample, prob = next(sample_of), next(probs)
        if crf is not None and crf.enabled:
            prob = refine(sample["image"], prob, crf)
        window = crop_footprint(sample["affine"], prob.shape[0], (h, w))
        if grabcut:
            window = union_window(window, grabcut_window(person.bbox, (h, w)))
        evidence = person.segmentation if segmentation_weight > 0 else None
        fused = evidence is not None and evidence.segmentation is not None
        if fused:
            x0, y0, x1, y1 = evidence.region
            window = union_window(window, (y0, y1, x0, x1))
        window_prob = paste_back_window(prob, sample["affine"], window)
        if fused:
            window_prob = fuse_segmentation(window_prob, window, evidence, segmentation_weight)
        # a fused map is the mask's own probability; the prior's agreement is judged at crop size
        own = window_prob if fused else None
        result = scored_mask(person, window_prob, window, (h, w), threshold, prob, sample["prior"], calibration, own)
        if grabcut:
            mask = _grabcut_in_window(image_rgb, person.bbox, window, window_prob, threshold)
            window_prob = np.where(mask, np.maximum(window_prob, threshold), 0.0).astype(np.float32)
        result.window_prob = window_prob
        yield result


def scored_mask(
    person: Person,
    window_prob: np.ndarray,
    window: Window,
    image_hw: tuple[int, int],
    threshold: float,
    prob: np.ndarray,
    prior: np.ndarray,
    calibration: Calibration | None,
    own_prob: np.ndarray | None = None,
) -> PersonMask:
    """The PersonMask of a network-made mask, scored from its (S,S) crop probability and prior
    (own_prob: the probability the mask is cut from when it is not `prob`, a fused map)."""
    own = prob if own_prob is None else own_prob
    eiou, agreement = expected_iou(own, threshold), prior_agreement(prob, prior, threshold)
    quality = combine_quality(eiou, agreement, calibration)
    score, confidence = mask_score(person, quality), mask_confidence(person, own, threshold)
    return PersonMask(person, window_prob, window, score, image_hw, threshold, quality, eiou, agreement, confidence)


def mask_score(person: Person, quality: float) -> float:
    """What COCO AP ranks a mask by: its quality, times the detector's score for a detected person.

    Measured by bench/quality.py and bench/nightly_quality.py (bench/README.md "Quality"): mask AP
    ranked this way against the confidence (mask_confidence) it replaced.
    """
    return quality * person.detection_score if person.detection_score is not None else quality


def mask_confidence(person: Person, prob: np.ndarray, threshold: float) -> float:
    """The score before quality (issue 20's): the mean probability inside the mask (prob >=
    threshold; 0 for an empty mask), times the detector's score for a detected person.

    Measured on coco128train (val2017) with the nightly defaults: mask AP 0.199 (0.335) ranked by
    the mean probability alone, 0.228 (0.340) by the detector's score alone, 0.230 (0.346) by
    their product.
    """
    inside = prob >= threshold
    mean = float(prob[inside].mean()) if inside.any() else 0.0
    return mean * person.detection_score if person.detection_score is not None else mean


def fuse_segmentation(window_prob: np.ndarray, window: Window, evidence: PoseResult, weight: float) -> np.ndarray:
    """(1 - weight) x the network's probability + weight x the pose estimator's person segmentation
    (0 outside the region it saw), over `window` (y0, y1, x0, x1), which holds that region.

    window_prob: (y1-y0, x1-x0) float32. Measured on the posed people of coco128train, val2017 and
    OCHuman (detected, not given keypoints): network alone 0.694 / 0.725 / 0.572 mean IoU, BlazePose's
    segmentation alone 0.714 / 0.759 / 0.662, their mean 0.724 / 0.770 / 0.645 (README "Crowds").
    """
    wy0, _, wx0, _ = window
    x0, y0, x1, y1 = evidence.region
    seg = np.zeros_like(window_prob)
    seg[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0] = evidence.segmentation
    return ((1.0 - weight) * window_prob + weight * seg).astype(np.float32)


def grabcut_window(box_xywh: np.ndarray, image_hw: tuple[int, int]) -> Window:
    """The window models.baselines.grabcut_person works in (grabcut_region), empty for no box."""
    region = grabcut_region(box_xywh, image_hw, GRABCUT_MARGIN)
    if region is None:
        return (0, 0, 0, 0)
    x0, y0, x1, y1 = region
    return (y0, max(y0, y1), x0, max(x0, x1))


def box_mask(image_rgb: np.ndarray, box_xywh: np.ndarray, window: Window, segmenter: BoxSegmenter) -> np.ndarray:
    """A box person's mask: `segmenter` on the window's part of the photo (grabcut_window: the box
    and a margin around it, for context), >= 0.5, kept inside the box: (y1-y0, x1-x0) bool.

    Measured on the 93 people >= 40 px of the sample's val2017 and OCHuman, given their true box:
    MediaPipe's selfie segmenter 0.587 IoU at 11 ms, GrabCut from the box 0.420 at 96 ms
    (the box itself: 0.464).
    """
    y0, y1, x0, x1 = window
    return mask_in_box(box_xywh, window, 0.5, lambda: segmenter(np.ascontiguousarray(image_rgb[y0:y1, x0:x1])))


def mask_in_box(
    box_xywh: np.ndarray, window: Window, threshold: float, window_probability: Callable[[], np.ndarray]
) -> np.ndarray:
    """A box person's (y1-y0, x1-x0) bool mask in `window`: window_probability() >= threshold,
    kept inside the box. window_probability: the window's (y1-y0, x1-x0) probability, asked for
    only when the window and the box's part of it are not empty (a box segmenter's, or the
    network's from the box prior)."""
    y0, y1, x0, x1 = window
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    if y1 <= y0 or x1 <= x0:
        return mask
    bx0, by0, bx1, by1 = box_in_region(box_xywh, (x0, y0, x1, y1))
    if bx1 <= bx0 or by1 <= by0:
        return mask
    prob = window_probability()
    mask[by0:by1, bx0:bx1] = prob[by0:by1, bx0:bx1] >= threshold
    return mask


def _grabcut_in_window(
    image_rgb: np.ndarray, box_xywh: np.ndarray, window: Window, window_prob: np.ndarray | None, threshold: float
) -> np.ndarray:
    """grabcut_person on the window's part of the photo (the window holds its whole working region,
    so the result equals the full-photo call's there): (y1-y0, x1-x0) bool."""
    y0, y1, x0, x1 = window
    if y1 <= y0 or x1 <= x0:
        return np.zeros((y1 - y0, x1 - x0), bool)
    box = np.asarray(box_xywh[:4], np.float64) - np.array([x0, y0, 0, 0])
    region = np.ascontiguousarray(image_rgb[y0:y1, x0:x1])
    if window_prob is None:
        return grabcut_person(region, box, margin=GRABCUT_MARGIN)
    return grabcut_person(region, box, window_prob, margin=GRABCUT_MARGIN, threshold=threshold)


def segment_people(
    net: PoseUNet,
    image_rgb: np.ndarray,
    people: Sequence[Person],
    crop_cfg: CropConfig,
    threshold: float,
    crf: CRFParams | None = None,
    device: torch.device | str = "cpu",
    grabcut: bool = False,
    box_segmenter: BoxSegmenter | None = None,
    box_prior: BoxPriorConfig | None = None,
    segmentation_weight: float = 0.0,
    calibration: Calibration | None = None,
) -> list[PersonMask]:
    """Every person's PersonMask of one image, as a list (iter_person_masks, all people in one batch)."""
    batch = max(len(people), 1)
    masks = iter_person_masks(
        net,
        image_rgb,
        people,
        crop_cfg,
        threshold,
        crf,
        device,
        grabcut,
        batch,
        box_segmenter,
        None,
        box_prior,
        segmentation_weight,
        calibration,
    )
    return list(masks)


class LabelMap:
    """The instance label map, built one person at a time (memory: two (H,W) arrays).

    0 background, k + 1 for person k (uint8, uint16 past 255 people). A pixel belongs to the person
    with the highest probability among those whose probability reaches `threshold` (ties: the
    lower index).
    """

    def __init__(self, image_hw: tuple[int, int], people: int, threshold: float) -> None:
        self.best = np.full(image_hw, -np.inf, np.float32)
        self.labels = np.zeros(image_hw, np.uint8 if people <= MAX_UINT8_PEOPLE else np.uint16)
        self.threshold, self.count = threshold, 0

    def add(self, prob: np.ndarray, window: Window | None = None) -> None:
        """Person number `count` (the next one) with its probability: (H,W), or the (y1-y0, x1-x0)
        part of it inside `window` (0 elsewhere; a person then costs its window, not the photo)."""
        if window is None:
            best, labels = self.best, self.labels
        else:
            y0, y1, x0, x1 = window
            best, labels = self.best[y0:y1, x0:x1], self.labels[y0:y1, x0:x1]
        better = prob > best
        best[better] = prob[better]
        labels[better] = self.count + 1
        self.count += 1

    def result(self) -> np.ndarray:
        return np.where(self.best >= self.threshold, self.labels, 0).astype(self.labels.dtype)


def instance_labels(probs: Sequence[np.ndarray], threshold: float) -> np.ndarray:
    """Instance label map from per-person full-size probabilities (LabelMap over them).

    probs: sequence of (H,W) float. Returns (H,W) uint8 (uint16 past 255 people).
    """
    if not len(probs):
        raise ValueError("instance_labels: no probabilities")
    labels = LabelMap(np.asarray(probs[0]).shape, len(probs), threshold)
    for prob in probs:
        labels.add(np.asarray(prob, np.float32))
    return labels.result()
