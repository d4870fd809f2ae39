"""Property tests (hypothesis) of the geometry and fuzz tests of the readers.

Geometry: keypoint conversion, crop and its inverse, pose map, prior, boxes and polygons never
yield NaN, never crash and never cover the whole image from a degenerate input. Readers: the
segmentation decoder, the COCO annotation reader and the keypoint files fail only with their
documented, named errors, whatever the JSON holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.sample.crop import box_around, crop_affine, paste_back, warp_points
from models.sample.keypoints import coco17_to_joints14, joints_inside
from models.sample.masks import coco_instance_mask
from models.sample.sample import CropConfig, person_sample
from pipeline.lib.annotations import PersonFilter, Tally, coco_person_records
from pipeline.lib.json_stream import MalformedJSONError
from pipeline.lib.keypoint_files import load_keypoint_file

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=32)
COORD = st.floats(-1e6, 1e6, allow_nan=False, width=32)
SMALL = CropConfig(size=32)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def keypoints17(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(st.tuples(values, values, st.sampled_from([0, 1, 2, -1, 5])), min_size=17, max_size=17).map(
        lambda rows: np.asarray(rows, np.float32)
    )


@FAST
@given(keypoints17(ANY_FLOAT), st.integers(1, 400), st.integers(1, 400))
def test_keypoint_conversion_never_yields_nan_and_keeps_joints_on_the_image(kps, height, width) -> None:
    with np.errstate(all="ignore"):
        joints, _ = coco17_to_joints14(kps)
        inside = joints_inside(joints, height, width)
    visible = inside[:, 2] > 0
    assert np.isfinite(inside[visible, :2]).all()
    assert (inside[visible, 0] >= 0).all() and (inside[visible, 0] < width).all()
    assert (inside[visible, 1] >= 0).all() and (inside[visible, 1] < height).all()
    assert (inside[~visible] == 0).all()


@FAST
@given(COORD, COORD, st.floats(0.5, 5000), st.floats(0.5, 5000), st.floats(0.0, 0.5))
def test_crop_and_its_inverse_round_trip(x, y, w, h, margin) -> None:
    affine = crop_affine([x, y, w, h], margin, 64)
    assert np.isfinite(affine).all()
    centre = np.array([[x + w / 2, y + h / 2, 2.0]], np.float32)
    moved = warp_points(centre, affine)
    # continuous coordinates (pixel i covers [i, i + 1)): the box centre is the crop's centre
    np.testing.assert_allclose(moved[0, :2], [32.0, 32.0], atol=1e-3 * max(1.0, abs(x) + abs(y)) + 0.05)
    back = cv2.invertAffineTransform(affine.astype(np.float64)) @ np.array([*moved[0, :2], 1.0])
    np.testing.assert_allclose(back, centre[0, :2], rtol=1e-4, atol=1e-2 * max(1.0, w, h))


@FAST
@given(
    keypoints17(st.floats(-100, 200, allow_nan=False, width=32)),
    st.tuples(st.floats(-50, 150), st.floats(-50, 150), st.floats(1, 300), st.floats(1, 300)),
)
def test_a_sample_from_any_skeleton_is_finite_and_its_prior_never_fills_the_crop(kps, box) -> None:
    image = np.full((96, 128, 3), 90, np.uint8)
    sample = person_sample(image, None, kps, np.asarray(box, np.float32), SMALL)
    assert np.isfinite(sample["affine"]).all() and np.isfinite(sample["joints"]).all()
    prior = sample["prior"] / 255.0
    assert prior.min() > 0 and prior.max() < 1
    assert (prior >= 0.5).mean() < 0.95  # a skeleton is never the whole crop
    if not (sample["joints"][:, 2] > 0).any():
        assert prior.max() < 0.05 and sample["posemap"].max() == 0  # no joint: no body at all


@FAST
@given(st.floats(0, 1), st.integers(8, 64), st.integers(8, 64))
def test_paste_back_stays_in_range_and_empty_outside_the_crop(value, height, width) -> None:
    affine = crop_affine([width / 4, height / 4, width / 2, height / 2], 0.0, 16)
    full = paste_back(np.full((16, 16), value, np.float32), affine, (height, width))
    assert full.shape == (height, width) and np.isfinite(full).all()
    assert full.min() >= 0 and full.max() <= max(value, 0) + 1e-6
    assert full[0, 0] == 0 and full[-1, -1] == 0


@FAST
@given(
    st.tuples(COORD, COORD, st.floats(0, 1e6), st.floats(0, 1e6)),
    st.lists(st.tuples(COORD, COORD, st.just(2.0)), min_size=14, max_size=14),
)
def test_box_around_contains_the_box_and_every_joint(box, joints) -> None:
    joints = np.asarray(joints, np.float32)
    x, y, w, h = box_around(box, joints)
    assert np.isfinite([x, y, w, h]).all() and w >= 0 and h >= 0
    assert x <= box[0] + 1e-2 * abs(box[0]) + 1e-3 and y <= box[1] + 1e-2 * abs(box[1]) + 1e-3


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | ANY_FLOAT | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@FAST
@given(JSONISH | st.lists(st.lists(ANY_FLOAT, max_size=10), max_size=3), st.integers(-2, 50), st.integers(-2, 50))
def test_any_segmentation_is_a_mask_or_a_value_error(segmentation, height, width) -> None:
    try:
        mask = coco_instance_mask(segmentation, height, width)
    except ValueError:
        return
    assert mask.shape == (height, width) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}


ANNOTATION = st.fixed_dictionaries(
    {},
    optional={
        "id": JSONISH,
        "image_id": st.sampled_from([1, 2, "1", None, 1.5]),
        "category_id": st.sampled_from([1, 2, "1", None]),
        "iscrowd": st.sampled_from([0, 1, None, "x"]),
        "keypoints": st.lists(st.integers(0, 80), min_size=51, max_size=51) | JSONISH,
        "num_keypoints": JSONISH,
        "bbox": st.lists(ANY_FLOAT, max_size=5) | JSONISH,
        "area": ANY_FLOAT | JSONISH,
        "segmentation": JSONISH | st.just([[1, 1, 40, 1, 40, 60, 1, 60]]),
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ANNOTATION, max_size=6), st.sampled_from([64, "64", None, -3, 1e9]))
def test_the_coco_reader_skips_and_counts_whatever_an_annotation_holds(tmp_path: Path, annotations, height) -> None:
    images_dir = tmp_path / "images"
    images_dir.mkdir(exist_ok=True)
    cv2.imwrite(str(images_dir / "a.jpg"), np.full((64, 80, 3), 128, np.uint8))
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": height, "width": 80}, {"id": 2, "file_name": "../x.jpg"}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    tally = Tally()
    records = list(coco_person_records(tmp_path, "ann.json", "images", "fuzz", "val", PersonFilter(0, 0.0), tally))
    assert tally.kept == len(records)
    for record in records:
        assert np.isfinite(record["bbox"]).all() and len(record["keypoints"]) == 51


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JSONISH)
def test_keypoint_files_fail_only_with_value_errors(tmp_path: Path, content) -> None:
    path = tmp_path / "kp.json"
    path.write_text(json.dumps(content))
    try:
        index = load_keypoint_file(path)
    except ValueError:
        return
    keys = index.keys()  # a list (KeypointIndex is no dict)
    for key in keys:
        _, people = index.lookup(key.split(":", 1)[1])
        for person in people:
            assert np.isfinite(person.keypoints).all()


def test_a_truncated_annotation_file_is_the_named_error(tmp_path: Path) -> None:
    path = tmp_path / "ann.json"
    path.write_text('{"images": [], "annotations": [{"id": 1, "bbox": [1, 2')
    try:
        list(coco_person_records(tmp_path, "ann.json", ".", "fuzz", "val", PersonFilter(), Tally()))
    except MalformedJSONError as error:
        assert "ann.json" in str(error)
    else:
        raise AssertionError("a truncated file must be a MalformedJSONError")


def test_a_short_bbox_with_an_area_is_a_malformed_record(tmp_path: Path) -> None:
    """Found by the property test above: bbox [] with an area given raised IndexError."""
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((64, 80, 3), 128, np.uint8))
    annotation = {"id": 5, "image_id": 1, "category_id": 1, "keypoints": [0] * 51, "bbox": [], "area": 0.0}
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 64, "width": 80}],
        "annotations": [dict(annotation, segmentation=[[1, 1, 40, 1, 40, 60, 1, 60]])],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    tally = Tally()
    assert list(coco_person_records(tmp_path, "ann.json", "images", "fuzz", "val", PersonFilter(0, 0.0), tally)) == []
    assert tally.skipped == {"malformed_record": 1}
