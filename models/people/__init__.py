"""People in photos: find them (detector, pose estimator, whose pose is whose), track their
keypoints through frames, segment every person of a photo, and the whole-photo peers posemask is
compared with (imports every other models package; the network's torch only when a network runs).

    PersonDetector, detect_people, DetectorConfig, METHODS, DEFAULT_METHOD   person boxes (detect.py;
                     YOLOX: yolox.py, YOLOX_RUNTIMES; BlazePose: blazepose.py)
    match_detections, box_iou, keypoint_box        boxes as arrays (boxes.py)
    PoseEstimator, PoseResult                      MediaPipe Pose -> COCO-17 keypoints (pose.py)
    OwnerCheck, assign_poses, REASONS              whose pose is it (ownership.py)
    Person, PersonMask, LabelMap, instance_labels, SOURCE_KEYPOINTS, SOURCE_BOX, BoxSegmenter,
    mask_score, mask_kind     one person and its mask (person.py)
    estimate_people, person_from_keypoints, present_keypoints, clean_keypoints   finding people (find.py)
    iter_person_masks, segment_people, person_samples, crop_probabilities, fuse_segmentation
                   segmenting them, one batch at a time (segment.py; box people: boxmask.py)
    TrackConfig, track_keypoints, estimate_turned, FLOW_METHODS   tracking (track.py; the ORB
                   baseline orb_track: orb.py)
    PEERS, make_peer, deeplab_baseline             whole-photo peers (peers.py)
    PoseFreeSegmenter, posefree_baseline           MediaPipe's selfie segmenter (posefree.py)
"""

from models.people.boxes import box_iou, keypoint_box, match_detections
from models.people.detect import DEFAULT_METHOD, METHODS, DetectorConfig, PersonDetector, detect_people
from models.people.find import clean_keypoints, estimate_people, person_from_keypoints, present_keypoints
from models.people.orb import orb_track
from models.people.ownership import REASONS, OwnerCheck, assign_poses
from models.people.peers import PEERS, deeplab_baseline, make_peer
from models.people.person import (
    SOURCE_BOX,
    SOURCE_KEYPOINTS,
    BoxSegmenter,
    LabelMap,
    Person,
    PersonMask,
    instance_labels,
    mask_kind,
    mask_score,
)
from models.people.pose import PoseEstimator, PoseResult
from models.people.posefree import PoseFreeSegmenter, posefree_baseline
from models.people.segment import (
    crop_probabilities,
    fuse_segmentation,
    iter_person_masks,
    person_samples,
    segment_people,
)
from models.people.track import FLOW_METHODS, TrackConfig, estimate_turned, track_keypoints
from models.people.yolox import YOLOX_RUNTIMES

__all__ = [
    "DEFAULT_METHOD",
    "FLOW_METHODS",
    "METHODS",
    "PEERS",
    "REASONS",
    "SOURCE_BOX",
    "SOURCE_KEYPOINTS",
    "YOLOX_RUNTIMES",
    "BoxSegmenter",
    "DetectorConfig",
    "LabelMap",
    "OwnerCheck",
    "Person",
    "PersonDetector",
    "PersonMask",
    "PoseEstimator",
    "PoseFreeSegmenter",
    "PoseResult",
    "TrackConfig",
    "assign_poses",
    "box_iou",
    "clean_keypoints",
    "crop_probabilities",
    "deeplab_baseline",
    "detect_people",
    "estimate_people",
    "estimate_turned",
    "fuse_segmentation",
    "instance_labels",
    "iter_person_masks",
    "keypoint_box",
    "make_peer",
    "mask_kind",
    "mask_score",
    "match_detections",
    "orb_track",
    "person_from_keypoints",
    "person_samples",
    "posefree_baseline",
    "present_keypoints",
    "segment_people",
    "track_keypoints",
]
