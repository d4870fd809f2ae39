"""What finds and segments people in a night's process, made once per process for the current settings.

    POSEMASK / METHODS         what GenerateMasks can run: posemask itself, or a whole-photo peer
    estimators()               (PersonDetector, PoseEstimator) of the current [detect] / [pose] settings
    peer_segmenter(name)       the whole-photo peer `name` (models.people.peers)
    box_person_segmenter()     how a box person is segmented in its box ([detect] box_mask)
    pose_estimate(estimator, segmentation_weight)   what estimate_people calls per box
    shipped_crf()              the dense-CRF parameters tuned for the shipped model

Shared by the tasks (pipeline/generate.py, pipeline/track.py) and by pipeline/nightly.py, which
assembles them with the shipped model for bench/nightly_quality.py. Imports no task of its own
level, so that every task can import it.
"""

from __future__ import annotations

import json
import os

from models.classical import CRFParams
from models.people import PEERS, BoxSegmenter, PersonDetector, PoseEstimator, make_peer
from models.utils import SHIPPED_CRF, require
from pipeline import config
from pipeline.crf import read_crf_file

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


def peer_segmenter(name: str):  # noqa: ANN201 - a models.people.peers segmenter
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
