"""Every luigi.Config section, and the rule that gives each setting one default.

Section names are the class names, e.g. ``[crop]``. Tasks list the sections that shape their
output in ``configs`` so that a changed value changes their output folder. A setting that feeds a
dataclass field or a function argument takes that field's default (`from_field`, `from_argument`):
the code holds each default once, and pipeline/defaults.cfg holds only what the demo overrides
(tests/pipeline/test_settings.py checks both).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, fields

import luigi

from models.people import (
    DEFAULT_METHOD,
    FLOW_METHODS,
    METHODS,
    YOLOX_RUNTIMES,
    DetectorConfig,
    OwnerCheck,
    PersonDetector,
    PoseEstimator,
    TrackConfig,
)
from models.sample import BoxPriorConfig, CropConfig, HeadConfig, PriorConfig
from pipeline.lib.annotations import PersonFilter, PoseCheck


def with_range(param: luigi.Parameter, low: float | None = None, high: float | None = None) -> luigi.Parameter:
    """Mark `param` with its allowed range [low, high] (None: open); pipeline.settings.check_settings
    refuses a configured value outside it, naming the setting and the range."""
    param.allowed_range = (low, high)
    return param


def parameter_for(
    default: object, low: float | None = None, high: float | None = None, **kwargs: object
) -> luigi.Parameter:
    """The luigi parameter type that holds `default` (True booleans parse explicitly: --x false),
    with its allowed range when `low` or `high` is given."""
    param = _parameter_for(default, **kwargs)
    return with_range(param, low, high) if low is not None or high is not None else param


def _parameter_for(default: object, **kwargs: object) -> luigi.Parameter:
    if "choices" in kwargs:
        return luigi.ChoiceParameter(default=default, **kwargs)
    if isinstance(default, bool):
        parsing = luigi.BoolParameter.EXPLICIT_PARSING if default else luigi.BoolParameter.IMPLICIT_PARSING
        return luigi.BoolParameter(default=default, parsing=parsing, **kwargs)
    if isinstance(default, int):
        return luigi.IntParameter(default=default, **kwargs)
    if isinstance(default, float):
        return luigi.FloatParameter(default=default, **kwargs)
    if isinstance(default, dict):
        return luigi.DictParameter(default=default, **kwargs)
    if isinstance(default, list | tuple):
        return luigi.ListParameter(default=default, **kwargs)
    return luigi.Parameter(default=default, **kwargs)


def from_field(dataclass_type: type, name: str, **kwargs: object) -> luigi.Parameter:
    """A parameter whose default is the dataclass field `name`'s."""
    field = next((f for f in fields(dataclass_type) if f.name == name), None)
    if field is None:
        raise AttributeError(f"{dataclass_type.__name__} has no field {name!r}")
    default = field.default if field.default is not MISSING else field.default_factory()
    return parameter_for(default, **kwargs)


def from_argument(function: Callable, name: str, **kwargs: object) -> luigi.Parameter:
    """A parameter whose default is the keyword argument `name`'s of `function` (or a class's __init__)."""
    default = inspect.signature(function).parameters[name].default
    if default is inspect.Parameter.empty:
        raise AttributeError(f"{function.__name__}({name}) has no default")
    return parameter_for(default, **kwargs)


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
    """[persons] which person instances are kept (lib/annotations.PersonFilter)."""

    min_keypoints = from_field(PersonFilter, "min_keypoints")
    min_area = from_field(PersonFilter, "min_area")
    single_person_only = from_field(PersonFilter, "single_person_only")

    def filter(self) -> PersonFilter:
        return PersonFilter(self.min_keypoints, self.min_area, self.single_person_only)


class voc_pose(luigi.Config):  # noqa: N801
    """[voc_pose] when an estimated VOC pose is trusted (the estimator itself is [pose]'s)."""

    min_joints = from_field(PoseCheck, "min_joints")
    min_on_mask = from_field(PoseCheck, "min_on_mask")
    mask_dilation_px = from_field(PoseCheck, "mask_dilation_px")

    def check(self) -> PoseCheck:
        return PoseCheck(self.min_joints, self.min_on_mask, self.mask_dilation_px)


class crop(luigi.Config):  # noqa: N801
    """[crop] crop size, margin, pose map and prior shape, head estimate (models.sample.CropConfig and
    its HeadConfig / PriorConfig; head_* and prior_* name their fields)."""

    size = from_field(CropConfig, "size", low=32, high=2048)
    margin = from_field(CropConfig, "margin", low=0)
    posemap_sigma = from_field(CropConfig, "posemap_sigma", low=0)
    per_joint_posemap = from_field(CropConfig, "per_joint_posemap")
    head_face_size_factor = from_field(HeadConfig, "face_size_factor")
    head_shoulder_width_factor = from_field(HeadConfig, "shoulder_width_factor")
    head_neck_distance_factor = from_field(HeadConfig, "neck_distance_factor")
    prior_arm_sigma = from_field(PriorConfig, "arm_sigma")
    prior_leg_sigma = from_field(PriorConfig, "leg_sigma")
    prior_torso_sigma = from_field(PriorConfig, "torso_sigma")
    prior_head_radius_factor = from_field(PriorConfig, "head_radius_factor")
    prior_min_head_sigma = from_field(PriorConfig, "min_head_sigma")
    prior_floor = from_field(PriorConfig, "floor")
    prior_reach = from_field(PriorConfig, "reach")

    def to_crop_config(self) -> CropConfig:
        head = HeadConfig(self.head_face_size_factor, self.head_shoulder_width_factor, self.head_neck_distance_factor)
        prior = PriorConfig(
            self.prior_arm_sigma,
            self.prior_leg_sigma,
            self.prior_torso_sigma,
            self.prior_head_radius_factor,
            self.prior_min_head_sigma,
            self.prior_floor,
            self.prior_reach,
        )
        return CropConfig(self.size, self.margin, self.posemap_sigma, self.per_joint_posemap, head, prior)


class cache(luigi.Config):  # noqa: N801
    """[cache] how BuildCache works (not what it writes: these do not change the output)."""

    processes = luigi.IntParameter(default=2, significant=False)
    window = luigi.IntParameter(default=64, significant=False)


class baselines(luigi.Config):  # noqa: N801
    """[baselines] keyword arguments of each classical method (models/classical/baselines.py)."""

    prior = luigi.DictParameter(default={"threshold": 0.5})
    grabcut = luigi.DictParameter(default={"fg_thickness": 7, "bg_thickness": 60, "iterations": 5})
    slic_grabcut = luigi.DictParameter(default={"region_size": 16, "ruler": 10.0, "bg_thickness": 60, "iterations": 5})
    posefree = luigi.DictParameter(default={"model_selection": 0})
    # keyword arguments over models/classical/graphcut.py's defaults (e.g. {"colour_space": "rgb"})
    gmm_graphcut = luigi.DictParameter(default={})
    slic_gmm_graphcut = luigi.DictParameter(default={})
    coopcut = luigi.DictParameter(default={})  # over models/classical/coopcut.py's (e.g. {"theta": 0.1})
    deeplab = luigi.DictParameter(default={})  # DeepLab-v3 on the crop takes no settings


class resources(luigi.Config):  # noqa: N801
    """[resources] how much of the machine one process takes (not what it computes)."""

    torch_threads = with_range(
        luigi.IntParameter(
            default=1,
            significant=False,
            description="torch CPU threads per process (0 = torch's default, one per core). Parallelism "
            "belongs to processes (shards, pools, luigi --workers): threads of several processes fight",
        ),
        0,
    )
    read_ahead = with_range(
        luigi.IntParameter(
            default=1,
            significant=False,
            description="photos a mask shard reads and finds the people of (detector, pose) in a second thread "
            "while the network works on the current one, so the two overlap on two cores (0 = one at a time). "
            "An integer: luigi's scheduler also reads [resources] as its resource counts",
        ),
        0,
    )


def use_torch_threads() -> None:
    """Apply [resources] torch_threads to this process (call where a task starts using torch)."""
    import torch

    threads = resources().torch_threads
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class evaluation(luigi.Config):  # noqa: N801
    """[evaluation] how predictions are scored."""

    threshold = with_range(
        luigi.FloatParameter(default=0.5, description="probability at which a pixel is the person"), 0, 1
    )
    boundary_px = with_range(luigi.IntParameter(default=2, description="tolerance of the boundary F-score"), 0)


class pose(luigi.Config):  # noqa: N801
    """[pose] the built-in pose estimator (models.people.pose.PoseEstimator): nightly photos and VOC alike."""

    vis_threshold = from_argument(PoseEstimator, "vis_threshold", low=0, high=1)
    box_margin = from_argument(PoseEstimator, "box_margin", low=0)
    min_detection_confidence = from_argument(PoseEstimator, "min_detection_confidence", low=0, high=1)
    min_tracking_confidence = from_argument(PoseEstimator, "min_tracking_confidence", low=0, high=1)
    # whose pose is it (models.people.ownership.OwnerCheck): detected people only, never given keypoints
    check_owner = from_field(OwnerCheck, "enabled", description="check each estimated pose against its box")
    owner_min_inside = from_field(OwnerCheck, "min_inside", description="share of joints inside the box", low=0, high=1)
    owner_min_extent_iou = from_field(
        OwnerCheck, "min_extent_iou", description="IoU of the joints' extent and box", low=0, high=1
    )
    owner_tolerance = from_field(OwnerCheck, "tolerance", description="the box grows by this share for 'inside'", low=0)
    duplicate_oks = from_field(
        OwnerCheck, "duplicate_oks", description="two poses this alike are one skeleton", low=0, high=1
    )
    isolate_grow = from_field(OwnerCheck, "isolate_grow", description="what an isolated re-estimate keeps", low=0)
    segmentation_weight = with_range(
        luigi.FloatParameter(
            default=0.5,
            description="weight of BlazePose's person segmentation (from the pose's own model call) in a "
            "detected posed person's mask, beside the network's probability (0 = the network alone; "
            "models.people.fuse_segmentation)",
        ),
        0,
        1,
    )

    def check(self) -> OwnerCheck:
        """The pose-ownership rule of these settings."""
        return OwnerCheck(
            enabled=self.check_owner,
            min_inside=self.owner_min_inside,
            min_extent_iou=self.owner_min_extent_iou,
            tolerance=self.owner_tolerance,
            duplicate_oks=self.duplicate_oks,
            isolate_grow=self.isolate_grow,
        )

    def params(self) -> dict[str, float]:
        return {
            "vis_threshold": self.vis_threshold,
            "box_margin": self.box_margin,
            "min_detection_confidence": self.min_detection_confidence,
            "min_tracking_confidence": self.min_tracking_confidence,
        }

    def estimator(self) -> PoseEstimator:
        return PoseEstimator(**self.params())

    def nightly_estimator(self) -> PoseEstimator:
        """The estimator of photos without keypoints: with its person segmentation when it is used."""
        if not 0.0 <= self.segmentation_weight <= 1.0:
            raise ValueError(f"[pose] segmentation_weight must be in [0, 1], got {self.segmentation_weight}")
        return PoseEstimator(**self.params(), segmentation=self.segmentation_weight > 0)


class detect(luigi.Config):  # noqa: N801
    """[detect] the person detector run before the pose estimator (models.people.detect)."""

    method = luigi.ChoiceParameter(choices=list(METHODS), default=DEFAULT_METHOD)
    yolox_input_size = from_field(DetectorConfig, "yolox_input_size", low=32, high=4096)
    yolox_threads = from_field(DetectorConfig, "yolox_threads", significant=False, low=0)
    yolox_runtime = from_field(DetectorConfig, "yolox_runtime", choices=list(YOLOX_RUNTIMES), significant=False)
    yolox_tile_above = from_field(DetectorConfig, "yolox_tile_above", description="longer photos are also tiled", low=0)
    yolox_tile_grid = from_field(
        DetectorConfig, "yolox_tile_grid", description="tiles per side of a large photo", low=1, high=8
    )
    yolox_tile_when_empty = from_field(
        DetectorConfig, "yolox_tile_when_empty", description="longer photos where nobody is found are tiled", low=0
    )
    yolox_tile_min_score = from_field(
        DetectorConfig, "yolox_tile_min_score", description="a tile box's minimum score", low=0, high=1
    )
    yolox_min_score = from_field(DetectorConfig, "yolox_min_score", low=0, high=1)
    yolox_nms_iou = from_field(DetectorConfig, "yolox_nms_iou", low=0, high=1)
    min_box_height = from_field(DetectorConfig, "min_box_height", low=0)
    box_fallback = luigi.BoolParameter(
        default=True,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="a detected person without a usable pose gets a mask from its box (see box_mask)",
    )
    box_mask = luigi.ChoiceParameter(
        choices=["network", "selfie", "grabcut"],
        default="network",
        description="how a box person (no usable pose) is segmented: the network from a box prior "
        "(0.580 IoU, 0.75 of them at >= 0.5, on the 44 detected people without a pose of coco128train, "
        "val2017 and OCHuman), MediaPipe's selfie segmenter in the box (0.344, 0.34) or GrabCut from the box",
    )
    box_prior_inside = from_field(BoxPriorConfig, "inside", description="box prior inside its ellipse", low=0, high=1)
    box_prior_outside = from_field(BoxPriorConfig, "outside", description="box prior elsewhere", low=0, high=1)
    box_prior_blur = from_field(BoxPriorConfig, "blur_sigma", description="blur of its edge, crop pixels", low=0)
    box_edge_grabcut = from_field(
        BoxPriorConfig,
        "edge_grabcut",
        description="a box person within this share of the photo's side of its edge gets GrabCut on the network's mask",
        low=0,
        high=0.5,
    )

    def box_prior(self) -> BoxPriorConfig | None:
        """The box prior when the network segments box people ([detect] box_mask = network), else None."""
        if self.box_mask != "network":
            return None
        return BoxPriorConfig(self.box_prior_inside, self.box_prior_outside, self.box_prior_blur, self.box_edge_grabcut)

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(
            yolox_input_size=self.yolox_input_size,
            yolox_threads=self.yolox_threads,
            yolox_runtime=self.yolox_runtime,
            yolox_tile_above=self.yolox_tile_above,
            yolox_tile_grid=self.yolox_tile_grid,
            yolox_tile_when_empty=self.yolox_tile_when_empty,
            yolox_tile_min_score=self.yolox_tile_min_score,
            yolox_min_score=self.yolox_min_score,
            yolox_nms_iou=self.yolox_nms_iou,
            min_box_height=self.min_box_height,
            pose_params=pose().params(),
        )

    def detector(self) -> PersonDetector:
        return PersonDetector(self.method, self.detector_config())

    def settings(self) -> dict:
        """Everything that changes which people are found for a photo without keypoints."""
        return {
            "detect": self.to_str_params(only_significant=True),
            "pose": pose().params(),
            "pose_check": pose().to_str_params(only_significant=True),
        }


class track(luigi.Config):  # noqa: N801
    """[track] keypoint tracking through frames (models.people.track.TrackConfig)."""

    flow = from_field(TrackConfig, "flow", choices=list(FLOW_METHODS))
    radius = from_field(TrackConfig, "radius")
    kalman = from_field(TrackConfig, "kalman")
    process_noise = from_field(TrackConfig, "process_noise")
    measurement_noise = from_field(TrackConfig, "measurement_noise")
    max_side = from_field(TrackConfig, "max_side")
    gate = from_field(TrackConfig, "gate")
    estimate_noise = from_field(TrackConfig, "estimate_noise")
    box_pad = from_field(TrackConfig, "box_pad")
    turns = from_field(TrackConfig, "turns")
    correct = from_field(TrackConfig, "correct")
    deadband = from_field(TrackConfig, "deadband")
    fb_gate = from_field(TrackConfig, "fb_gate")

    def to_config(self) -> TrackConfig:
        return TrackConfig(**{f.name: getattr(self, f.name) for f in fields(TrackConfig)})
