"""How good is a mask, without its truth: a quality score per mask, the IoU it is expected to have.

    mask_quality(prob, prior, threshold, calibration) -> float   a mask's quality, in [0, 1]
    combine_quality(eiou, agreement, calibration)   the raw score eiou x agreement ** PRIOR_EXPONENT,
                                                    calibrated
    expected_iou(prob, threshold) -> float    the soft IoU of the probability map with its own mask
    prior_agreement(prob, prior, threshold)   IoU of the mask with the pose prior's region
    Calibration(raw, iou)                     a monotone map from expected_iou to the measured IoU
    fit_calibration(raw, true_iou, bins)      pool-adjacent-violators on `bins` quantile bins
    Calibration.apply(raw) -> quality         in [0, 1], rising with raw
    QualityHead(bias, raw_weight, kind_offsets, area_weight)   the shipped quality: a linear head
                                              over the raw score, the mask's kind and its size
    QualityModel                              Calibration | QualityHead: what a quality.json holds
    fit_quality_head(raw, kinds, area_shares, true_iou)   least squares on a validation set
    MASK_KINDS                                "posed" (detected), "given" (keypoints given), "box"
                                              (no pose), "box_pose_lost" (its pose went to another)
    read_calibration(path) / write_calibration(path, calibration)   quality.json beside a model
    model_calibration(model_path)             the calibration beside a model file, or None
    overlap_decay(qualities, ious) -> list    each mask's quality x (1 - its largest IoU with a
                                              better mask of its photo)
    better_overlaps(qualities, ious) -> list  the better mask each mask overlaps most, and the IoU
    photo_overlap_decay(qualities, rles)      overlap_decay from the masks' COCO RLEs (rle_ious)
    image_overlap_decay(image_ids, qualities, rles)   the same over many images' masks, image by image

`expected_iou` treats each pixel as a coin with the network's probability p: with the mask
M = {p >= threshold}, the expected intersection with the truth is sum_M p and the expected union
|M| + sum_{not M} p, and their ratio is the IoU the mask has if the network's probabilities are
calibrated. A confident, sharp map scores near 1; a map of many pixels near the threshold (a
blob, a person the network is unsure of) scores low, whatever its size. The calibration is
fitted on a validation set where the true IoU is known, so that the score reads as an IoU.

The expected IoU trusts the network: a mask it is sure of but that covers the wrong body (the
person in front of the one whose skeleton it was given, a neighbour's arm) scores high. The pose
prior knows where this person's limbs are: the mask's IoU with the prior's region falls when the
mask leaves them or takes another body along. The raw score multiplies the two, the prior's part
damped by PRIOR_EXPONENT (chosen on the validation set, coco128train, bench/README.md "Quality").

Two things the probability map does not show make a mask worse than its map says: how the person
was segmented (a box person, with no pose of its own, is masked from the box: coco128train's
true IoU 0.53 against 0.76 for posed people at about the same raw score) and its size (a small
person's mask loses more to its border). The shipped quality is a linear head over the raw score,
an offset per mask kind and the log of the mask's share of the photo (QualityHead), fitted by
least squares on the validation set's nightly masks (fit_quality_head; bench/README.md "Mask
quality scores": Spearman's rho on coco128train 0.50 -> 0.65 in 5-fold cross-validation).

Neither part sees the other people of the photo. Given the skeleton of a person behind another,
the network masks the one in front: a sure mask, close to the prior, and the same pixels as the
front person's own mask. Two masks of one photo cannot both be right about the same pixels, so a
mask keeps only the share of its quality that a better mask of the photo does not overlap
(overlap_decay: SOLOv2's Matrix NMS with its linear decay, on quality).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

# Weight of the prior's agreement in the raw score, chosen by Spearman's rho between the raw score
# and the true IoU on the validation set (coco128train, its 50 people: 0.632 without the prior,
# 0.667 at 0.25, 0.648 at 0.33, 0.622 at 0.5).
PRIOR_EXPONENT = 0.25
# A model's calibration lives beside its weights (the shipped one: models/weights/posemask_unet/).
QUALITY_FILE = "quality.json"
# The rule that turns the parts into a photo's qualities: part of a night's model identity, so that
# masks scored by an earlier rule are scored again (2: with the overlap decay; 3: the mask's kind
# and size in the quality head).
QUALITY_RULE = 3
# How a mask was made, as the quality head tells them apart: by the network from the pose of a
# detected person, from keypoints the user gave (no detection), from the box with no pose (none
# found, too few joints), or from the box of a person whose pose another person's box took
# (models.people.ownership: pose_borrowed, pose_duplicate).
MASK_KINDS = ("posed", "given", "box", "box_pose_lost")
# The kinds the size term applies to: people the detector found, on whom the head is fitted. With
# given keypoints it measured worse (coco/val rho 0.715 without it, 0.701 with it; OCHuman 0.828,
# 0.807): a small detected person's pose is estimated from few pixels, a given one's is not.
SIZED_KINDS = ("posed", "box", "box_pose_lost")
# A mask's share of the photo is floored here before its log (an empty mask).
MIN_AREA_SHARE = 1e-6


def prior_agreement(prob: np.ndarray, prior: np.ndarray, threshold: float = 0.5) -> float:
    """IoU of the mask prob >= threshold with the pose prior's own region prior >= 0.5 (both (S,S);
    prior in [0, 1], or uint8 scaled by 255); 0 when both are empty. A mask that leaves the
    skeleton's limbs, or spills far past them (a neighbour taken along), agrees little."""
    prior = np.asarray(prior)
    prior_region = prior >= (128 if prior.dtype == np.uint8 else 0.5)
    mask = np.asarray(prob) >= threshold
    union = int((mask | prior_region).sum())
    return float((mask & prior_region).sum()) / union if union else 0.0


def combine_quality(
    eiou: float,
    agreement: float,
    calibration: QualityModel | None = None,
    kind: str = "posed",
    area_share: float | None = None,
) -> float:
    """The quality from its parts: eiou x agreement ** PRIOR_EXPONENT (the raw score), through
    `calibration` when one is given (a QualityHead also reads the mask's kind, MASK_KINDS, and its
    share of the photo's pixels, area_share; None: the size term left out)."""
    raw = eiou * agreement**PRIOR_EXPONENT
    if isinstance(calibration, QualityHead):
        return calibration.apply(raw, kind, area_share)
    return float(calibration.apply(raw)) if calibration is not None else raw


def mask_quality(
    prob: np.ndarray,
    prior: np.ndarray,
    threshold: float = 0.5,
    calibration: QualityModel | None = None,
    kind: str = "posed",
    area_share: float | None = None,
) -> float:
    """A mask's quality in [0, 1] from its (S,S) probability and prior: combine_quality of
    expected_iou and prior_agreement (None calibration: the raw score)."""
    eiou, agreement = expected_iou(prob, threshold), prior_agreement(prob, prior, threshold)
    return combine_quality(eiou, agreement, calibration, kind, area_share)


def expected_iou(prob: np.ndarray, threshold: float = 0.5) -> float:
    """Soft IoU of a probability map (any shape, values in [0, 1]) with its mask prob >= threshold;
    0 for an empty mask."""
    p = np.asarray(prob, dtype=np.float64)
    inside = p >= threshold
    size = int(inside.sum())
    if size == 0:
        return 0.0
    intersection = float(p[inside].sum())
    union = size + float(p[~inside].sum())
    return intersection / union


TIE_BREAK = 1e-3  # the raw score's share of a calibrated quality (Calibration.apply)


@dataclass(frozen=True)
class Calibration:
    """Piecewise-linear map from raw scores in [0, 1] to quality: knots `raw` (increasing) and their
    values `iou` (non-decreasing, in [0, 1]); flat beyond the ends, and blended with TIE_BREAK x the
    raw score, so that the map rises strictly: the quality keeps the raw score's order (COCO AP
    ranks by it; a flat stretch would tie masks the raw score tells apart)."""

    raw: tuple[float, ...]
    iou: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.raw) != len(self.iou) or not self.raw:
            raise ValueError("Calibration needs as many raw knots as iou values, at least one")
        if any(b < a for a, b in zip(self.raw, self.raw[1:], strict=False)):
            raise ValueError("Calibration.raw must be increasing")
        if any(b < a for a, b in zip(self.iou, self.iou[1:], strict=False)) or not all(
            0.0 <= v <= 1.0 for v in self.iou
        ):
            raise ValueError("Calibration.iou must be non-decreasing and in [0, 1]")

    def apply(self, raw: float | np.ndarray) -> float | np.ndarray:
        """Quality of raw score(s)."""
        out = (1.0 - TIE_BREAK) * np.interp(raw, self.raw, self.iou) + TIE_BREAK * np.clip(raw, 0.0, 1.0)
        return float(out) if np.ndim(out) == 0 else out

    def to_dict(self) -> dict:
        return {"raw": list(self.raw), "iou": list(self.iou)}

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(tuple(float(v) for v in data["raw"]), tuple(float(v) for v in data["iou"]))


IDENTITY = Calibration((0.0, 1.0), (0.0, 1.0))


def _pool_adjacent_violators(values: list[float], weights: list[float]) -> list[float]:
    """The non-decreasing sequence closest to `values` in weighted least squares."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values, weights, strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return [b[0] for b in blocks for _ in range(int(b[2]))]


def fit_calibration(raw: np.ndarray, true_iou: np.ndarray, bins: int = 10) -> Calibration:
    """Monotone calibration from pairs (raw score, true IoU): the pairs sorted by raw score are cut
    into `bins` bins of equal count; each bin's mean raw score is a knot, and its mean true IoU,
    made non-decreasing by pool-adjacent-violators, the knot's value."""
    raw, true_iou = np.asarray(raw, np.float64), np.asarray(true_iou, np.float64)
    if raw.shape != true_iou.shape or raw.size < 2:
        raise ValueError("fit_calibration needs at least two (raw, true IoU) pairs of the same shape")
    order = np.argsort(raw, kind="stable")
    chunks = [c for c in np.array_split(order, min(bins, raw.size)) if c.size]
    knots = [float(raw[c].mean()) for c in chunks]
    means = [float(true_iou[c].mean()) for c in chunks]
    values = _pool_adjacent_violators(means, [float(c.size) for c in chunks])
    # equal raw means (ties) would not be increasing knots: keep the first of each
    kept_raw, kept_iou = [], []
    for k, v in zip(knots, values, strict=True):
        if kept_raw and k <= kept_raw[-1]:
            kept_iou[-1] = max(kept_iou[-1], v)
            continue
        kept_raw.append(k)
        kept_iou.append(min(max(v, 0.0), 1.0))
    return Calibration(tuple(kept_raw), tuple(kept_iou))


@dataclass(frozen=True)
class QualityHead:
    """quality = clip(bias + raw_weight x raw + kind_offsets[kind] + area_weight x ln(area share), 0, 1).

    raw: the raw score (combine_quality's); kind: one of MASK_KINDS (offset 0 for a kind not in
    kind_offsets: "posed", the reference); area share: the mask's pixels over the
    photo's, floored at MIN_AREA_SHARE, for the SIZED_KINDS only (None: the size term left out,
    for a caller that has no full-size mask)."""

    bias: float
    raw_weight: float
    kind_offsets: tuple[tuple[str, float], ...]
    area_weight: float

    def __post_init__(self) -> None:
        if self.raw_weight <= 0:
            raise ValueError("QualityHead.raw_weight must be positive: the quality rises with the raw score")
        unknown = {k for k, _ in self.kind_offsets} - set(MASK_KINDS)
        if unknown:
            raise ValueError(f"QualityHead: unknown mask kinds {sorted(unknown)} (known: {MASK_KINDS})")

    def apply(self, raw: float, kind: str = "posed", area_share: float | None = None) -> float:
        """The quality of one mask, in [0, 1]."""
        value = self.bias + self.raw_weight * float(raw) + dict(self.kind_offsets).get(kind, 0.0)
        if area_share is not None and kind in SIZED_KINDS:
            value += self.area_weight * float(np.log(max(float(area_share), MIN_AREA_SHARE)))
        return float(min(max(value, 0.0), 1.0))

    def to_dict(self) -> dict:
        head = {"bias": self.bias, "raw_weight": self.raw_weight, "area_weight": self.area_weight}
        return {"head": {**head, "kind_offsets": dict(self.kind_offsets)}}

    @classmethod
    def from_dict(cls, data: dict) -> QualityHead:
        head = data["head"]
        offsets = tuple((str(k), float(v)) for k, v in head["kind_offsets"].items())
        return cls(float(head["bias"]), float(head["raw_weight"]), offsets, float(head["area_weight"]))


# What a quality.json holds: the shipped head, or a model's calibration of the raw score alone.
QualityModel = Calibration | QualityHead


def fit_quality_head(
    raw: np.ndarray, kinds: Sequence[str], area_shares: np.ndarray, true_iou: np.ndarray
) -> QualityHead:
    """The QualityHead closest to the true IoU in least squares, from one row per mask (raw score,
    kind, share of the photo, true IoU; at least 5 rows; detected people only). A kind with no row
    keeps offset 0; "given" gets the size term of the rows' median share as its offset."""
    raw, true_iou = np.asarray(raw, np.float64), np.asarray(true_iou, np.float64)
    shares = np.log(np.maximum(np.asarray(area_shares, np.float64), MIN_AREA_SHARE))
    if not len(raw) == len(kinds) == len(shares) == len(true_iou) or len(raw) < 5:
        raise ValueError("fit_quality_head needs at least 5 masks, each with a raw score, kind, share and IoU")
    seen = set(kinds)
    if "given" in seen:
        raise ValueError("fit_quality_head: fit on detected people (the nightly path), not on given keypoints")
    present = [k for k in MASK_KINDS if k not in ("posed", "given") and k in seen]  # "posed": the reference
    columns = [np.ones_like(raw), raw, *[np.array([kk == k for kk in kinds], np.float64) for k in present], shares]
    weights, *_ = np.linalg.lstsq(np.stack(columns, axis=1), true_iou, rcond=None)
    offsets = [(k, float(w)) for k, w in zip(present, weights[2:-1], strict=True)]
    # a given person: the posed line at the fitted masks' median size (no size term: SIZED_KINDS)
    offsets.append(("given", float(weights[-1]) * float(np.median(shares))))
    return QualityHead(float(weights[0]), float(weights[1]), tuple(offsets), float(weights[-1]))


def read_calibration(path: Path) -> QualityModel | None:
    """The quality model of a quality.json: a QualityHead ({"head": {...}, ...}) or a Calibration
    ({"raw": [...], "iou": [...], ...}), or None when there is no such file (the raw score is then
    the quality)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return QualityHead.from_dict(data) if "head" in data else Calibration.from_dict(data)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a quality calibration ({err})") from err


def model_calibration(model_path: Path | str) -> QualityModel | None:
    """The calibration of the model at `model_path`: the QUALITY_FILE beside it (None: none there)."""
    return read_calibration(Path(model_path).parent / QUALITY_FILE)


def write_calibration(path: Path, calibration: QualityModel, **facts: object) -> None:
    """quality.json: the calibration's knots or the head's weights, and `facts` (what it was fitted
    on), written atomically."""
    from models.utils import atomic_path

    if isinstance(calibration, QualityHead):
        body = calibration.to_dict()
    else:
        body = {k: [round(v, 4) for v in values] for k, values in calibration.to_dict().items()}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({**body, **facts}) + "\n", encoding="utf-8")


def better_overlaps(qualities: Sequence[float | None], ious: np.ndarray) -> list[tuple[int, float] | None]:
    """For each mask of a photo, the better mask it overlaps most and their IoU, (index, IoU), or
    None (no quality, or no better mask meets it). "Better": the higher quality, ties the earlier.

    qualities: one per mask (None: a mask without a quality, never anyone's better mask); ious:
    (N, N) the masks' pairwise IoU."""
    ious = np.asarray(ious, np.float64)
    if ious.shape != (len(qualities), len(qualities)):
        raise ValueError(f"ious must be ({len(qualities)}, {len(qualities)}), got {ious.shape}")
    scored = [k for k, q in enumerate(qualities) if q is not None]
    order = sorted(scored, key=lambda k: (-float(qualities[k]), k))  # best first
    partners: list[tuple[int, float] | None] = [None] * len(qualities)
    for rank, k in enumerate(order):
        better = order[:rank]
        if better:
            j = max(better, key=lambda b: (float(ious[k, b]), -b))
            overlap = min(max(float(ious[k, j]), 0.0), 1.0)
            partners[k] = (j, overlap) if overlap > 0 else None
    return partners


def overlap_decay(qualities: Sequence[float | None], ious: np.ndarray) -> list[float | None]:
    """Each mask's quality times (1 - its largest IoU with a better mask of the same photo)
    (better_overlaps).

    qualities: one per mask of a photo (None: a mask without a quality, which neither decays nor
    is decayed); ious: (N, N) the masks' pairwise IoU. "Better" is the higher quality (ties: the
    earlier mask), so the best mask keeps its quality and a mask that repeats it loses all of
    its own. Measured with ground-truth keypoints (bench/README.md "Quality"): OCHuman rho 0.600 ->
    0.828, mask AP 0.221 -> 0.245; coco/val rho 0.689 -> 0.709, AP 0.517 -> 0.519.
    """
    partners = better_overlaps(qualities, ious)
    return [
        None if q is None else float(q) * (1.0 - (partner[1] if partner else 0.0))
        for q, partner in zip(qualities, partners, strict=True)
    ]


def rle_ious(rles: Sequence[dict]) -> np.ndarray:
    """(N, N) float64 pairwise IoU of one photo's masks given as COCO RLEs (pycocotools)."""
    if not rles:
        return np.zeros((0, 0))
    return np.asarray(mask_utils.iou(list(rles), list(rles), [0] * len(rles)), np.float64).reshape(len(rles), len(rles))


def photo_overlap_decay(qualities: Sequence[float | None], rles: Sequence[dict]) -> list[float | None]:
    """overlap_decay of one photo's masks, given as COCO RLEs (pycocotools; one per quality)."""
    if len(rles) != len(qualities):
        raise ValueError(f"{len(rles)} masks for {len(qualities)} qualities")
    if sum(q is not None for q in qualities) < 2:
        return list(qualities)
    return overlap_decay(qualities, rle_ious(rles))


def image_overlap_decay(
    image_ids: Sequence[int], qualities: Sequence[float | None], rles: Sequence[dict]
) -> list[float | None]:
    """photo_overlap_decay of masks from many images (one image id, quality and COCO RLE each),
    each image's masks among themselves; in the given order."""
    if not len(image_ids) == len(qualities) == len(rles):
        raise ValueError(f"{len(image_ids)} image ids, {len(qualities)} qualities, {len(rles)} masks")
    by_image: dict[int, list[int]] = {}
    for k, image_id in enumerate(image_ids):
        by_image.setdefault(image_id, []).append(k)
    decayed = list(qualities)
    for members in by_image.values():
        mine = photo_overlap_decay([qualities[k] for k in members], [rles[k] for k in members])
        for k, quality in zip(members, mine, strict=True):
            decayed[k] = quality
    return decayed
