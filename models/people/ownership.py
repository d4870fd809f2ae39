"""Whose pose is it? Each pose estimated for a detector box is checked against that box.

MediaPipe Pose is a one-person estimator: run on a box whose margin holds a neighbour, it often
returns the neighbour's skeleton, and that box's person then gets a mask drawn on someone else.
The rules here keep every pose with the person it was estimated for (numpy; the estimator is
passed in):

pose_fit(keypoints, box, tolerance) -> PoseFit
    how well a (17, 3) pose fits its (4,) xywh box: the share of its present joints inside the box
    (grown by `tolerance` x its size on every side) and the IoU of the joints' padded extent
    (models.people.detect.keypoint_box) with the box.
OwnerCheck
    the thresholds (``[pose]`` check_owner, owner_min_inside, owner_min_extent_iou,
    owner_tolerance, duplicate_oks, isolate_grow; chosen by measurement, docs/generate.md "Crowds") and
    `fits(fit)`.
isolate_box(image, box, grow, fill) -> image
    the photo with everything outside the box (grown by `grow` x its size) painted `fill`, so that
    the estimator, which still sees its usual margin, cannot reach a neighbour.
object_keypoint_similarity(a, b, area) -> float
    COCO's OKS between two (17, 3) poses of one person of `area` px^2 (the per-joint sigmas of
    COCO-17).
duplicate_pairs(poses, boxes, min_oks) -> list[(i, j)]
    the pairs of boxes whose poses are the same skeleton (OKS >= min_oks).
assign_poses(image, boxes, estimate, check, fill) -> list[PoseAssignment]
    one pose (or None) and one reason per box, the whole rule:
      1. estimate on the photo; a pose that fits its box is kept ("pose");
      2. one that does not (a neighbour's) is estimated again on isolate_box(...): kept when it
         fits now ("pose_reassigned"), else the person has no pose ("pose_borrowed");
      3. two boxes that end with the same skeleton: the box it fits best keeps it; the other is
         estimated again isolated and keeps that pose when it fits and is no duplicate
         ("pose_reassigned"), else has no pose ("pose_duplicate");
      4. no pose found at all: "no_pose" (models.people adds "pose_few_joints": too few joints).
    A box without a pose becomes a box person (models.people), never a mask on another skeleton.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.people.boxes import box_iou, keypoint_box
from models.people.detect import DetectorConfig
from models.people.pose import PoseResult

# COCO-17 per-keypoint OKS sigmas (cocoeval.py): nose, eyes, ears, shoulders, elbows, wrists,
# hips, knees, ankles.
COCO17_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)
# The padded joint extent compared with the box: models.people.detect's padding of landmark boxes.
EXTENT_PAD, EXTENT_PAD_TOP = DetectorConfig.landmark_pad, DetectorConfig.landmark_pad_top

# Why a box has the pose it has (or none): counted in the manifest and summary.json.
POSE_OWN = "pose"
POSE_REASSIGNED = "pose_reassigned"
POSE_BORROWED = "pose_borrowed"
POSE_DUPLICATE = "pose_duplicate"
NO_POSE = "no_pose"
FEW_JOINTS = "pose_few_joints"  # a pose of its own, with fewer joints than the network needs (models.people)
REASONS: tuple[str, ...] = (POSE_OWN, POSE_REASSIGNED, POSE_BORROWED, POSE_DUPLICATE, NO_POSE, FEW_JOINTS)

# (image (H,W,3) uint8, box (4,) xywh) -> (17,3) pose in image pixels (or a models.people.pose.PoseResult
# holding it, with the estimator's segmentation), or None
Estimate = Callable[[np.ndarray, Sequence[float]], "np.ndarray | PoseResult | None"]


@dataclass(frozen=True)
class PoseFit:
    """inside: share of the present joints inside the grown box, in [0, 1];
    extent_iou: IoU of the joints' padded extent with the box, in [0, 1]."""

    inside: float
    extent_iou: float


@dataclass(frozen=True)
class OwnerCheck:
    """When a pose is its box's person's.

    enabled: False keeps every pose as the estimator returned it (the behaviour before the check).
    min_inside: share of present joints that must lie inside the box grown by `tolerance`.
    min_extent_iou: IoU the joints' padded extent must reach with the box.
    tolerance: the box grows by this fraction of its size on each side (joints of a person cut by
        a tight box, a raised hand).
    duplicate_oks: two poses at or above this OKS are one skeleton.
    isolate_grow: the isolated photo keeps the box grown by this fraction of its size.
    """

    enabled: bool = True
    min_inside: float = 0.6
    min_extent_iou: float = 0.2
    tolerance: float = 0.1
    duplicate_oks: float = 0.5
    isolate_grow: float = 0.1

    def __post_init__(self) -> None:
        for name in ("min_inside", "min_extent_iou", "duplicate_oks", "tolerance", "isolate_grow"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")

    def fits(self, fit: PoseFit) -> bool:
        return fit.inside >= self.min_inside and fit.extent_iou >= self.min_extent_iou


@dataclass
class PoseAssignment:
    """One box's outcome: keypoints (17,3) or None, the reason (REASONS), the pose's fit, and the
    estimator's whole result when it returned a PoseResult (its segmentation; None otherwise)."""

    keypoints: np.ndarray | None
    reason: str
    fit: PoseFit | None = None
    result: PoseResult | None = None


def _split(found: np.ndarray | PoseResult | None) -> tuple[np.ndarray | None, PoseResult | None]:
    """An estimate's (keypoints, PoseResult or None)."""
    if isinstance(found, PoseResult):
        return found.keypoints, found
    return found, None


def pose_fit(keypoints: np.ndarray, box_xywh: Sequence[float], tolerance: float = 0.1) -> PoseFit:
    """How well a (17, 3) [x, y, v] pose fits a (4,) xywh box (see PoseFit). No joint: (0, 0)."""
    kps = np.asarray(keypoints, np.float32).reshape(-1, 3)
    present = kps[kps[:, 2] > 0, :2]
    if len(present) == 0:
        return PoseFit(0.0, 0.0)
    x, y, w, h = (float(v) for v in box_xywh[:4])
    inside = (
        (present[:, 0] >= x - tolerance * w)
        & (present[:, 0] <= x + w + tolerance * w)
        & (present[:, 1] >= y - tolerance * h)
        & (present[:, 1] <= y + h + tolerance * h)
    )
    extent = keypoint_box(kps, EXTENT_PAD, EXTENT_PAD_TOP)
    extent_iou = float(box_iou(np.array([x, y, w, h], np.float32), extent[None])[0]) if extent is not None else 0.0
    return PoseFit(float(inside.mean()), extent_iou)


def isolate_box(image_rgb: np.ndarray, box_xywh: Sequence[float], grow: float, fill: np.ndarray) -> np.ndarray:
    """(H,W,3) copy of the photo, `fill` (3,) uint8 everywhere but the box grown by `grow` x its size."""
    height, width = image_rgb.shape[:2]
    x, y, w, h = (float(v) for v in box_xywh[:4])
    x0, y0 = max(0, int(np.floor(x - grow * w))), max(0, int(np.floor(y - grow * h)))
    x1, y1 = min(width, int(np.ceil(x + w + grow * w))), min(height, int(np.ceil(y + h + grow * h)))
    out = np.empty_like(image_rgb)
    out[:] = np.asarray(fill, np.uint8)
    out[y0:y1, x0:x1] = image_rgb[y0:y1, x0:x1]
    return out


def object_keypoint_similarity(a: np.ndarray, b: np.ndarray, area: float) -> float:
    """COCO OKS of pose `b` against pose `a` (both (17, 3)), over the joints present in both.

    area: the person's area in px^2 (the scale s^2 of COCO's formula). 0 when no joint is shared.
    """
    a, b = np.asarray(a, np.float64).reshape(-1, 3), np.asarray(b, np.float64).reshape(-1, 3)
    shared = (a[:, 2] > 0) & (b[:, 2] > 0)
    if not shared.any() or area <= 0:
        return 0.0
    d2 = ((a[:, :2] - b[:, :2]) ** 2).sum(axis=1)
    variance = (2 * COCO17_SIGMAS) ** 2
    return float(np.exp(-d2[shared] / (2 * area * variance[shared] + np.spacing(1))).mean())


def duplicate_pairs(poses: Sequence[np.ndarray | None], boxes: np.ndarray, min_oks: float) -> list[tuple[int, int]]:
    """(i, j), i < j, of the boxes whose poses are one skeleton: OKS >= min_oks, at the smaller box's scale."""
    pairs = []
    for i in range(len(poses)):
        for j in range(i + 1, len(poses)):
            if poses[i] is None or poses[j] is None:
                continue
            area = min(_area(boxes[i]), _area(boxes[j]))
            if object_keypoint_similarity(poses[i], poses[j], area) >= min_oks:
                pairs.append((i, j))
    return pairs


def assign_poses(
    image_rgb: np.ndarray, boxes: np.ndarray, estimate: Estimate, check: OwnerCheck, fill: np.ndarray | None = None
) -> list[PoseAssignment]:
    """One PoseAssignment per row of `boxes` ((K, >=4) xywh...), by the rule of the module docstring.

    estimate: (image, box) -> (17, 3) pose or None. fill: (3,) uint8 colour of the isolated photo's
    hidden part (default: the photo's mean colour). With check.enabled False every pose is kept as
    estimated (reason "pose", or "no_pose").
    """
    if len(boxes) == 0:
        return []
    boxes = np.asarray(boxes, np.float32).reshape(len(boxes), -1)
    out: list[PoseAssignment] = []
    isolated_done = [False] * len(boxes)
    if fill is None and check.enabled:
        fill = image_rgb.reshape(-1, 3).mean(axis=0).astype(np.uint8)

    def isolated(i: int) -> PoseAssignment | None:
        """Box i's pose on the isolated photo, when it fits (else None)."""
        isolated_done[i] = True
        alone = isolate_box(image_rgb, boxes[i, :4], check.isolate_grow, fill)
        kps, result = _split(estimate(alone, boxes[i, :4]))
        if kps is None:
            return None
        fit = pose_fit(kps, boxes[i, :4], check.tolerance)
        return PoseAssignment(kps, POSE_REASSIGNED, fit, result) if check.fits(fit) else None

    for i, box in enumerate(boxes):
        kps, result = _split(estimate(image_rgb, box[:4]))
        if kps is None:
            out.append(PoseAssignment(None, NO_POSE))
            continue
        if not check.enabled:
            out.append(PoseAssignment(kps, POSE_OWN, None, result))
            continue
        fit = pose_fit(kps, box[:4], check.tolerance)
        if check.fits(fit):
            out.append(PoseAssignment(kps, POSE_OWN, fit, result))
        else:
            out.append(isolated(i) or PoseAssignment(None, POSE_BORROWED, fit))
    if not check.enabled:
        return out
    # one skeleton, one person: the box it fits best keeps it (ties: the higher-scored box, first)
    for _ in range(len(boxes)):  # each pass settles one pair; a bounded loop, not a fixpoint hunt
        pairs = duplicate_pairs([a.keypoints for a in out], boxes, check.duplicate_oks)
        if not pairs:
            break
        i, j = pairs[0]
        loser = j if _fit_key(out[i].fit) >= _fit_key(out[j].fit) else i
        again = None if isolated_done[loser] else isolated(loser)
        others = [a.keypoints for k, a in enumerate(out) if k != loser]
        if again is not None and not any(
            p is not None and object_keypoint_similarity(p, again.keypoints, _area(boxes[loser])) >= check.duplicate_oks
            for p in others
        ):
            out[loser] = again
        else:
            out[loser] = PoseAssignment(None, POSE_DUPLICATE, out[loser].fit)
    return out


def _fit_key(fit: PoseFit | None) -> tuple[float, float]:
    return (0.0, 0.0) if fit is None else (fit.inside, fit.extent_iou)


def _area(box: np.ndarray) -> float:
    return float(box[2] * box[3])
