"""Person records from COCO-format datasets, and the rules every reader shares (tasks in pipeline/persons.py).

    coco_person_records(root, annotation_file, image_dir, dataset, split, filt, tally) -> records
        the kept person instances of a COCO-format file, in two streaming passes (lib/json_stream.py)
    index_coco_annotations(path, tally, count_persons) -> COCOIndex   pass 1: images, person category ids
    PersonFilter        which instances are kept (luigi.cfg [persons])
    Tally               kept count, skip reasons and the problems behind them (summary.json)
    PoseCheck / pose_problem(kps, mask, check)   when an estimated pose is trusted for an instance mask

Each reader yields persons.jsonl records (the format is documented once, in lib/records.py).
Problems are reported as ``{file, record, reason}`` and counted by reason; nothing is silently
dropped. Readers whose keypoints are estimated (VOC, ``keypoints = estimate``) are in
lib/estimated_poses.py.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.sample import outside_image
from pipeline.lib.files import resolve_inside
from pipeline.lib.json_stream import JSONObjectStream, MalformedJSONError

log = logging.getLogger("posemask.persons")
# A box this many image sizes across is no person in the image (it would crop the whole photo).
MAX_BOX_REACH = 4


@dataclass
class PersonFilter:
    """Which person instances are kept (luigi.cfg [persons])."""

    min_keypoints: int = 8
    min_area: float = 4096.0
    single_person_only: bool = False


@dataclass
class Tally:
    """Kept count, skip reasons and the problems behind them (for summary.json)."""

    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    problems: list[dict] = field(default_factory=list)
    max_problems: int = 1000  # a summary must stay readable on a 260k-record split

    def skip(self, reason: str, file: str, record: object, detail: str = "") -> None:
        self.skipped[reason] += 1
        self._note("skipped", reason, file, record, detail)

    def filtered(self, reason: str) -> None:
        """An instance the filters leave out (crowd, too small, too few keypoints): counted, not a problem."""
        self.skipped[reason] += 1

    def warn(self, reason: str, file: str, record: object, detail: str = "") -> None:
        self.warnings[reason] += 1
        self._note("warning", reason, file, record, detail)

    def _note(self, kind: str, reason: str, file: str, record: object, detail: str) -> None:
        log.warning("%s %s: file=%s record=%s %s", kind, reason, file, record, detail)
        if len(self.problems) < self.max_problems:
            self.problems.append({"kind": kind, "reason": reason, "file": file, "record": record, "detail": detail})

    def to_dict(self) -> dict:
        return {
            "kept": self.kept,
            "skipped": dict(self.skipped),
            "skipped_total": sum(self.skipped.values()),
            "warnings": dict(self.warnings),
            "problems": self.problems,
        }


def _person_category_ids(categories: object) -> set[int]:
    cats = categories if isinstance(categories, list) and categories else [{"id": 1, "name": "person"}]
    ids = set()
    for c in cats:
        if isinstance(c, dict) and c.get("name") == "person":
            with contextlib.suppress(KeyError, TypeError, ValueError):
                ids.add(int(c["id"]))
    return ids or {1}


def _as_id(value: object) -> int | None:
    """An annotation's integer id (image_id, category_id), or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


@dataclass
class COCOIndex:
    """What pass 1 keeps of a COCO annotation file: a compact image table and per-image counts.

    images: image id -> (file_name, height, width) as found (validated per record later).
    persons_per_image: (category id, image id) -> non-crowd annotations with keypoints (only
    collected for single_person_only; categories come after annotations in COCO's files).
    """

    images: dict[int, tuple[object, object, object]]
    person_ids: set[int]
    persons_per_image: Counter


def index_coco_annotations(ann_path: Path, tally: Tally, count_persons: bool, chunk_chars: int = 1 << 20) -> COCOIndex:
    """Pass 1 over a COCO annotation file: images, person category ids and (optionally) persons per image."""
    images: dict[int, tuple[object, object, object]] = {}
    categories: object = None
    counts: Counter = Counter()
    stream = JSONObjectStream(ann_path, chunk_chars)
    for key, index, item in stream.items({"images", "annotations"}):
        if key == "images" and index is not None:
            image_id = _as_id(item.get("id")) if isinstance(item, dict) else None
            if image_id is None:
                tally.skip("malformed_image_record", str(ann_path), item, "image entry without a usable id")
                continue
            images[image_id] = (item.get("file_name", ""), item.get("height"), item.get("width"))
        elif key == "annotations" and index is not None and count_persons and isinstance(item, dict):
            countable = not item.get("iscrowd", 0) and _as_id(item.get("num_keypoints")) not in (None, 0)
            if countable:
                counts[(_as_id(item.get("category_id")), _as_id(item.get("image_id")))] += 1
        elif key == "categories":
            categories = item
    for key in ("images", "annotations"):
        if key not in stream.arrays:
            raise MalformedJSONError(f"malformed annotation JSON in {ann_path}: no {key!r} list")
    return COCOIndex(images, _person_category_ids(categories), counts)


def coco_person_records(
    root: Path,
    annotation_file: str,
    image_dir: str,
    dataset: str,
    split: str,
    filt: PersonFilter,
    tally: Tally,
    chunk_chars: int = 1 << 20,
) -> Iterator[dict]:
    """Yield the kept person records of a COCO-format dataset; count every skip in `tally`.

    Two streaming passes over the annotation file (JSONObjectStream): the first keeps a compact
    image table, the second turns annotations into records one at a time, in the file's
    annotation order. Memory: the image table (~100 bytes per image) and one annotation, never the
    parsed file. `chunk_chars`: characters read per buffer refill.
    """
    ann_path = resolve_inside(root, annotation_file)
    index = index_coco_annotations(ann_path, tally, filt.single_person_only, chunk_chars)
    image_root = resolve_inside(root, image_dir)
    root_resolved = root.resolve()
    # image id -> (relative path, None) or (None, (reason, file, detail)); resolved once per image
    resolved: dict[int, tuple[str | None, tuple[str, str, str] | None]] = {}
    for key, position, ann in JSONObjectStream(ann_path, chunk_chars).items({"images", "annotations"}):
        # images are streamed (never held as one list) and skipped: pass 1 indexed them
        if key != "annotations" or position is None or not isinstance(ann, dict):
            continue
        if _as_id(ann.get("category_id")) not in index.person_ids:
            continue
        image_id = _as_id(ann.get("image_id"))
        im = index.images.get(image_id) if image_id is not None else None
        if im is None:
            detail = f"image_id {ann.get('image_id')} not in images"
            tally.skip("unknown_image_id", str(ann_path), ann.get("id"), detail)
            continue
        if image_id not in resolved:
            resolved[image_id] = _resolve_image(image_root, root_resolved, str(im[0]))
        rel_path, problem = resolved[image_id]
        if problem is not None:
            tally.skip(problem[0], problem[1], ann.get("id"), problem[2])
            continue
        if filt.single_person_only and sum(index.persons_per_image[(c, image_id)] for c in index.person_ids) > 1:
            tally.filtered("multi_person_image")
            continue
        image = {"id": image_id, "file_name": im[0], "height": im[1], "width": im[2]}
        record = _coco_record(ann, image, Path(rel_path), dataset, split, filt, tally)
        if record is not None:
            tally.kept += 1
            yield record


def _resolve_image(image_root: Path, root: Path, file_name: str) -> tuple[str | None, tuple[str, str, str] | None]:
    """(POSIX path relative to the dataset root, None), or (None, (skip reason, file, detail))."""
    try:
        path = resolve_inside(image_root, file_name)
    except ValueError as e:
        return None, ("unsafe_path", file_name, str(e))
    if not path.is_file():
        return None, ("missing_image", str(path), "image file not found")
    return path.relative_to(root).as_posix(), None


def _coco_record(
    ann: dict, im: dict, rel_path: Path, dataset: str, split: str, filt: PersonFilter, tally: Tally
) -> dict | None:
    """Validate one COCO annotation; return its record or None (skip counted in `tally`)."""
    ann_id = ann.get("id")
    file_name = str(rel_path)
    if ann.get("iscrowd", 0):
        tally.filtered("iscrowd")
        return None
    try:
        instance_id = int(ann["id"])
        height, width = int(im["height"]), int(im["width"])
        kps = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        bbox = [float(v) for v in ann["bbox"]]
        segmentation = ann["segmentation"]
    except (KeyError, TypeError, ValueError) as e:
        tally.skip("malformed_record", file_name, ann_id, f"{type(e).__name__}: {e}")
        return None
    if len(bbox) != 4 or not np.isfinite(bbox).all() or bbox[2] <= 0 or bbox[3] <= 0:
        tally.skip("malformed_record", file_name, ann_id, f"bad bbox {bbox}")
        return None
    try:  # after the bbox check: the default is its area (a short bbox raised IndexError here)
        area = float(ann["area"]) if "area" in ann else bbox[2] * bbox[3]
    except (TypeError, ValueError) as e:
        tally.skip("malformed_record", file_name, ann_id, f"{type(e).__name__}: {e}")
        return None
    if not np.isfinite(area):
        tally.skip("malformed_record", file_name, ann_id, f"bad area {area}")
        return None
    x, y, w, h = bbox
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height or max(w, h) > MAX_BOX_REACH * max(width, height):
        tally.skip("malformed_record", file_name, ann_id, f"bbox {bbox} misses a {width}x{height} image")
        return None
    labelled = kps[:, 2] > 0
    outside = labelled & outside_image(kps, height, width)
    if outside.any():
        tally.warn("keypoint_outside_image", file_name, ann_id, f"keypoints {np.flatnonzero(outside).tolist()} dropped")
        kps[outside] = 0.0
    if int((kps[:, 2] > 0).sum()) < filt.min_keypoints:
        tally.filtered("too_few_keypoints")
        return None
    if area < filt.min_area:
        tally.filtered("too_small")
        return None
    return {
        "dataset": dataset,
        "split": split,
        "image": rel_path.as_posix(),
        "image_id": int(im["id"]),
        "instance_id": instance_id,
        "height": height,
        "width": width,
        "bbox": bbox,
        "keypoints": kps.reshape(-1).tolist(),
        "mask": {"type": "coco", "segmentation": segmentation},
    }


@dataclass
class PoseCheck:
    """When an estimated pose is trusted for a VOC instance (luigi.cfg [voc_pose])."""

    min_joints: int = 8
    min_on_mask: float = 0.7  # fraction of the estimated joints that must fall on the mask
    mask_dilation_px: int = 7  # joints on thin limbs sit on the mask's edge


def pose_problem(kps: np.ndarray, mask: np.ndarray, check: PoseCheck) -> tuple[str, str] | None:
    """Why an estimated pose is not trusted for an instance mask, or None when it is.

    kps: (17, 3) COCO keypoints; mask: (H, W) uint8. Reasons: "too_few_keypoints" (fewer than
    check.min_joints), "pose_off_mask" (fewer than check.min_on_mask of them on the dilated mask).
    """
    import cv2

    vis = kps[:, 2] > 0
    if vis.sum() < check.min_joints:
        return "too_few_keypoints", f"{int(vis.sum())} joints estimated"
    kernel = np.ones((2 * check.mask_dilation_px + 1,) * 2, np.uint8)
    near = cv2.dilate(mask, kernel)
    h, w = mask.shape
    xi = np.clip(np.round(kps[vis, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.round(kps[vis, 1]).astype(int), 0, h - 1)
    on_mask = float(near[yi, xi].mean())
    if on_mask < check.min_on_mask:
        return "pose_off_mask", f"{on_mask:.2f} of joints on the mask"
    return None
