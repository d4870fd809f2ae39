"""Built-in offline pose estimator: MediaPipe Pose (BlazePose) mapped to COCO-17 keypoints.

The model ships inside the mediapipe wheel, so nothing is downloaded. Only
`model_complexity=1` (pose_landmark_full.tflite) is in the wheel; 0 and 2 would try to download
their model and fail offline, so the complexity is fixed.

BlazePose finds one person per call: give it a person box (from the annotations or from
`models.people.detect.detect_people`) and it runs on that box, enlarged by a margin for context.

Keypoint arrays are (17, 3) float32 in COCO-17 order (nose, l_eye, r_eye, l_ear, r_ear,
l_shoulder, r_shoulder, l_elbow, r_elbow, l_wrist, r_wrist, l_hip, r_hip, l_knee, r_knee,
l_ankle, r_ankle): x, y in pixels of the full image, and visibility v in COCO's convention
(2 = visible, 1 = present but occluded/uncertain, 0 = missing, stored as (0, 0, 0)).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.sample import COCO17_NAMES, outside_image
from models.utils import ClosesOnExit

# BlazePose-33 landmark index of each COCO-17 keypoint. BlazePose's "left" is the person's left,
# as in COCO, so no left/right swap is needed.
BLAZEPOSE_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
NUM_COCO_KEYPOINTS = len(COCO17_NAMES)

# The only BlazePose landmark model shipped in the mediapipe wheel (see module docstring).
_OFFLINE_MODEL_COMPLEXITY = 1
# glog level 2 = errors only: hides mediapipe's INFO/WARNING chatter; set before mediapipe loads.
_QUIET_GLOG_LEVEL = "2"


def import_mediapipe_quietly() -> Any:
    """Import mediapipe with its native (glog/absl) INFO and WARNING logging turned down.

    An explicit GLOG_minloglevel in the environment is respected.
    """
    os.environ.setdefault("GLOG_minloglevel", _QUIET_GLOG_LEVEL)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _QUIET_GLOG_LEVEL)
    import mediapipe as mp

    with contextlib.suppress(Exception):  # absl is mediapipe's dependency; its absence is harmless
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    return mp


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code (TFLite's "Created XNNPACK delegate" line) writes to fd 2.

    Native code logs with absl before absl::InitializeLog, which GLOG_minloglevel does not reach.

    What was written is replayed to stderr if the block raises, so real errors are never lost.
    Used only around graph creation and the first inference, where that chatter happens.
    """
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real fd (e.g. captured stream): do nothing
        yield
        return
    sys.stderr.flush()
    saved_fd = os.dup(stderr_fd)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), stderr_fd)
        try:
            yield
        except BaseException:
            os.dup2(saved_fd, stderr_fd)
            captured.seek(0)
            os.write(stderr_fd, captured.read())
            raise
        finally:
            os.dup2(saved_fd, stderr_fd)
            os.close(saved_fd)


def check_image_rgb(image_rgb: np.ndarray) -> None:
    """Raise ValueError unless image_rgb is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        shape = getattr(image_rgb, "shape", type(image_rgb).__name__)
        raise ValueError(f"image must be an (H, W, 3) RGB array, got {shape}")
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image_rgb.dtype}")
    if image_rgb.shape[0] == 0 or image_rgb.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image_rgb.shape}")


def context_region(
    box_xywh: Sequence[float] | None, image_hw: tuple[int, int], margin: float
) -> tuple[int, int, int, int]:
    """The region the model runs on: the box enlarged by `margin` and clipped to the image.

    box_xywh: (x, y, w, h) in pixels, or None for the whole image.
    margin: each side moves out by margin * the box's size along that axis (0.25 -> 1.5x wider).
    Returns integer (x0, y0, x1, y1), x1/y1 exclusive, with x1 > x0 and y1 > y0.
    Raises ValueError for a box of non-positive size or one that does not overlap the image.
    """
    height, width = image_hw
    if box_xywh is None:
        return 0, 0, width, height
    if len(box_xywh) != 4:
        raise ValueError(f"box must be (x, y, w, h), got {box_xywh!r}")
    x, y, w, h = (float(v) for v in box_xywh)
    if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
        raise ValueError(f"box must have finite coordinates and positive size, got {box_xywh!r}")
    x0 = max(0, int(np.floor(x - margin * w)))
    y0 = max(0, int(np.floor(y - margin * h)))
    x1 = min(width, int(np.ceil(x + w + margin * w)))
    y1 = min(height, int(np.ceil(y + h + margin * h)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box_xywh!r} does not overlap the {width}x{height} image")
    return x0, y0, x1, y1


@dataclass
class PoseResult:
    """One estimate: keypoints (17, 3) float32 as `PoseEstimator.estimate` returns them; region
    (x0, y0, x1, y1) the part of the photo the model saw (context_region); segmentation
    (y1-y0, x1-x0) float32 in [0, 1], BlazePose's person probability over that region (the same
    model call as the pose), or None when the estimator was made without `segmentation`."""

    keypoints: np.ndarray
    region: tuple[int, int, int, int]
    segmentation: np.ndarray | None = None


class PoseEstimator(ClosesOnExit):
    """COCO-17 keypoints for one person per box, from MediaPipe Pose (offline, CPU).

    Not fork-safe and not thread-safe: create one per process (and use it from one thread).
    Usable as a context manager; `close()` frees the mediapipe graph. The graph is created lazily
    on the first `estimate` call.

    Args:
        vis_threshold: landmark visibility at or above which a keypoint gets v=2 (else v=1).
        box_margin: each side of a given box is extended by this fraction of the box size before
            the model sees it (BlazePose needs context around the person).
        min_detection_confidence: BlazePose person-detector score below which no person is found.
        min_tracking_confidence: landmark-model presence score below which no person is found
            (mediapipe's name; with static images it acts as a second confidence gate).
        segmentation: also return BlazePose's person segmentation (`estimate_pose`); it comes
            from the same model call (measured: no extra time).
    """

    def __init__(
        self,
        vis_threshold: float = 0.5,
        box_margin: float = 0.25,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        segmentation: bool = False,
    ) -> None:
        if not 0.0 <= vis_threshold <= 1.0:
            raise ValueError(f"vis_threshold must be in [0, 1], got {vis_threshold}")
        if box_margin < 0:
            raise ValueError(f"box_margin must be >= 0, got {box_margin}")
        if not 0.0 <= min_detection_confidence <= 1.0:
            raise ValueError(f"min_detection_confidence must be in [0, 1], got {min_detection_confidence}")
        if not 0.0 <= min_tracking_confidence <= 1.0:
            raise ValueError(f"min_tracking_confidence must be in [0, 1], got {min_tracking_confidence}")
        self.vis_threshold = vis_threshold
        self.box_margin = box_margin
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self.segmentation = segmentation
        self._pose: Any = None
        self._owner_pid: int | None = None
        # Until a first person is found, the landmark stage has not run and may still print its
        # one-time native warning, so those calls run inside quiet_native_stderr().
        self._landmarks_seen = False

    def _model(self) -> Any:
        if self._pose is not None and self._owner_pid != os.getpid():
            raise RuntimeError("PoseEstimator was created in another process; create one per process")
        if self._pose is None:
            mp = import_mediapipe_quietly()
            with quiet_native_stderr():
                self._pose = mp.solutions.pose.Pose(
                    static_image_mode=True,
                    model_complexity=_OFFLINE_MODEL_COMPLEXITY,
                    enable_segmentation=self.segmentation,
                    min_detection_confidence=self.min_detection_confidence,
                    min_tracking_confidence=self.min_tracking_confidence,
                )
                # The first inference starts the TFLite delegate, which prints to fd 2.
                self._pose.process(np.zeros((64, 64, 3), np.uint8))
            self._owner_pid = os.getpid()
        return self._pose

    def estimate(self, image_rgb: np.ndarray, box_xywh: Sequence[float] | None = None) -> np.ndarray | None:
        """Keypoints of the person in `box_xywh` (or the most salient person in the image).

        image_rgb: (H, W, 3) uint8 RGB.
        box_xywh: (x, y, w, h) person box in pixels, or None to search the whole image.
        Returns (17, 3) float32 [x, y, v] in full-image pixels (COCO-17 order, see module doc),
        or None when no person is found.
        """
        result = self.estimate_pose(image_rgb, box_xywh)
        return None if result is None else result.keypoints

    def estimate_pose(self, image_rgb: np.ndarray, box_xywh: Sequence[float] | None = None) -> PoseResult | None:
        """`estimate` with the region the model saw and, when made with `segmentation`, its person
        probability there (PoseResult); None when no person is found."""
        check_image_rgb(image_rgb)
        height, width = image_rgb.shape[:2]
        x0, y0, x1, y1 = context_region(box_xywh, (height, width), self.box_margin)
        crop = np.ascontiguousarray(image_rgb[y0:y1, x0:x1])
        model = self._model()
        if self._landmarks_seen:
            result = model.process(crop)
        else:
            with quiet_native_stderr():
                result = model.process(crop)
        if result.pose_landmarks is None:
            return None
        self._landmarks_seen = True
        landmarks = result.pose_landmarks.landmark
        crop_w, crop_h = x1 - x0, y1 - y0
        keypoints = np.zeros((NUM_COCO_KEYPOINTS, 3), np.float32)
        for k, blaze_index in enumerate(BLAZEPOSE_TO_COCO17):
            lm = landmarks[blaze_index]
            x = x0 + lm.x * crop_w
            y = y0 + lm.y * crop_h
            if outside_image(np.array([[x, y]]), height, width)[0]:
                continue  # outside the image: missing, stays (0, 0, 0)
            keypoints[k] = (x, y, 2.0 if lm.visibility >= self.vis_threshold else 1.0)
        if not keypoints[:, 2].any():
            return None
        mask = getattr(result, "segmentation_mask", None) if self.segmentation else None
        segmentation = None if mask is None else np.clip(np.asarray(mask, np.float32), 0.0, 1.0)
        return PoseResult(keypoints, (x0, y0, x1, y1), segmentation)

    def estimate_many(
        self, image_rgb: np.ndarray, boxes_xywh: Sequence[Sequence[float]] | np.ndarray
    ) -> list[np.ndarray | None]:
        """`estimate` for each box of one image: a list of (17, 3) float32 arrays or None."""
        return [self.estimate(image_rgb, box) for box in boxes_xywh]

    def close(self) -> None:
        """Free the mediapipe graph (a later `estimate` creates a new one)."""
        if self._pose is not None:
            if self._owner_pid == os.getpid():
                self._pose.close()
            self._pose = None
            self._owner_pid = None
            self._landmarks_seen = False
