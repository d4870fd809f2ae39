"""Person boxes for images that come without annotations (offline, CPU).

Methods (all run offline, from models that ship inside this package, opencv-contrib or the
mediapipe wheel):

- "yolox" (default): YOLOX-nano (Megvii, Apache-2.0; weights/yolox_nano/ with its LICENSE and
  NOTICE), a general COCO-80 detector run with onnxruntime (models.people.yolox; yolox_session: the shipped 416x416
  export with its input size made free in memory, so that it runs at any multiple of 32; 14 ms
  at 416 and 21 ms at 512 on one core here, against cv2.dnn's 53 ms at 416 on two, the same
  outputs to 2e-4). The image is letterboxed into a square of
  `yolox_input_size` (scale = min(S/h, S/w), image at the top-left, the rest filled with 114),
  BGR, values 0-255, no normalisation. Its output is one row per anchor-free cell of the strides
  8, 16, 32, row-major per stride: (x, y, log w, log h, objectness, 80 class scores), decoded as
  centre = (raw + cell) * stride, size = exp(raw) * stride, score = objectness * person score,
  then mapped back by the letterbox scale and suppressed (NMS). It finds people of every size and
  pose in crowded photos, which BlazePose's face-anchored detector does not.
- "blazepose" (models.people.blazepose): MediaPipe's BlazePose person detector (pose_detection.tflite,
  the first stage of MediaPipe Pose) run through a mediapipe graph that returns *all* its detections, not just the
  one person the Pose solution keeps. It finds each person's face box plus two alignment points,
  hip centre and a point at the radius of the body's circle; the person box is spanned around
  them with the fractions of that radius below. The detector sees a 224x224 letterbox, so the
  image is also cut into overlapping tiles (grid sizes in `tile_grids`) to find small people; the
  boxes from all tiles are merged by non-maximum suppression. Then (`mask_passes`) the people found
  are painted over and the detector runs again, which finds people its own suppression hid.
  On the sample, the extra passes beat tiling (tiles add partial-person false positives), so by
  default only the whole image is used.
- "blazepose_landmarks": "blazepose", then each box is replaced by the extent of the person's
  COCO-17 keypoints from `models.people.pose.PoseEstimator`, padded (tighter boxes, ~40 ms per person).
- "hog": OpenCV's HOG + linear SVM pedestrian detector with non-maximum suppression (upright,
  full-body people only; the classical baseline).

DEFAULT_METHOD names the method that measured best on the sample (docs/results.md "Accuracy of the
built-in estimators").
Boxes are (K, 5) float32 [x, y, w, h, score] in pixels, sorted by score, highest first
(models.people.boxes: their overlap, suppression, tiling and matching).

    PersonDetector(method, config)   .detect(image_rgb) -> (K, 5) boxes; a context manager (close())
    detect_people(image_rgb, method, config) -> (K, 5)   one-shot PersonDetector
    DetectorConfig                   every method's tunables; METHODS, DEFAULT_METHOD
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from models.people.blazepose import blazepose_boxes, blazepose_detection_graph
from models.people.boxes import _crosses_inner_edge, clip_boxes, keypoint_box, non_max_suppression, tiles
from models.people.pose import PoseEstimator, check_image_rgb
from models.people.yolox import YOLOX_RUNTIMES, decode_yolox, letterbox, yolox_session
from models.utils import YOLOX_MODEL, ClosesOnExit, require

METHODS: tuple[str, ...] = ("yolox", "blazepose", "blazepose_landmarks", "hog")
DEFAULT_METHOD = "yolox"


@dataclass(frozen=True)
class DetectorConfig:
    """Tunables of every method (each field documents its default).

    yolox_input_size: side of the square the image is letterboxed into (a multiple of 32; the
        shipped export was made for 416; 512 finds more small and medium people: docs/generate.md "Crowds").
    yolox_threads: onnxruntime threads of the detector (1: the nightly shard runs it in its
        read-ahead thread beside the network).
    yolox_runtime: "onnxruntime" (yolox_session) or "opencv" (cv2.dnn, the runtime before
        issue 20, kept so that bench/nightly_quality.py --before measures it).
    yolox_tile_above: a photo whose longer side exceeds this many pixels is also cut into
        yolox_tile_grid x yolox_tile_grid tiles (overlapping by tile_overlap), each detected at
        yolox_input_size, so that people a whole-photo pass shrinks below the detector's reach are
        found (0 = never). Tile boxes that cross an inner tile edge are dropped (tile_edge_tolerance:
        the whole-photo pass finds such people), and so are those below yolox_tile_min_score (a
        tile shows parts of things out of context: false people), the rest merged by NMS. Off by
        default: on coco128train's photos scaled 3x (1920 px), 2x2 tiles above 1600 px found more
        small and medium people's boxes (0.04 / 0.52 -> 0.11 / 0.58) but halved the photos/s,
        lowered precision (0.80 -> 0.55) and whole-photo IoU (0.611 -> 0.596); docs/generate.md "Crowds".
    yolox_tile_when_empty: a photo whose longer side exceeds this many pixels is cut into the same
        tiles when the whole-photo pass finds nobody (0 = never): a large group photo whose people
        the whole-photo pass shrinks below its reach is then not a silent "no person", and photos
        with people found keep the whole-photo pass's speed and precision. On 12 wide 3000x2000 shots
        of three small groups each (real photos scaled to 300 px), the whole-photo pass found nobody
        in 6; tiling those (3x3) left none empty and found 0.24 of the people instead of 0.07, at
        164 ms per photo on average instead of 51; 3 more false boxes over 20 person-free 3000x2000
        canvases (bench/large_photos.py, docs/generate.md "Crowds").
    yolox_min_score: person detections below this objectness x class score are dropped.
    yolox_nms_iou: YOLOX boxes overlapping a higher-scoring box by more than this IoU are dropped.
    min_box_height: boxes shorter than this many pixels are dropped (too small for a mask).
    blazepose_min_score: detections below this score are dropped (the model itself keeps >= 0.5).
    tile_grids: grid sizes the image is cut into for the BlazePose detector; 1 = the whole image,
        2 = 2x2 tiles, ... Small people are only found in the finer grids.
    tile_overlap: tiles overlap their neighbours by this fraction of the tile size.
    tile_edge_tolerance: a tile's detection is dropped when its box crosses an inner tile edge
        (one that is not an image edge) by more than this fraction of the box size: a person cut
        by the tile is found whole by a coarser grid.
    mask_passes: extra whole-image passes, each with the people found so far painted over in
        grey, so the detector can find the people its own suppression hid.
    box_half_width / box_top / box_bottom: the person box spans hip_x -/+ half_width * r and
        hip_y - top * r .. hip_y + bottom * r, r = body-circle radius (fitted on COCO boxes).
    nms_iou: boxes overlapping a higher-scoring box by more than this IoU are dropped.
    landmark_pad: ("blazepose_landmarks") the keypoint extent grows by this fraction of its
        height on the sides and bottom ...
    landmark_pad_top: ... and by this fraction on top (the head reaches above the eyes and ears).
    landmark_min_keypoints: keep the BlazePose box when fewer keypoints than this are found.
    hog_win_stride / hog_scale / hog_hit_threshold / hog_min_score: HOG's sliding-window step
        (pixels), pyramid scale step, SVM margin threshold and minimum kept SVM score.
    """

    yolox_input_size: int = 512
    yolox_threads: int = 1
    yolox_runtime: str = "onnxruntime"
    yolox_tile_above: int = 0
    yolox_tile_grid: int = 3
    yolox_tile_when_empty: int = 1600
    yolox_tile_min_score: float = 0.6
    yolox_min_score: float = 0.3
    yolox_nms_iou: float = 0.45
    min_box_height: float = 24.0
    blazepose_min_score: float = 0.5
    tile_grids: tuple[int, ...] = (1,)
    tile_overlap: float = 0.25
    tile_edge_tolerance: float = 0.1
    mask_passes: int = 2
    box_half_width: float = 0.5
    box_top: float = 1.0
    box_bottom: float = 0.9
    nms_iou: float = 0.5
    landmark_pad: float = 0.05
    landmark_pad_top: float = 0.12
    landmark_min_keypoints: int = 4
    hog_win_stride: int = 8
    hog_scale: float = 1.05
    hog_hit_threshold: float = 0.0
    hog_min_score: float = 0.3
    pose_params: dict[str, float] = field(default_factory=dict)


class PersonDetector(ClosesOnExit):
    """Person boxes by one of METHODS. Not fork-safe: create one per process.

    Context manager; models are created lazily on first use and freed by `close()`.
    """

    def __init__(self, method: str = DEFAULT_METHOD, config: DetectorConfig | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown person detection method {method!r}; choose one of {METHODS}")
        self.method = method
        self.config = config or DetectorConfig()
        if not self.config.tile_grids or min(self.config.tile_grids) < 1:
            raise ValueError(f"tile_grids must be a non-empty list of ints >= 1, got {self.config.tile_grids}")
        if not 0.0 <= self.config.tile_overlap < 1.0:
            raise ValueError(f"tile_overlap must be in [0, 1), got {self.config.tile_overlap}")
        if self.config.yolox_runtime not in YOLOX_RUNTIMES:
            raise ValueError(f"yolox_runtime must be one of {YOLOX_RUNTIMES}, got {self.config.yolox_runtime!r}")
        if self.config.yolox_input_size < 32 or self.config.yolox_input_size % 32:
            raise ValueError(f"yolox_input_size must be a multiple of 32, got {self.config.yolox_input_size}")
        self._graph: Any = None
        self._yolox: Any = None
        self._hog: cv2.HOGDescriptor | None = None
        self._pose: PoseEstimator | None = None
        self._owner_pid = os.getpid()

    def detect(self, image_rgb: np.ndarray) -> np.ndarray:
        """Person boxes in image_rgb (H, W, 3) uint8 -> (K, 5) float32 [x, y, w, h, score]."""
        check_image_rgb(image_rgb)
        if os.getpid() != self._owner_pid:
            raise RuntimeError("PersonDetector was created in another process; create one per process")
        if self.method == "yolox":
            boxes = self._detect_yolox(image_rgb)
        elif self.method == "hog":
            boxes = self._detect_hog(image_rgb)
        else:
            boxes = self._detect_blazepose(image_rgb)
            if self.method == "blazepose_landmarks":
                boxes = self._refine_with_landmarks(image_rgb, boxes)
        return boxes[boxes[:, 3] >= self.config.min_box_height]

    def _detect_yolox(self, image_rgb: np.ndarray) -> np.ndarray:
        cfg = self.config
        if self._yolox is None:
            path = str(require(YOLOX_MODEL))
            opencv = cfg.yolox_runtime == "opencv"
            self._yolox = cv2.dnn.readNetFromONNX(path) if opencv else yolox_session(path, cfg.yolox_threads)
        bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        found = [self._yolox_boxes(bgr)]
        height, width = image_rgb.shape[:2]
        longer = max(height, width)
        tile = bool(cfg.yolox_tile_above) and longer > cfg.yolox_tile_above
        if cfg.yolox_tile_when_empty and longer > cfg.yolox_tile_when_empty and not tile:
            # a large photo where the whole-photo pass found nobody tall enough: its people may be
            # too small at the detector's input, never silently "no person"
            tile = not np.any(found[0][:, 3] >= cfg.min_box_height)
        if tile and cfg.yolox_tile_grid > 1:
            for x0, y0, x1, y1 in tiles((height, width), cfg.yolox_tile_grid, cfg.tile_overlap):
                boxes = self._yolox_boxes(np.ascontiguousarray(bgr[y0:y1, x0:x1]))
                boxes = boxes[boxes[:, 4] >= cfg.yolox_tile_min_score]
                boxes[:, :2] += (x0, y0)
                region, hw = (x0, y0, x1, y1), (height, width)
                keep = [not _crosses_inner_edge(b, region, hw, cfg.tile_edge_tolerance) for b in boxes]
                found.append(boxes[np.asarray(keep, bool).reshape(-1)])
        boxes = np.concatenate(found)
        return non_max_suppression(clip_boxes(boxes, image_rgb.shape[:2]), cfg.yolox_nms_iou)

    def _yolox_boxes(self, image_bgr: np.ndarray) -> np.ndarray:
        """YOLOX's person boxes of one (H, W, 3) BGR image, not suppressed: (K, 5) float32."""
        cfg = self.config
        size = cfg.yolox_input_size
        padded, scale = letterbox(image_bgr, size)
        blob = cv2.dnn.blobFromImage(padded, 1.0, (size, size), swapRB=False)  # (1, 3, S, S) float32 BGR
        if cfg.yolox_runtime == "opencv":
            self._yolox.setInput(blob)
            raw = self._yolox.forward()
        else:
            raw = self._yolox.run(None, {self._yolox.get_inputs()[0].name: blob})[0]
        return decode_yolox(raw[0], size, scale, cfg.yolox_min_score)

    def _detect_hog(self, image_rgb: np.ndarray) -> np.ndarray:
        cfg = self.config
        if self._hog is None:
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        rects, weights = self._hog.detectMultiScale(
            gray,
            hitThreshold=cfg.hog_hit_threshold,
            winStride=(cfg.hog_win_stride, cfg.hog_win_stride),
            scale=cfg.hog_scale,
        )
        if len(rects) == 0:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate([np.asarray(rects, np.float32), np.asarray(weights, np.float32).reshape(-1, 1)], 1)
        boxes = boxes[boxes[:, 4] >= cfg.hog_min_score]
        return non_max_suppression(clip_boxes(boxes, image_rgb.shape[:2]), cfg.nms_iou)

    def _blazepose_graph(self) -> Any:
        if self._graph is None:
            self._graph = blazepose_detection_graph()
        return self._graph

    def _detect_blazepose(self, image_rgb: np.ndarray) -> np.ndarray:
        cfg = self.config
        graph = self._blazepose_graph()
        found: list[list[float]] = []
        for grid in sorted(set(cfg.tile_grids)):
            for region in tiles(image_rgb.shape[:2], grid, cfg.tile_overlap):
                found += self._blazepose_boxes(graph, image_rgb, region, check_edges=grid > 1)
        found_boxes = clip_boxes(np.asarray(found, np.float32).reshape(-1, 5), image_rgb.shape[:2])
        boxes = non_max_suppression(found_boxes, cfg.nms_iou)
        height, width = image_rgb.shape[:2]
        # the photo's mean colour, once: cv2.mean is ~30x a numpy mean over a large photo
        fill = np.asarray(cv2.mean(image_rgb)[:3]).astype(np.uint8)
        for _ in range(cfg.mask_passes):
            masked = image_rgb.copy()
            for x, y, w, h, _score in boxes:
                masked[int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = fill
            more = self._blazepose_boxes(graph, masked, (0, 0, width, height), check_edges=False)
            if not more:
                break
            more_boxes = clip_boxes(np.asarray(more, np.float32).reshape(-1, 5), image_rgb.shape[:2])
            boxes = non_max_suppression(np.concatenate([boxes, more_boxes]), cfg.nms_iou)
        return boxes

    def _blazepose_boxes(
        self, graph: Any, image_rgb: np.ndarray, region: tuple[int, int, int, int], check_edges: bool
    ) -> list[list[float]]:
        """BlazePose detections in image_rgb[y0:y1, x0:x1] as [x, y, w, h, score] full-image rows."""
        return blazepose_boxes(graph, image_rgb, region, check_edges, self.config)

    def _refine_with_landmarks(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        cfg = self.config
        if self._pose is None:
            self._pose = PoseEstimator(**cfg.pose_params)
        refined = boxes.copy()
        for i, box in enumerate(boxes):
            keypoints = self._pose.estimate(image_rgb, box[:4])
            if keypoints is None or int((keypoints[:, 2] > 0).sum()) < cfg.landmark_min_keypoints:
                continue
            tight = keypoint_box(keypoints, cfg.landmark_pad, cfg.landmark_pad_top)
            if tight is not None:
                refined[i, :4] = tight
        return non_max_suppression(clip_boxes(refined, image_rgb.shape[:2]), cfg.nms_iou)

    def close(self) -> None:
        """Free the models (a later `detect` creates them again)."""
        if self._graph is not None and os.getpid() == self._owner_pid:
            self._graph.close()
        self._graph = None
        self._yolox = None
        self._hog = None
        if self._pose is not None:
            self._pose.close()
            self._pose = None


def detect_people(
    image_rgb: np.ndarray, method: str = DEFAULT_METHOD, config: DetectorConfig | None = None
) -> np.ndarray:
    """One-shot `PersonDetector(method, config).detect(image_rgb)`: (K, 5) float32 [x, y, w, h, score].

    Creates and frees the models on every call (~0.2 s); keep a PersonDetector for many images.
    """
    with PersonDetector(method, config) as detector:
        return detector.detect(image_rgb)
