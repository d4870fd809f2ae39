"""Several people in one photo: segment each through its own crop, in batches, into PersonMasks.

Pure numpy/torch (no luigi; torch is imported when a network runs). Each person gets the same
treatment as a cached sample (models.sample.person_sample -> PoseUNet -> optional dense CRF at crop
size -> paste back), so a mask made here for a person equals the one PredictMasks + Evaluate make
for that person. The people come from models.people.find (a keypoints file, or the detector and
the pose estimator); their masks merge into labels through models.people.person.LabelMap.

A detected person without a usable pose is a "box" person (SOURCE_BOX): its mask comes from the
network with a box prior and no pose map (box_prior, box_person_sample), from a box segmenter run
in the detector's box (models.people.boxmask.box_mask), or from GrabCut initialised with the box
(models.classical.grabcut_person), and its `source` says so in every output. A posed person's
probability can be fused with the pose estimator's own person segmentation (segmentation_weight,
fuse_segmentation). With `grabcut`, the network's masks are refined by GrabCut, seeded by the
network's probability. A mask's score is mask_score (its quality, models/evaluation/quality.py).

    iter_person_masks(net, image_rgb, people, crop_cfg, threshold, ...) -> Iterator[PersonMask]
        every person's mask, `batch_size` people at a time (memory bounded by the batch)
    segment_people(net, image_rgb, people, crop_cfg, threshold, ...) -> [PersonMask]   all in one batch
    person_samples(image_rgb, people, crop_cfg, box_prior)   the network's inputs of the people it segments
    crop_probabilities(net, samples, device, prior_eps) -> (B,S,S)   the network's probabilities of samples
    by_network(person, box_prior) -> bool    whether the network segments this person
    fuse_segmentation(window_prob, window, evidence, weight)   the network's and the estimator's mean
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from models.classical import CRFParams, refine
from models.evaluation import QualityModel
from models.people.boxmask import _grabcut_in_window, box_mask, grabcut_window, mask_in_box, near_edge
from models.people.person import (
    SOURCE_BOX,
    SOURCE_KEYPOINTS,
    BoxSegmenter,
    Person,
    PersonMask,
    decay_overlaps,
    scored_mask,
)
from models.people.pose import PoseResult
from models.sample import (
    BoxPriorConfig,
    CropConfig,
    Window,
    box_person_sample,
    crop_footprint,
    paste_back_window,
    person_sample,
    union_window,
)

if TYPE_CHECKING:  # torch loads when a network runs, not when the nightly tasks are imported
    import torch

    from models.network import PoseUNet


def crop_probabilities(
    net: PoseUNet, samples: Sequence[dict[str, np.ndarray]], device: torch.device | str, prior_eps: float = 1e-4
) -> np.ndarray:
    """Network probabilities of person_sample dicts (one batch) -> (B,S,S) float32.

    The inputs are normalised exactly as models.network.dataset.CacheDataset does for training.
    """
    import torch

    from models.network import UINT8_MAX, normalize_image, prior_to_probability

    with torch.inference_mode():
        images = torch.stack([normalize_image(s["image"]) for s in samples])
        posemaps = []
        for s in samples:
            pose = torch.from_numpy(s["posemap"]).float().div_(UINT8_MAX)
            posemaps.append(pose.unsqueeze(0) if pose.ndim == 2 else pose)
        priors = torch.stack([prior_to_probability(s["prior"], prior_eps) for s in samples])
        device = torch.device(device)
        # channels-last, as models.network.iter_predictions: x1.4 on this CPU, the same probabilities
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
    calibration: QualityModel | None = None,
) -> Iterator[PersonMask]:
    """The PersonMask of each person of one image, in order, made `batch_size` people at a time.

    Memory is bounded by `batch_size` crops and one person's window at a time, whatever the
    number of people (a caller that keeps every PersonMask keeps them all: see segment_people).
    image_rgb: (H,W,3) uint8. Each person is cropped (person_sample, no mask), predicted, refined
    by the dense CRF at crop size when `crf` is enabled (as RefineCRF does), pasted back and, with
    `grabcut`, refined by GrabCut in its box seeded by that probability (models.classical.baselines.grabcut_person;
    the probability is then kept inside GrabCut's mask, raised to `threshold`, and 0 outside).
    samples: person_samples(image_rgb, people, crop_cfg, box_prior), when already made (the
    nightly shard makes them in its read-ahead thread); by default each batch makes its own.
    SOURCE_BOX people (no usable pose) get, with `box_prior`, the network's mask from the box prior
    (box_person_sample; the dense CRF as for the posed) kept inside their box; else the mask of
    `box_segmenter` run on their box's region (box_mask; None: GrabCut's mask from their box).
    Their probability is `threshold` inside that mask (so a pose-guided neighbour wins the pixels
    both claim). With `segmentation_weight` > 0, a posed person whose pose estimator made a person
    segmentation (Person.segmentation) gets the weighted mean of the two (fuse_segmentation).
    calibration: the model's quality calibration (models.evaluation.quality.read_calibration; None: the raw
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
    calibration: QualityModel | None = None,
) -> Iterator[PersonMask]:
    """iter_person_masks of one batch: the network's probabilities of its people in one call, then
    each person's PersonMask in order (_box_segmented, _box_prior_mask or _posed_mask)."""
    if samples is None:
        samples = person_samples(image_rgb, people, crop_cfg, box_prior)
    probs = iter(crop_probabilities(net, samples, device) if samples else [])
    sample_of = iter(samples)
    for person in people:
        if person.source == SOURCE_BOX and box_prior is None:
            yield _box_segmented(image_rgb, person, threshold, box_segmenter)
            continue
        sample, prob = next(sample_of), next(probs)
        if crf is not None and crf.enabled:
            prob = refine(sample["image"], prob, crf)
        if person.source == SOURCE_BOX:
            yield _box_prior_mask(image_rgb, person, sample, prob, threshold, box_prior, calibration)
        else:
            yield _posed_mask(image_rgb, person, sample, prob, threshold, grabcut, segmentation_weight, calibration)


def _box_segmented(
    image_rgb: np.ndarray, person: Person, threshold: float, box_segmenter: BoxSegmenter | None
) -> PersonMask:
    """A box person's mask without the network: `box_segmenter` in its window (box_mask), or GrabCut
    from its box; its probability is `threshold` inside the mask, its score the detector's."""
    h, w = image_rgb.shape[:2]
    window = grabcut_window(person.bbox, (h, w))
    if box_segmenter is None:
        mask = _grabcut_in_window(image_rgb, person.bbox, window, None, threshold)
    else:
        mask = box_mask(image_rgb, person.bbox, window, box_segmenter)
    score = person.detection_score if person.detection_score is not None else 0.0
    return PersonMask(person, mask.astype(np.float32) * threshold, window, score, (h, w), threshold)


def _box_prior_mask(
    image_rgb: np.ndarray,
    person: Person,
    sample: dict[str, np.ndarray],
    prob: np.ndarray,
    threshold: float,
    box_prior: BoxPriorConfig,
    calibration: QualityModel | None,
) -> PersonMask:
    """A box person's mask from the network's (S,S) probability with a box prior, kept inside its
    box, refined by GrabCut seeded by that probability when the box is near the photo's edge
    (box_prior.edge_grabcut); its probability is `threshold` inside the mask, scored as every
    network-made mask."""
    image_hw = image_rgb.shape[:2]
    window = grabcut_window(person.bbox, image_hw)
    pasted = functools.partial(paste_back_window, prob, sample["affine"], window)
    if near_edge(person.bbox, image_hw, box_prior.edge_grabcut):
        mask = _grabcut_in_window(image_rgb, person.bbox, window, pasted(), threshold)
    else:
        mask = mask_in_box(person.bbox, window, threshold, pasted)
    mask_prob = mask.astype(np.float32) * threshold
    return scored_mask(person, mask_prob, window, image_hw, threshold, prob, sample["prior"], calibration)


def _posed_mask(
    image_rgb: np.ndarray,
    person: Person,
    sample: dict[str, np.ndarray],
    prob: np.ndarray,
    threshold: float,
    grabcut: bool,
    segmentation_weight: float,
    calibration: QualityModel | None,
) -> PersonMask:
    """A posed person's mask: the network's (S,S) probability pasted back into its window, fused with
    the estimator's segmentation (segmentation_weight > 0) and refined by GrabCut (`grabcut`)."""
    h, w = image_rgb.shape[:2]
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
    return result


def fuse_segmentation(window_prob: np.ndarray, window: Window, evidence: PoseResult, weight: float) -> np.ndarray:
    """(1 - weight) x the network's probability + weight x the pose estimator's person segmentation
    (0 outside the region it saw), over `window` (y0, y1, x0, x1), which holds that region.

    window_prob: (y1-y0, x1-x0) float32. Measured on the posed people of coco128train, val2017 and
    OCHuman (detected, not given keypoints): network alone 0.694 / 0.725 / 0.572 mean IoU, BlazePose's
    segmentation alone 0.714 / 0.759 / 0.662, their mean 0.724 / 0.770 / 0.645 (docs/generate.md "Crowds").
    """
    wy0, _, wx0, _ = window
    x0, y0, x1, y1 = evidence.region
    seg = np.zeros_like(window_prob)
    seg[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0] = evidence.segmentation
    return ((1.0 - weight) * window_prob + weight * seg).astype(np.float32)


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
    calibration: QualityModel | None = None,
) -> list[PersonMask]:
    """Every person's PersonMask of one image, as a list (iter_person_masks, all people in one batch),
    each quality decayed by its overlap with better masks of the image (decay_overlaps)."""
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
    result = list(masks)
    decay_overlaps(result)
    return result
