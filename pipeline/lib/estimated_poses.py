"""Person records whose keypoints are estimated: VOC-format datasets, and COCO-format ones without keypoints.

    voc_person_records(root, split, estimate, check, filt, tally, progress) -> records
        every person instance of a VOC 2012 split (SegmentationObject / SegmentationClass), with the
        keypoints `estimate` finds on its box when annotations.pose_problem trusts them on its mask
    with_estimated_keypoints(records, root, estimate, check, tally) -> records
        the same rule for the records of a dataset configured with ``keypoints = estimate``
    estimated_pose(image, mask, bbox, estimate, check) -> (keypoints, None) | (None, (reason, detail))
        the rule itself, for one instance

estimate(image_rgb (H,W,3) uint8, bbox xywh) -> (17,3) COCO keypoints or None. Records are
persons.jsonl's (lib/records.py); skips are counted in an annotations.Tally by reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from models.sample import VOC_VOID, voc_person_instances
from pipeline.lib.annotations import PersonFilter, PoseCheck, Tally, pose_problem
from pipeline.lib.files import resolve_inside
from pipeline.lib.images import read_rgb
from pipeline.lib.records import RecordError, read_palette_png, record_mask

VOC_DIR = "VOCdevkit/VOC2012"


def estimated_pose(
    image: np.ndarray,
    mask: np.ndarray,
    bbox: list[float],
    estimate: Callable[[np.ndarray, list[float]], np.ndarray | None],
    check: PoseCheck,
) -> tuple[np.ndarray | None, tuple[str, str] | None]:
    """(17,3) keypoints estimated on `bbox` and trusted on `mask`, or (None, (skip reason, detail)):
    "pose_not_found", or pose_problem's reasons. The rule of VOC and of every `keypoints = estimate` dataset."""
    kps = estimate(image, bbox)
    if kps is None:
        return None, ("pose_not_found", "")
    kps = np.asarray(kps, np.float32).reshape(17, 3)
    problem = pose_problem(kps, mask, check)
    return (None, problem) if problem is not None else (kps, None)


def _voc_image(voc: Path, image_id: str, tally: Tally) -> tuple[Path, Path, np.ndarray, list] | None:
    """(jpg, object png, image, person instances) of one VOC image, or None (skip counted in tally)."""
    try:
        jpg = resolve_inside(voc / "JPEGImages", f"{image_id}.jpg")
        obj_png = resolve_inside(voc / "SegmentationObject", f"{image_id}.png")
        cls_png = resolve_inside(voc / "SegmentationClass", f"{image_id}.png")
    except ValueError as e:
        tally.skip("unsafe_path", image_id, image_id, str(e))
        return None
    missing = [p for p in (jpg, obj_png, cls_png) if not p.is_file()]
    if missing:
        tally.skip("missing_image", str(missing[0]), image_id, "file not found")
        return None
    image = read_rgb(jpg)
    if image is None:
        tally.skip("corrupt_image", str(jpg), image_id, "cannot decode")
        return None
    try:
        instances = voc_person_instances(read_palette_png(obj_png), read_palette_png(cls_png))
    except (OSError, ValueError) as e:
        tally.skip("corrupt_mask", str(obj_png), image_id, str(e))
        return None
    if not instances:
        tally.warnings["image_without_person"] += 1
        return None
    if instances[0][1].shape != image.shape[:2]:
        tally.skip("size_mismatch", str(obj_png), image_id, f"mask {instances[0][1].shape} vs image {image.shape[:2]}")
        return None
    return jpg, obj_png, image, instances


def voc_person_records(
    root: Path,
    split: str,
    estimate: Callable[[np.ndarray, list[float]], np.ndarray | None],
    check: PoseCheck,
    filt: PersonFilter,
    tally: Tally,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict]:
    """Yield person records of a VOC-format dataset with keypoints from `estimate`.

    estimate(image_rgb (H,W,3) uint8, bbox xywh) -> (17,3) COCO keypoints or None. A pose is kept
    when `pose_problem` finds nothing wrong with it.
    """
    voc = resolve_inside(root, VOC_DIR)
    list_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        raise FileNotFoundError(f"VOC split list not found: {list_file}")
    ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    for n, image_id in enumerate(ids):
        if progress:
            progress(n, len(ids))
        found = _voc_image(voc, image_id, tally)
        if found is None:
            continue
        try:
            numeric_id = int(image_id.replace("_", ""))  # 2011_000003 -> 2011000003: ids stay integers
        except ValueError:
            tally.skip("malformed_record", str(list_file), image_id, "VOC image ids are digits and underscores")
            continue
        yield from _voc_image_records(root, split, image_id, numeric_id, found, estimate, check, filt, tally)


def _voc_image_records(
    root: Path,
    split: str,
    image_id: str,
    numeric_id: int,
    found: tuple[Path, Path, np.ndarray, list],
    estimate: Callable[[np.ndarray, list[float]], np.ndarray | None],
    check: PoseCheck,
    filt: PersonFilter,
    tally: Tally,
) -> Iterator[dict]:
    """The kept records of one VOC image: `found` is _voc_image's (jpg, object png, image, instances)."""
    jpg, obj_png, rgb, instances = found
    h, w = rgb.shape[:2]
    for inst, mask in instances:
        rec_id = f"{image_id}#{inst}"
        ys, xs = np.nonzero(mask)
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        if mask.sum() < filt.min_area:
            tally.filtered("too_small")
            continue
        kps, problem = estimated_pose(rgb, mask, bbox, estimate, check)
        if problem is not None:
            tally.skip(problem[0], str(jpg), rec_id, problem[1])
            continue
        tally.kept += 1
        yield {
            "dataset": "voc",
            "split": split,
            "image": jpg.relative_to(root.resolve()).as_posix(),
            "image_id": numeric_id,
            "instance_id": numeric_id * 1000 + inst,
            "name": rec_id,
            "height": h,
            "width": w,
            "bbox": bbox,
            "keypoints": kps.reshape(-1).tolist(),
            "mask": {
                "type": "voc",
                "object_png": obj_png.relative_to(root.resolve()).as_posix(),
                "instance": inst,
                "void_value": VOC_VOID,
            },
        }


def with_estimated_keypoints(
    records: Iterator[dict],
    root: Path,
    estimate: Callable[[np.ndarray, list[float]], np.ndarray | None],
    check: PoseCheck,
    tally: Tally,
) -> Iterator[dict]:
    """Records of a dataset without keypoints, each with keypoints estimated on its box (the VOC rule).

    `records`: coco_person_records' output (read with min_keypoints = 0); each yielded record gets
    the estimated COCO-17 `keypoints` and ``"keypoints_source": "estimated"``. A pose is kept when
    `pose_problem` finds nothing wrong with it against the record's own mask; otherwise the record
    is skipped under that reason (and "pose_not_found", "corrupt_image", "bad_mask"), counted in
    `tally`: the reader counted each record as kept, so a record dropped here moves from `kept` to
    its skip reason. A photo's people follow each other in COCO files: an image is decoded once for them.
    """

    def drop(reason: str, file: str, record: object, detail: str = "") -> None:
        tally.kept -= 1
        tally.skip(reason, file, record, detail)

    last_path: str | None = None
    image: np.ndarray | None = None
    for record in records:
        if record["image"] != last_path:
            last_path = record["image"]
            image = read_rgb(root / record["image"])
        if image is None:
            drop("corrupt_image", record["image"], record["instance_id"], "cannot decode image")
            continue
        try:
            mask = record_mask(record, root)
        except RecordError as e:
            drop(e.reason, record["image"], record["instance_id"], str(e))
            continue
        if mask.shape != image.shape[:2]:
            drop("size_mismatch", record["image"], record["instance_id"], f"mask {mask.shape} vs {image.shape}")
            continue
        kps, problem = estimated_pose(image, mask, record["bbox"], estimate, check)
        if problem is not None:
            drop(problem[0], record["image"], record["instance_id"], problem[1])
            continue
        yield {**record, "keypoints": kps.reshape(-1).tolist(), "keypoints_source": "estimated"}
