"""Person records from COCO-format and VOC-format datasets (plain functions; tasks in data.py).

A record is one person instance, JSON-ready:
``{dataset, split, image (path relative to the dataset root), image_id, instance_id, height,
width, bbox [x,y,w,h], keypoints (51 COCO numbers), mask {type, ...}}``.
Problems are reported as ``{file, record, reason}`` and counted by reason; nothing is silently
dropped.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from models.masks import VOC_VOID, voc_person_instances
from pipeline.core import resolve_inside

log = logging.getLogger("posemask.persons")


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


def load_annotation_json(path: Path) -> dict:
    """Read a COCO-format annotation file, with a clear error naming it when it is malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"malformed annotation JSON in {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"malformed annotation JSON in {path}: no 'images' list")
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"malformed annotation JSON in {path}: no 'annotations' list")
    return data


def _person_category_ids(data: dict) -> set[int]:
    cats = data.get("categories") or [{"id": 1, "name": "person"}]
    return {int(c["id"]) for c in cats if c.get("name") == "person"} or {1}


def coco_person_records(
    root: Path, annotation_file: str, image_dir: str, dataset: str, split: str, filt: PersonFilter, tally: Tally
) -> Iterator[dict]:
    """Yield the kept person records of a COCO-format dataset; count every skip in `tally`."""
    ann_path = resolve_inside(root, annotation_file)
    data = load_annotation_json(ann_path)
    person_ids = _person_category_ids(data)
    images: dict[int, dict] = {}
    for im in data["images"]:
        try:
            images[int(im["id"])] = im
        except (KeyError, TypeError, ValueError):
            tally.skip("malformed_image_record", str(ann_path), im, "image entry without a usable id")
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or ann.get("category_id") not in person_ids:
            continue
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    del data  # the per-image index is all that is needed from here on
    image_root = resolve_inside(root, image_dir)
    for image_id, anns in by_image.items():
        im = images.get(image_id)
        if im is None:
            for ann in anns:
                tally.skip("unknown_image_id", str(ann_path), ann.get("id"), f"image_id {image_id} not in images")
            continue
        file_name = str(im.get("file_name", ""))
        try:
            path = resolve_inside(image_root, file_name)
        except ValueError as e:
            for ann in anns:
                tally.skip("unsafe_path", file_name, ann.get("id"), str(e))
            continue
        if not path.is_file():
            for ann in anns:
                tally.skip("missing_image", str(path), ann.get("id"), "image file not found")
            continue
        countable = [a for a in anns if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0]
        if filt.single_person_only and len(countable) > 1:
            for _ in anns:
                tally.filtered("multi_person_image")
            continue
        for ann in anns:
            record = _coco_record(ann, im, path.relative_to(root.resolve()), dataset, split, filt, tally)
            if record is not None:
                tally.kept += 1
                yield record


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
        height, width = int(im["height"]), int(im["width"])
        kps = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        bbox = [float(v) for v in ann["bbox"]]
        segmentation = ann["segmentation"]
        area = float(ann.get("area", bbox[2] * bbox[3]))
    except (KeyError, TypeError, ValueError) as e:
        tally.skip("malformed_record", file_name, ann_id, f"{type(e).__name__}: {e}")
        return None
    if len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
        tally.skip("malformed_record", file_name, ann_id, f"bad bbox {bbox}")
        return None
    labelled = kps[:, 2] > 0
    outside = labelled & ((kps[:, 0] < 0) | (kps[:, 1] < 0) | (kps[:, 0] >= width) | (kps[:, 1] >= height))
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
        "instance_id": int(ann_id),
        "height": height,
        "width": width,
        "bbox": bbox,
        "keypoints": kps.reshape(-1).tolist(),
        "mask": {"type": "coco", "segmentation": segmentation},
    }


VOC_DIR = "VOCdevkit/VOC2012"


def read_palette_png(path: Path) -> np.ndarray:
    """A VOC palette PNG as its (H,W) index array (never the RGB rendering)."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette PNG, got mode {im.mode}")
        return np.array(im)


@dataclass
class PoseCheck:
    """When an estimated pose is trusted for a VOC instance (luigi.cfg [voc_pose])."""

    min_joints: int = 8
    min_on_mask: float = 0.7  # fraction of the estimated joints that must fall on the mask
    mask_dilation_px: int = 7  # joints on thin limbs sit on the mask's edge


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

    estimate(image_rgb (H,W,3) uint8, bbox xywh) -> (17,3) COCO keypoints or None.
    """
    import cv2

    voc = resolve_inside(root, VOC_DIR)
    list_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        raise FileNotFoundError(f"VOC split list not found: {list_file}")
    ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    kernel = np.ones((2 * check.mask_dilation_px + 1,) * 2, np.uint8)
    for n, image_id in enumerate(ids):
        if progress:
            progress(n, len(ids))
        try:
            jpg = resolve_inside(voc / "JPEGImages", f"{image_id}.jpg")
            obj_png = resolve_inside(voc / "SegmentationObject", f"{image_id}.png")
            cls_png = resolve_inside(voc / "SegmentationClass", f"{image_id}.png")
        except ValueError as e:
            tally.skip("unsafe_path", image_id, image_id, str(e))
            continue
        missing = [p for p in (jpg, obj_png, cls_png) if not p.is_file()]
        if missing:
            tally.skip("missing_image", str(missing[0]), image_id, "file not found")
            continue
        bgr = cv2.imread(str(jpg), cv2.IMREAD_COLOR)
        if bgr is None:
            tally.skip("corrupt_image", str(jpg), image_id, "cannot decode")
            continue
        try:
            instances = voc_person_instances(read_palette_png(obj_png), read_palette_png(cls_png))
        except (OSError, ValueError) as e:
            tally.skip("corrupt_mask", str(obj_png), image_id, str(e))
            continue
        if not instances:
            tally.warnings["image_without_person"] += 1
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        numeric_id = int(image_id.replace("_", ""))  # 2011_000003 -> 2011000003: ids stay integers
        for inst, mask in instances:
            rec_id = f"{image_id}#{inst}"
            ys, xs = np.nonzero(mask)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            if mask.sum() < filt.min_area:
                tally.filtered("too_small")
                continue
            kps = estimate(rgb, bbox)
            if kps is None:
                tally.skip("pose_not_found", str(jpg), rec_id)
                continue
            kps = np.asarray(kps, np.float32).reshape(17, 3)
            vis = kps[:, 2] > 0
            if vis.sum() < check.min_joints:
                tally.skip("too_few_keypoints", str(jpg), rec_id, f"{int(vis.sum())} joints estimated")
                continue
            near = cv2.dilate(mask, kernel)
            xi = np.clip(np.round(kps[vis, 0]).astype(int), 0, w - 1)
            yi = np.clip(np.round(kps[vis, 1]).astype(int), 0, h - 1)
            on_mask = float(near[yi, xi].mean())
            if on_mask < check.min_on_mask:
                tally.skip("pose_off_mask", str(jpg), rec_id, f"{on_mask:.2f} of joints on the mask")
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
