"""models.evaluation.scoring: which annotated person a prediction found, and its mask's IoU with them."""

import numpy as np
from pycocotools import mask as mask_utils

from models.evaluation import box_matched_ious, people_found


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _rect(y0: int, y1: int, x0: int, x1: int, shape: tuple[int, int] = (40, 60)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_a_prediction_is_scored_against_the_person_its_box_found_whatever_its_mask():
    people = [_rect(5, 35, 5, 20), _rect(5, 35, 35, 55)]
    gt_boxes = np.array([[5, 5, 15, 30], [35, 5, 20, 30]], np.float32)
    # 0: a good mask of person 0; 1: person 1's box, but a mask of a sliver of them (IoU 0.1);
    # 2: a box between the two that finds nobody; 3: a duplicate of person 0, half its mask
    masks = [_rect(5, 35, 5, 19), _rect(5, 35, 35, 37), _rect(5, 35, 22, 33), _rect(5, 20, 5, 20)]
    pred_boxes = np.array([[5, 5, 14, 30], [35, 5, 20, 30], [22, 5, 11, 30], [5, 5, 15, 30]], np.float32)
    mask_ious = np.asarray(mask_utils.iou([_rle(m) for m in masks], [_rle(p) for p in people], [0, 0]))
    ious = box_matched_ious(pred_boxes, gt_boxes, mask_ious)
    assert ious.shape == (4,)
    assert abs(ious[0] - 14 / 15) < 1e-9
    assert abs(ious[1] - 2 / 20) < 1e-9  # a bad mask of a found person keeps its low IoU
    assert np.isnan(ious[2])  # no truth to compare with
    assert ious[3] == 0.5  # a duplicate is scored against the person it repeats
    # the same threshold as the recall figures: person 1 is found by box, not by mask
    boxed, masked = people_found(gt_boxes, [_rle(p) for p in people], pred_boxes, [_rle(m) for m in masks])
    assert boxed.tolist() == [True, True] and masked.tolist() == [True, False]


def test_nothing_to_match_gives_nan_for_every_prediction():
    box = np.array([[0, 0, 10, 10]], np.float32)
    assert np.isnan(box_matched_ious(box, np.zeros((0, 4), np.float32), np.zeros((1, 0)))).all()
    assert box_matched_ious(np.zeros((0, 4), np.float32), box, np.zeros((0, 1))).shape == (0,)
