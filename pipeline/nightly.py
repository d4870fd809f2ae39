"""What the nightly job needs inside one process, assembled: the shipped model (or another) with its
CRF parameters, the detector and pose estimator of the current ``[detect]`` / ``[pose]`` settings,
and the ``[GenerateMasks]`` values that shape a mask.

    nightly_components(model_path=None, crf=None) -> Nightly   everything MaskShard uses, in one object
    Nightly.find_people(image) / Nightly.describe()           people of a photo; the settings, for a report

Plain code for bench/nightly_quality.py (and tests), so the bench measures exactly what
``posemask masks`` runs. The parts themselves (estimators, peers, the shipped CRF, METHODS) are
pipeline/estimators.py's, which the tasks import; this module sits above GenerateMasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.classical import CRFParams
from models.evaluation import QualityModel, model_calibration
from models.people import BoxSegmenter, OwnerCheck, Person, PersonDetector, PoseEstimator, estimate_people
from models.sample import BoxPriorConfig, CropConfig
from models.utils import SHIPPED_MODEL, require
from pipeline import config
from pipeline.estimators import box_person_segmenter, estimators, pose_estimate, shipped_crf
from pipeline.generate import GenerateMasks

if TYPE_CHECKING:  # torch loads with the network (nightly_components), not with this module
    from models.network import PoseUNet


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
    # the model's quality.json (models/evaluation/quality.py), if it has one
    calibration: QualityModel | None = None

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
        model_calibration(path),
    )
