"""luigi.Config sections shared by several tasks (values live in luigi.cfg).

Section names are the class names, e.g. ``[crop]``. Tasks list the sections that shape their
output in ``configs`` so that a changed value changes their output folder.
"""

from __future__ import annotations

import luigi

from models.detect import DEFAULT_METHOD, METHODS, DetectorConfig, PersonDetector
from models.keypoints import HeadConfig
from models.pose import PoseEstimator
from models.prior import PriorConfig
from models.sample import CropConfig
from pipeline.lib.annotations import PersonFilter, PoseCheck


class coco(luigi.Config):  # noqa: N801 - section names follow luigi.cfg
    """[coco] where the COCO 2017 copy lives and how it is laid out (official archive layout)."""

    root = luigi.Parameter(default="data/sample/coco")
    annotations = luigi.Parameter(default="annotations/person_keypoints_{split}2017.json")
    images = luigi.Parameter(default="{split}2017")


class ochuman(luigi.Config):  # noqa: N801
    """[ochuman] the OCHuman copy (COCO format, official file names); evaluation only."""

    root = luigi.Parameter(default="data/sample/ochuman")
    annotations = luigi.Parameter(default="ochuman_coco_format_{split}_range_0.00_1.00.json")
    images = luigi.Parameter(default="images")


class voc(luigi.Config):  # noqa: N801
    """[voc] the folder that holds VOCdevkit/VOC2012."""

    root = luigi.Parameter(default="data/sample/voc")


class persons(luigi.Config):  # noqa: N801
    """[persons] which person instances are kept."""

    min_keypoints = luigi.IntParameter(default=8)
    min_area = luigi.FloatParameter(default=4096.0)
    single_person_only = luigi.BoolParameter(default=False)

    def filter(self) -> PersonFilter:
        return PersonFilter(self.min_keypoints, self.min_area, self.single_person_only)


class voc_pose(luigi.Config):  # noqa: N801
    """[voc_pose] when an estimated VOC pose is trusted."""

    min_joints = luigi.IntParameter(default=8)
    min_on_mask = luigi.FloatParameter(default=0.7)
    mask_dilation_px = luigi.IntParameter(default=7)
    box_margin = luigi.FloatParameter(default=0.25)
    visibility_threshold = luigi.FloatParameter(default=0.5)

    def check(self) -> PoseCheck:
        return PoseCheck(self.min_joints, self.min_on_mask, self.mask_dilation_px)


class crop(luigi.Config):  # noqa: N801
    """[crop] crop size, margin, pose map and prior shape, head estimate."""

    size = luigi.IntParameter(default=256)
    margin = luigi.FloatParameter(default=0.15)
    posemap_sigma = luigi.FloatParameter(default=3.0)
    per_joint_posemap = luigi.BoolParameter(default=False)
    head_face_size_factor = luigi.FloatParameter(default=0.8)
    head_shoulder_width_factor = luigi.FloatParameter(default=0.5)
    head_neck_distance_factor = luigi.FloatParameter(default=0.7)
    prior_arm_sigma = luigi.FloatParameter(default=7.0)
    prior_leg_sigma = luigi.FloatParameter(default=9.0)
    prior_torso_sigma = luigi.FloatParameter(default=6.0)
    prior_head_radius_factor = luigi.FloatParameter(default=0.35)
    prior_min_head_sigma = luigi.FloatParameter(default=6.0)
    prior_floor = luigi.FloatParameter(default=0.02)
    prior_reach = luigi.FloatParameter(default=4.0)

    def to_crop_config(self) -> CropConfig:
        head = HeadConfig(self.head_face_size_factor, self.head_shoulder_width_factor, self.head_neck_distance_factor)
        prior = PriorConfig(
            self.prior_arm_sigma, self.prior_leg_sigma, self.prior_torso_sigma, self.prior_head_radius_factor,
            self.prior_min_head_sigma, self.prior_floor, self.prior_reach,
        )  # fmt: skip
        return CropConfig(self.size, self.margin, self.posemap_sigma, self.per_joint_posemap, head, prior)


class cache(luigi.Config):  # noqa: N801
    """[cache] how BuildCache works (not what it writes: these do not change the output)."""

    processes = luigi.IntParameter(default=2, significant=False)
    window = luigi.IntParameter(default=64, significant=False)


class baselines(luigi.Config):  # noqa: N801
    """[baselines] keyword arguments of each classical method (models/baselines.py)."""

    prior = luigi.DictParameter(default={"threshold": 0.5})
    grabcut = luigi.DictParameter(default={"fg_thickness": 7, "bg_thickness": 60, "iterations": 5})
    slic_grabcut = luigi.DictParameter(default={"region_size": 16, "ruler": 10.0, "bg_thickness": 60,
                                                "iterations": 5})  # fmt: skip
    posefree = luigi.DictParameter(default={"model_selection": 0})


class evaluation(luigi.Config):  # noqa: N801
    """[evaluation] how predictions are scored."""

    threshold = luigi.FloatParameter(default=0.5, description="probability at which a pixel is the person")
    boundary_px = luigi.IntParameter(default=2, description="tolerance of the boundary F-score")


class pose(luigi.Config):  # noqa: N801
    """[pose] the built-in pose estimator (models.pose.PoseEstimator) for photos without keypoints."""

    vis_threshold = luigi.FloatParameter(default=0.5)
    box_margin = luigi.FloatParameter(default=0.25)
    min_detection_confidence = luigi.FloatParameter(default=0.5)
    min_tracking_confidence = luigi.FloatParameter(default=0.5)

    def params(self) -> dict[str, float]:
        return {"vis_threshold": self.vis_threshold, "box_margin": self.box_margin,
                "min_detection_confidence": self.min_detection_confidence,
                "min_tracking_confidence": self.min_tracking_confidence}  # fmt: skip

    def estimator(self) -> PoseEstimator:
        return PoseEstimator(**self.params())


class detect(luigi.Config):  # noqa: N801
    """[detect] the person detector run before the pose estimator (models.detect)."""

    method = luigi.ChoiceParameter(choices=list(METHODS), default=DEFAULT_METHOD)
    yolox_input_size = luigi.IntParameter(default=416)
    yolox_min_score = luigi.FloatParameter(default=0.3)
    yolox_nms_iou = luigi.FloatParameter(default=0.45)
    min_box_height = luigi.FloatParameter(default=24.0)
    box_fallback = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                       description="a detected person without a usable pose gets GrabCut's "
                                                   "mask from its box")  # fmt: skip

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(yolox_input_size=self.yolox_input_size, yolox_min_score=self.yolox_min_score,
                              yolox_nms_iou=self.yolox_nms_iou, min_box_height=self.min_box_height,
                              pose_params=pose().params())  # fmt: skip

    def detector(self) -> PersonDetector:
        return PersonDetector(self.method, self.detector_config())

    def settings(self) -> dict:
        """Everything that changes which people are found for a photo without keypoints."""
        return {"detect": self.to_str_params(only_significant=True), "pose": pose().params()}
