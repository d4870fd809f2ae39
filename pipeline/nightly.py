"""What the nightly job needs inside one process: the detector and pose estimator of the current
``[detect]`` / ``[pose]`` settings, and the shipped model with its CRF parameters.

Plain code shared by MaskShard (pipeline/generate.py) and bench/nightly_quality.py, so the bench
measures exactly what ``posemask masks`` runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.classical import CRFParams
from models.evaluation import QUALITY_FILE, Calibration, read_calibration
from models.people import (
    PEERS,
    BoxSegmenter,
    OwnerCheck,
    Person,
    PersonDetector,
    PoseEstimator,
    estimate_people,
    make_peer,
)
from models.sample import BoxPriorConfig, CropConfig
from models.utils import SHIPPED_CRF, SHIPPED_MODEL, require
from pipeline import config
from pipeline.crf import read_crf_file

if TYPE_CHECKING:  # torch loads with the network (nightly_components), not with this module
    from models.network import PoseUNet

# What GenerateMasks can run: posemask itself, or a whole-photo peer to compare it with.
POSEMASK = "posemask"
METHODS: tuple[str, ...] = (POSEMASK, *sorted(PEERS))

# (pid, detector and pose settings) -> (PersonDetector, PoseEstimator): the shards of one worker
# share them (mediapipe graphs take ~1 s to build) and a forked worker builds its own.
_ESTIMATORS: dict[tuple[int, str], tuple[PersonDetector, PoseEstimator]] = {}


def estimators() -> tuple[PersonDetector, PoseEstimator]:
    """(PersonDetector, PoseEstimator) for the current settings, made once per process."""
    key = (os.getpid(), json.dumps(config.detect().settings(), sort_keys=True))
    if key not in _ESTIMATORS:
        _ESTIMATORS[key] = (config.detect().detector(), config.pose().nightly_estimator())
    return _ESTIMATORS[key]


_PEERS: dict[tuple[int, str], object] = {}


def peer_segmenter(name: str):  # noqa: ANN201 - a models.peers segmenter
    """The whole-photo peer `name`, made once per process."""
    key = (os.getpid(), name)
    if key not in _PEERS:
        _PEERS[key] = make_peer(name)
    return _PEERS[key]


def box_person_segmenter() -> BoxSegmenter | None:
    """How a box person is segmented in its box ([detect] box_mask): the selfie segmenter made once
    per process, or None for GrabCut from the box; unused with box_mask = network, where
    config.detect().box_prior() is given instead (models.people.iter_person_masks)."""
    return peer_segmenter("selfie").segment if config.detect().box_mask == "selfie" else None


def pose_estimate(estimator: PoseEstimator, segmentation_weight: float):  # noqa: ANN201 - an Estimate
    """What estimate_people calls per box: the pose with its segmentation when that is used."""
    return estimator.estimate_pose if segmentation_weight > 0 else estimator.estimate


def shipped_crf() -> CRFParams:
    """The dense-CRF parameters tuned for the shipped model."""
    return read_crf_file(require(SHIPPED_CRF))


@dataclass
class Nightly:
    """Everything that turns a photo without keypoints into masks (see bench/nightly_quality.py)."""

    net: PoseUNet
    model_path: str
    crop_cfg: CropConfig
    threshold: float
    crf: CRFParams
    min_keypoints: int
    box_fallback: bool
    box_segmenter: BoxSegmenter | None
    detector: PersonDetector
    estimator: PoseEstimator
    pose_check: OwnerCheck
    box_prior: BoxPriorConfig | None
    segmentation_weight: float
    detect_settings: dict  # config.detect().settings() when these components were made
    calibration: Calibration | None = None  # the model's quality.json (models/quality.py), if it has one

    def find_people(self, image_rgb: np.ndarray) -> list[Person]:
        """The people of a photo without keypoints, exactly as MaskShard finds them."""
        return estimate_people(
            image_rgb,
            self.detector.detect,
            pose_estimate(self.estimator, self.segmentation_weight),
            self.min_keypoints,
            self.box_fallback,
            self.pose_check,
        )

    def describe(self) -> dict:
        return {
            **self.detect_settings,
            "min_keypoints": self.min_keypoints,
            "threshold": self.threshold,
            "flip": self.net.inference_flip,
            "bf16": self.net.inference_bf16,
            "crf": self.crf.to_dict(),
        }


def nightly_components(model_path: str | None = None, crf: CRFParams | None = None) -> Nightly:
    """The shipped model (or `model_path`, with `crf` or the shipped CRF) and the configured estimators."""
    from models.network import load_model, native_bf16
    from pipeline.generate import GenerateMasks

    path = str(require(SHIPPED_MODEL)) if model_path is None else model_path
    net, _, _ = load_model(path, "cpu")
    detector, estimator = estimators()
    settings = GenerateMasks(input_dir=".", output_dir=".")  # its [GenerateMasks] values
    min_keypoints = settings.min_keypoints
    net.inference_flip = settings.flip
    net.inference_bf16 = settings.bf16 and native_bf16("cpu")
    return Nightly(
        net,
        path,
        config.crop().to_crop_config(),
        config.evaluation().threshold,
        crf or shipped_crf(),
        min_keypoints,
        config.detect().box_fallback,
        box_person_segmenter(),
        detector,
        estimator,
        config.pose().check(),
        config.detect().box_prior(),
        config.pose().segmentation_weight,
        config.detect().settings(),
        read_calibration(Path(path).parent / QUALITY_FILE),
    )
