"""A pose-free person segmenter: MediaPipe's selfie segmentation (model shipped in its wheel).

The baseline that ignores keypoints: it sees only the crop's pixels. It shows what the pose
guidance adds, most of all where people overlap (OCHuman).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from models.people.pose import import_mediapipe_quietly, quiet_native_stderr
from models.utils import ClosesOnExit


class PoseFreeSegmenter(ClosesOnExit):
    """Person probability for a whole image, without keypoints. Create one per process.

    model_selection: 0 = the general 256x256 model, 1 = the landscape model.
    """

    def __init__(self, model_selection: int = 0) -> None:
        self.model_selection = model_selection
        self._model: Any = None
        self._pid = -1

    def close(self) -> None:
        if self._model is not None and self._pid == os.getpid():
            self._model.close()
        self._model = None

    def segment(self, image_rgb: np.ndarray) -> np.ndarray:
        """(H,W,3) uint8 RGB -> (H,W) float32 person probability in [0,1]."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"expected (H,W,3) uint8 RGB, got {image_rgb.shape} {image_rgb.dtype}")
        if self._model is None or self._pid != os.getpid():  # a forked child builds its own graph
            mp = import_mediapipe_quietly()
            with quiet_native_stderr():
                self._model = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=self.model_selection)
            self._pid = os.getpid()
        result = self._model.process(np.ascontiguousarray(image_rgb))
        mask = result.segmentation_mask
        if mask is None:
            return np.zeros(image_rgb.shape[:2], np.float32)
        return np.clip(mask.astype(np.float32), 0.0, 1.0)


_PER_PROCESS: dict[int, PoseFreeSegmenter] = {}


def posefree_baseline(image_rgb: np.ndarray, model_selection: int = 0) -> np.ndarray:
    """Pool-friendly wrapper: one segmenter per (process, model), reused across calls."""
    key = os.getpid() * 10 + model_selection
    if key not in _PER_PROCESS:
        _PER_PROCESS[key] = PoseFreeSegmenter(model_selection)
    return _PER_PROCESS[key].segment(image_rgb)
