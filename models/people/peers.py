"""Whole-photo peers: person segmenters that need no keypoints and see the whole photo.

They are what a user would otherwise run, so the nightly bench and ``posemask masks --method``
compare posemask against them on the same photos.

- "selfie": MediaPipe selfie segmentation (models.people.posefree.PoseFreeSegmenter) on the whole photo.
- "deeplab": DeepLab-v3 MobileNetV2 trained on PASCAL VOC (weights/deeplabv3_mnv2/, Apache-2.0,
  see its NOTICE), through onnxruntime (the optional extra ``peers``; cv2.dnn fails on its
  Upsample node). Input: the whole photo resized to 257x257 RGB, scaled to [-1, 1], NHWC; output:
  per-pixel scores of the 21 VOC classes. The person probability is the softmax of class 15,
  resized back to the photo.

Every peer maps (H, W, 3) uint8 RGB -> (H, W) float32 person probability in [0, 1].

    deeplab_baseline(image_rgb)   DeepLab-v3's person probability of a 256x256 person crop, one
                                  segmenter per process: the report's DeepLab comparison
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from models.people.pose import check_image_rgb
from models.people.posefree import PoseFreeSegmenter
from models.utils import DEEPLAB_MODEL, ClosesOnExit, require

DEEPLAB_INPUT_SIZE = 257
DEEPLAB_PERSON_CLASS = 15  # PASCAL VOC class index
_UINT8_HALF = 127.5


class DeepLabSegmenter(ClosesOnExit):
    """Person probability of a whole photo from DeepLab-v3 (VOC). Create one per process."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._session: Any = None
        self._pid = -1

    def _model(self) -> Any:
        if self._session is None or self._pid != os.getpid():
            try:
                import onnxruntime as ort
            except ImportError as err:
                raise RuntimeError("DeepLab needs onnxruntime (a posemask dependency): pip install posemask") from err
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            model = str(require(DEEPLAB_MODEL))
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            self._pid = os.getpid()
        return self._session

    def segment(self, image_rgb: np.ndarray) -> np.ndarray:
        """(H,W,3) uint8 RGB -> (H,W) float32 person probability."""
        check_image_rgb(image_rgb)
        session = self._model()
        size = DEEPLAB_INPUT_SIZE
        resized = cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        blob = (resized / _UINT8_HALF - 1.0)[None]
        scores = session.run(None, {session.get_inputs()[0].name: blob})[0][0]  # (257, 257, 21)
        scores = scores - scores.max(axis=-1, keepdims=True)
        exp = np.exp(scores)
        person = exp[..., DEEPLAB_PERSON_CLASS] / exp.sum(axis=-1)
        height, width = image_rgb.shape[:2]
        return np.clip(cv2.resize(person.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR), 0, 1)

    def close(self) -> None:
        self._session = None


# name -> builder of a segmenter (an object with .segment(image_rgb) -> (H,W) prob, and .close()).
PEERS: dict[str, Callable[[], PoseFreeSegmenter | DeepLabSegmenter]] = {
    "selfie": lambda: PoseFreeSegmenter(model_selection=0),
    "deeplab": DeepLabSegmenter,
}


def make_peer(name: str) -> PoseFreeSegmenter | DeepLabSegmenter:
    """A new segmenter of the peer `name` (one of PEERS)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose one of {sorted(PEERS)}")
    return PEERS[name]()


_DEEPLAB = DeepLabSegmenter()  # its session is made on first use in each process


def deeplab_baseline(image_rgb: np.ndarray) -> np.ndarray:
    """(S,S,3) uint8 RGB crop -> (S,S) float32 DeepLab-v3 person probability (no keypoints: every
    person in the crop counts)."""
    return _DEEPLAB.segment(image_rgb)
