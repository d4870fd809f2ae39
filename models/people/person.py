"""One person of a photo and its mask: the data every stage of models.people passes on, how a
mask is scored, and the instance label map the masks merge into.

    Person                     keypoints (17, 3), bbox (4,) xywh, source, detector score, pose reason
    PersonMask                 a person's probability in the window of the photo it can touch; .prob, .mask
    SOURCE_KEYPOINTS, SOURCE_BOX   where a mask comes from: the pose-guided network, or the box alone
    BoxSegmenter               (h,w,3) uint8 RGB region -> (h,w) float person probability
    scored_mask(person, window_prob, window, image_hw, threshold, prob, prior, calibration, own_prob)
                               the PersonMask of a network-made mask, with its quality and score
    mask_kind(person)          "posed", "given", "box" or "box_pose_lost": what the quality head reads
    mask_score(person, quality), mask_confidence(person, prob, threshold)   what COCO AP ranks by, and
                               the score before quality
    decay_overlaps(masks)      one photo's masks: each quality (and score) x (1 - its IoU with a
                               better mask), models.evaluation.quality.photo_overlap_decay
    LabelMap(image_hw, people, threshold)   the instance label map, one person at a time
    instance_labels(probs, threshold) -> (H,W)   LabelMap over full-size probabilities
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.evaluation import QualityModel, combine_quality, expected_iou, photo_overlap_decay, prior_agreement
from models.people.ownership import POSE_BORROWED, POSE_DUPLICATE
from models.people.pose import PoseResult
from models.sample import Window, encode_rle

MAX_UINT8_PEOPLE = 255
# Where a person's mask comes from: the pose-guided network, or GrabCut from the box alone.
SOURCE_KEYPOINTS = "keypoints"
SOURCE_BOX = "box"
# A box person whose pose another person's box took: most often the same person twice (mask_kind)
POSE_LOST_REASONS = (POSE_BORROWED, POSE_DUPLICATE)
# (h,w,3) uint8 RGB region -> (h,w) float person probability: how a box person is segmented
BoxSegmenter = Callable[[np.ndarray], np.ndarray]


@dataclass
class Person:
    """One person to segment: keypoints (17,3) COCO x, y, v in image pixels; bbox (4,) xywh;
    annotation_id: the person's id in a keypoints file, when it came from one; source:
    SOURCE_KEYPOINTS (the network) or SOURCE_BOX (no usable pose: a mask from the box);
    detection_score: the detector's score when the person was detected; pose_reason: why a detected
    person has the pose it has, or none (models.people.ownership.REASONS; "" for given keypoints);
    segmentation: the estimator's result with its person segmentation (models.people.pose.PoseResult),
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
    quality: the mask's expected IoU with the truth (models.evaluation.quality.mask_quality of the network's
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


def mask_kind(person: Person) -> str:
    """How the person's mask is made, as the quality head tells them apart (models.evaluation.MASK_KINDS):
    "posed" by the network from a detected person's pose, "given" from keypoints the user gave (no
    detection), "box_pose_lost" from the box of a person whose pose another person took, "box" from
    the box of a person with no pose."""
    if person.source == SOURCE_KEYPOINTS:
        return "posed" if person.detection_score is not None else "given"
    return "box_pose_lost" if person.pose_reason in POSE_LOST_REASONS else "box"


def scored_mask(
    person: Person,
    window_prob: np.ndarray,
    window: Window,
    image_hw: tuple[int, int],
    threshold: float,
    prob: np.ndarray,
    prior: np.ndarray,
    calibration: QualityModel | None,
    own_prob: np.ndarray | None = None,
) -> PersonMask:
    """The PersonMask of a network-made mask, scored from its (S,S) crop probability and prior
    (own_prob: the probability the mask is cut from when it is not `prob`, a fused map)."""
    own = prob if own_prob is None else own_prob
    eiou, agreement = expected_iou(own, threshold), prior_agreement(prob, prior, threshold)
    area_share = float((window_prob >= threshold).sum()) / float(image_hw[0] * image_hw[1])
    quality = combine_quality(eiou, agreement, calibration, mask_kind(person), area_share)
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


def decay_overlaps(masks: Sequence[PersonMask]) -> None:
    """One photo's masks, in place: each quality becomes photo_overlap_decay's (x (1 - its IoU with
    a better mask of the photo), on the masks' RLEs as the nightly records are) and its score
    mask_score's of it. Masks without a quality are left."""
    if sum(m.quality is not None for m in masks) < 2:
        return
    decayed = photo_overlap_decay([m.quality for m in masks], [encode_rle(m.mask) for m in masks])
    for m, quality in zip(masks, decayed, strict=True):
        if quality is not None:
            m.quality, m.score = quality, mask_score(m.person, quality)


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
