"""MediaPipe's BlazePose person detector with every detection it makes, for models.people.detect.

BlazePose's detector (pose_detection.tflite, the first stage of MediaPipe Pose, shipped in the
mediapipe wheel) finds each person's face box plus two alignment points, hip centre and a point
at the radius of the body's circle; the person box is spanned around them with fractions of that
radius (DetectorConfig.box_half_width, box_top, box_bottom).

    blazepose_detection_graph() -> graph     a mediapipe graph of that detector, all its detections out
    blazepose_boxes(graph, image_rgb, region, check_edges, cfg) -> rows   its detections in one region
                                             as [x, y, w, h, score] rows of the whole image
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from models.people.boxes import _crosses_inner_edge
from models.people.pose import import_mediapipe_quietly, quiet_native_stderr

# One mediapipe node: the BlazePose detection subgraph (registered in the mediapipe wheel; its model
# pose_detection.tflite ships in mediapipe/modules/pose_detection) with every detection as output.
_BLAZEPOSE_DETECTION_GRAPH = """
input_stream: "image"
output_stream: "detections"
node {
  calculator: "PoseDetectionCpu"
  input_stream: "IMAGE:image"
  output_stream: "DETECTIONS:detections"
}
"""
# Alignment keypoints of a BlazePose detection: hip centre and a point on the full-body circle.
_HIP_CENTRE, _BODY_RADIUS_POINT = 0, 1


def blazepose_detection_graph() -> Any:
    """The detector's mediapipe graph (a SolutionBase), run once on a blank image so it is ready."""
    import_mediapipe_quietly()
    from mediapipe.python import solution_base

    with quiet_native_stderr():
        graph = solution_base.SolutionBase(graph_config=_BLAZEPOSE_DETECTION_GRAPH, outputs=["detections"])
        graph.process({"image": np.zeros((64, 64, 3), np.uint8)})
    return graph


class BoxShape(Protocol):
    """What blazepose_boxes reads of models.people.detect.DetectorConfig (a Protocol: detect.py
    imports this module, so this module does not import it)."""

    blazepose_min_score: float
    box_half_width: float
    box_top: float
    box_bottom: float
    tile_edge_tolerance: float


def blazepose_boxes(
    graph: Any, image_rgb: np.ndarray, region: tuple[int, int, int, int], check_edges: bool, cfg: BoxShape
) -> list[list[float]]:
    """BlazePose detections in image_rgb[y0:y1, x0:x1] as [x, y, w, h, score] full-image rows.

    check_edges: drop a box that leaves the region through an inner tile edge (boxes._crosses_inner_edge).
    """
    height, width = image_rgb.shape[:2]
    x0, y0, x1, y1 = region
    found = []
    tile = np.ascontiguousarray(image_rgb[y0:y1, x0:x1])
    for det in graph.process({"image": tile}).detections or []:
        score = float(det.score[0])
        if score < cfg.blazepose_min_score:
            continue
        points = det.location_data.relative_keypoints
        hip_x = x0 + points[_HIP_CENTRE].x * (x1 - x0)
        hip_y = y0 + points[_HIP_CENTRE].y * (y1 - y0)
        radius = float(
            np.hypot(
                (points[_BODY_RADIUS_POINT].x - points[_HIP_CENTRE].x) * (x1 - x0),
                (points[_BODY_RADIUS_POINT].y - points[_HIP_CENTRE].y) * (y1 - y0),
            )
        )
        box = [
            hip_x - cfg.box_half_width * radius,
            hip_y - cfg.box_top * radius,
            2 * cfg.box_half_width * radius,
            (cfg.box_top + cfg.box_bottom) * radius,
            score,
        ]
        if check_edges and _crosses_inner_edge(box, region, (height, width), cfg.tile_edge_tolerance):
            continue
        found.append(box)
    return found
