"""Tests for models.people.detect: box helpers on tiny arrays, detectors on the real COCO sample."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.people.boxes import (
    _crosses_inner_edge,
    box_iou,
    clip_boxes,
    keypoint_box,
    match_detections,
    non_max_suppression,
    tiles,
)
from models.people.detect import DEFAULT_METHOD, METHODS, DetectorConfig, PersonDetector, detect_people
from models.people.yolox import decode_yolox, letterbox, yolox_grid

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample" / "coco"
MIN_PERSON_AREA = 64 * 64  # COCO "large-ish" people: smaller ones are neither found nor punished


def test_box_iou() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]], np.float32)
    np.testing.assert_allclose(box_iou(boxes[0], boxes), [1.0, 50 / 150, 0.0])


def test_nms_keeps_best_of_overlapping() -> None:
    boxes = np.array([[0, 0, 10, 10, 0.5], [1, 0, 10, 10, 0.9], [50, 50, 10, 10, 0.7]], np.float32)
    kept = non_max_suppression(boxes, 0.5)
    np.testing.assert_array_equal(kept[:, 4], np.array([0.9, 0.7], np.float32))
    assert non_max_suppression(np.zeros((0, 5), np.float32), 0.5).shape == (0, 5)


def test_clip_boxes_drops_outside() -> None:
    boxes = np.array([[-5, -5, 10, 20, 1.0], [200, 0, 10, 10, 1.0]], np.float32)
    np.testing.assert_array_equal(clip_boxes(boxes, (10, 100)), [[0, 0, 5, 10, 1.0]])


def test_tiles_cover_image_with_overlap() -> None:
    assert tiles((100, 200), 1, 0.25) == [(0, 0, 200, 100)]
    grid = tiles((100, 200), 2, 0.25)
    assert len(grid) == 4
    covered = np.zeros((100, 200), bool)
    for x0, y0, x1, y1 in grid:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert grid[0][2] > grid[1][0]  # neighbours overlap


def test_crosses_inner_edge() -> None:
    region, image_hw = (0, 0, 100, 100), (200, 200)
    assert not _crosses_inner_edge([10, 10, 50, 50], region, image_hw, 0.1)
    assert _crosses_inner_edge([80, 10, 50, 50], region, image_hw, 0.1)  # through the inner right edge
    assert not _crosses_inner_edge([-20, -20, 50, 50], region, image_hw, 0.1)  # image edges are fine


def test_keypoint_box() -> None:
    keypoints = np.zeros((17, 3), np.float32)
    assert keypoint_box(keypoints, 0.1, 0.2) is None
    keypoints[0] = (50, 10, 2)
    keypoints[15] = (40, 110, 1)
    np.testing.assert_allclose(keypoint_box(keypoints, 0.1, 0.2), [30, -10, 30, 130])


def test_match_detections() -> None:
    gt = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], np.float32)
    ignore = np.array([[50, 50, 10, 10]], np.float32)
    boxes = np.array(
        [[0, 0, 10, 10, 0.9], [0, 1, 10, 10, 0.8], [50, 50, 10, 10, 0.7], [300, 300, 5, 5, 0.6]], np.float32
    )
    # first matches gt 0; second is a duplicate (FP); third hits an ignored box; fourth is a FP
    assert match_detections(boxes, gt, ignore) == (1, 2, 2)
    assert match_detections(np.zeros((0, 5), np.float32), gt, ignore) == (0, 0, 2)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown person detection method"):
        PersonDetector("yolo")
    with pytest.raises(ValueError, match="tile_grids"):
        PersonDetector(config=DetectorConfig(tile_grids=()))
    with pytest.raises(ValueError, match="uint8"):
        detect_people(np.zeros((10, 10, 3), np.float64), method="hog")


@pytest.mark.parametrize("method", METHODS)
def test_blank_image_has_no_people(method: str) -> None:
    boxes = detect_people(np.full((240, 320, 3), 127, np.uint8), method=method)
    assert boxes.shape == (0, 5) and boxes.dtype == np.float32


def load_sample() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, people to find (G,4), people to ignore (I,4)) for every sample image, val + train."""
    out = []
    for split in ("val", "train"):
        coco = json.loads((SAMPLE / "annotations" / f"person_keypoints_{split}2017.json").read_text())
        for image in coco["images"]:
            bgr = cv2.imread(str(SAMPLE / f"{split}2017" / image["file_name"]))
            anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
            keep = [not a["iscrowd"] and a["area"] >= MIN_PERSON_AREA for a in anns]
            gt = np.array([a["bbox"] for a, k in zip(anns, keep, strict=True) if k], np.float32).reshape(-1, 4)
            ignore = np.array([a["bbox"] for a, k in zip(anns, keep, strict=True) if not k], np.float32)
            out.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), gt, ignore.reshape(-1, 4)))
    return out


# method -> (min recall, min precision) on the sample's 79 people (area >= 64^2, non-crowd), IoU 0.5.
# Measured: yolox at its default 512 input 65 TP / 44 FP (recall 0.823, precision 0.596: most
# "false" boxes are people smaller than 64^2, which 512 finds and 416 did not (64 / 32 there), or
# unlabelled ones in the background); blazepose_landmarks 40 TP / 1 FP (recall 0.506,
# precision 0.976); blazepose 0.418 / 0.767; hog 0.038 / 0.130. The nightly acceptance figures
# (people with >= 8 keypoints, bench/nightly_quality.py) are in the README.
SAMPLE_FLOORS = {"yolox": (0.8, 0.55), "blazepose_landmarks": (0.40, 0.85)}


@pytest.mark.parametrize("method", sorted(SAMPLE_FLOORS))
def test_detector_on_coco_sample(method: str) -> None:
    min_recall, min_precision = SAMPLE_FLOORS[method]
    true_pos = false_pos = num_gt = 0
    with PersonDetector(method) as detector:
        for image, gt, ignore in load_sample():
            boxes = detector.detect(image)
            assert boxes.ndim == 2 and boxes.shape[1] == 5 and boxes.dtype == np.float32
            height, width = image.shape[:2]
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= width + 1e-3).all()
            assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + boxes[:, 3] <= height + 1e-3).all()
            assert (np.diff(boxes[:, 4]) <= 0).all()  # sorted by score
            tp, fp, n = match_detections(boxes, gt, ignore)
            true_pos, false_pos, num_gt = true_pos + tp, false_pos + fp, num_gt + n
    assert num_gt == 79
    assert true_pos / num_gt >= min_recall
    assert true_pos / max(true_pos + false_pos, 1) >= min_precision


def test_default_is_yolox() -> None:
    assert DEFAULT_METHOD == "yolox" and PersonDetector().method == "yolox"


def test_letterbox_keeps_aspect_and_pads_with_114() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    padded, scale = letterbox(image, 416)
    assert padded.shape == (416, 416, 3) and scale == pytest.approx(2.08)
    assert (padded[:208] == 0).all() and (padded[208:] == 114).all()


def test_yolox_grid_order() -> None:
    cells, strides = yolox_grid(416)
    assert cells.shape == (3549, 2) and strides.shape == (3549, 1)
    np.testing.assert_array_equal(cells[:3], [[0, 0], [1, 0], [2, 0]])  # row-major: x runs first
    np.testing.assert_array_equal(cells[52], [0, 1])
    assert strides[0, 0] == 8 and strides[52 * 52, 0] == 16 and strides[-1, 0] == 32


def test_decode_yolox_recovers_a_known_box() -> None:
    """One cell of stride 16 at (col 10, row 5) says: centre +0.5 cell, size 4x8 cells, person 0.8."""
    raw = np.zeros((3549, 85), np.float32)
    raw[:, 2:4] = -10.0
    row = 52 * 52 + 5 * 26 + 10
    raw[row, :4] = [0.5, 0.5, np.log(4.0), np.log(8.0)]
    raw[row, 4], raw[row, 5] = 0.9, 0.8 / 0.9
    raw[0, 4] = np.nan  # a non-finite row is dropped, never a box
    boxes = decode_yolox(raw, 416, scale=0.5, min_score=0.3)
    assert boxes.shape == (1, 5)
    cx, cy, w, h = 10.5 * 16, 5.5 * 16, 4 * 16, 8 * 16
    np.testing.assert_allclose(boxes[0], [(cx - w / 2) / 0.5, (cy - h / 2) / 0.5, w / 0.5, h / 0.5, 0.8], rtol=1e-5)
    assert decode_yolox(raw, 416, 0.5, min_score=0.9).shape == (0, 5)
    with pytest.raises(ValueError, match="rows"):
        decode_yolox(raw[:100], 416, 0.5, 0.3)


def test_yolox_input_size_checked_and_small_boxes_dropped() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        PersonDetector("yolox", DetectorConfig(yolox_input_size=400))
    image = cv2.cvtColor(cv2.imread(str(SAMPLE / "val2017" / "000000000785.jpg")), cv2.COLOR_BGR2RGB)
    found = detect_people(image, "yolox")
    assert len(found) >= 1
    tallest = float(found[:, 3].max())
    assert len(detect_people(image, "yolox", DetectorConfig(min_box_height=tallest + 1))) == 0


def test_hog_finds_an_upright_person() -> None:
    """The HOG baseline finds the standing person of 397133 (its boxes are loose elsewhere)."""
    image = cv2.cvtColor(cv2.imread(str(SAMPLE / "val2017" / "000000397133.jpg")), cv2.COLOR_BGR2RGB)
    boxes = detect_people(image, method="hog")
    assert boxes.ndim == 2 and boxes.shape[1] == 5 and boxes.dtype == np.float32
    coco = json.loads((SAMPLE / "annotations" / "person_keypoints_val2017.json").read_text())
    gt = np.array([a["bbox"] for a in coco["annotations"] if a["image_id"] == 397133], np.float32)
    assert max(box_iou(box[:4], gt).max() for box in boxes) >= 0.5


def test_yolox_runs_at_any_input_size_in_onnxruntime_as_opencv_runs_the_export():
    """The export fixes 416x416; yolox_session frees the size in memory. At 416 and 512 its raw
    outputs equal cv2.dnn's on a real photo (to float rounding), so the decoding is unchanged."""
    from models.people.yolox import yolox_session
    from models.utils.assets import YOLOX_MODEL, require

    path = str(require(YOLOX_MODEL))
    session = yolox_session(path)
    bgr = cv2.imread(str(SAMPLE / "val2017" / "000000000785.jpg"))
    for size in (416, 512):
        padded, _ = letterbox(bgr, size)
        blob = cv2.dnn.blobFromImage(padded, 1.0, (size, size), swapRB=False)
        net = cv2.dnn.readNetFromONNX(path)
        net.setInput(blob)
        expected = net.forward()
        got = session.run(None, {session.get_inputs()[0].name: blob})[0]
        assert got.shape == expected.shape == (1, len(yolox_grid(size)[0]), 85)
        np.testing.assert_allclose(got, expected, atol=2e-3)


def test_both_yolox_runtimes_find_the_same_people():
    """[detect] yolox_runtime = opencv (the runtime before issue 20, kept for bench --before) and
    onnxruntime (the default) give the same boxes; an unknown runtime is refused."""
    image = cv2.cvtColor(cv2.imread(str(SAMPLE / "val2017" / "000000000785.jpg")), cv2.COLOR_BGR2RGB)
    found = [
        detect_people(image, "yolox", DetectorConfig(yolox_input_size=416, yolox_runtime=runtime))
        for runtime in ("onnxruntime", "opencv")
    ]
    assert len(found[0]) == len(found[1]) >= 1
    np.testing.assert_allclose(found[0], found[1], atol=0.05)
    with pytest.raises(ValueError, match="yolox_runtime"):
        PersonDetector("yolox", DetectorConfig(yolox_runtime="tensorrt"))


def test_a_large_photo_is_also_detected_in_tiles_that_find_people_the_whole_pass_misses():
    """Above yolox_tile_above px the photo is also cut into tiles: on a val2017 street photo
    scaled 3x (a large photo: 8 people found whole, 15 with 2x2 tiles) the tiles find more people,
    and every whole-photo box is kept (or merged); below the limit, nothing changes."""
    image = cv2.cvtColor(cv2.imread(str(SAMPLE / "val2017" / "000000000785.jpg")), cv2.COLOR_BGR2RGB)
    crowd = cv2.imread(str(SAMPLE / "val2017" / "000000128372.jpg"))  # a street: 7 people found at 512
    large = cv2.cvtColor(cv2.resize(crowd, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
    whole = detect_people(large, "yolox", DetectorConfig(yolox_tile_above=0))
    tiles = DetectorConfig(yolox_tile_above=1600)
    tiled = detect_people(large, "yolox", tiles)
    assert max(large.shape[:2]) > tiles.yolox_tile_above
    assert len(tiled) > len(whole)
    for box in whole:
        assert box_iou(box[:4], tiled[:, :4]).max() > 0.45
    np.testing.assert_array_equal(detect_people(image, "yolox", tiles), detect_people(image, "yolox", DetectorConfig()))


def test_a_large_photo_where_the_whole_pass_finds_nobody_is_tiled_never_silently_empty():
    """A 3000x2000 wide shot of three small groups (a val2017 photo scaled to 300 px, three times):
    at the detector's input its people are too small and the whole-photo pass finds nobody; the
    default (yolox_tile_when_empty) then cuts it into tiles and finds them. Photos where the whole
    pass finds someone, and small photos, are not tiled."""
    photo = cv2.cvtColor(cv2.imread(str(SAMPLE / "val2017" / "000000183709.jpg")), cv2.COLOR_BGR2RGB)
    scale = 300 / max(photo.shape[:2])
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    wide = np.full((2000, 3000, 3), 114, np.uint8)
    for x0, y0 in ((100, 900), (1300, 200), (2300, 1500)):  # three small groups
        wide[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    assert len(detect_people(wide, "yolox", DetectorConfig(yolox_tile_when_empty=0))) == 0
    found = detect_people(wide, "yolox", DetectorConfig())
    assert len(found) >= 3
    spots = ((100, 900), (1300, 200), (2300, 1500))
    h, w = small.shape[:2]
    centres = found[:, :2] + found[:, 2:4] / 2
    assert all(any(x0 <= cx <= x0 + w and y0 <= cy <= y0 + h for x0, y0 in spots) for cx, cy in centres)
    # a photo whose whole pass finds people is not tiled: the same boxes with the rule on or off
    crowd = cv2.imread(str(SAMPLE / "val2017" / "000000128372.jpg"))
    large = cv2.cvtColor(cv2.resize(crowd, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
    rule_off = DetectorConfig(yolox_tile_when_empty=0)
    default = detect_people(large, "yolox", DetectorConfig())
    np.testing.assert_array_equal(default, detect_people(large, "yolox", rule_off))
