"""Person records from COCO-format and VOC-format datasets (plain functions; tasks in pipeline/persons.py).

Each reader yields persons.jsonl records (the format is documented once, in lib/records.py).
Problems are reported as ``{file, record, reason}`` and counted by reason; nothing is silently
dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.sample import VOC_VOID, outside_image, voc_person_instances
from pipeline.lib.files import resolve_inside
from pipeline.lib.images import read_rgb
from pipeline.lib.records import RecordError, read_palette_png, record_mask

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


class MalformedJSONError(ValueError):
    """A JSON file that does not parse, or lacks the structure a COCO annotation file needs."""


JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
JSON_DELIMITERS = frozenset(" \t\n\r,]}:")
_DECODER = json.JSONDecoder()


class JSONObjectStream:
    """Reads a JSON file whose top level is an object, holding one array item at a time.

    ``items(stream_keys)`` yields ``(key, index, item)`` for every item of the top-level arrays
    named in `stream_keys` and ``(key, None, value)`` for every other top-level value, in file
    order. Each value is parsed by the C decoder (``json.JSONDecoder.raw_decode``) from a text
    buffer refilled `chunk_chars` at a time, so memory holds one item plus one buffer, not the file.
    Errors raise MalformedJSONError naming the file.
    """

    def __init__(self, path: Path, chunk_chars: int = 1 << 20) -> None:
        self.path, self.chunk_chars = Path(path), chunk_chars
        self.buf, self.pos, self.eof = "", 0, False
        self._file = None
        #: the stream keys whose value was an array (possibly empty), as read so far
        self.arrays: set[str] = set()

    def _error(self, reason: str) -> MalformedJSONError:
        return MalformedJSONError(f"malformed annotation JSON in {self.path}: {reason}")

    def _fill(self, chars: int) -> bool:
        """Append up to `chars` characters to the buffer (dropping what was consumed); False at EOF."""
        chunk = self._file.read(chars)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def _peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file), not consumed."""
        while True:
            self.pos = JSON_WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self._fill(self.chunk_chars):
                return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def _expect(self, chars: str, where: str) -> str:
        c = self._peek()
        if c == "" or c not in chars:
            raise self._error(f"expected {' or '.join(repr(x) for x in chars)} {where}, found {c or 'end of file'!r}")
        self.pos += 1
        return c

    def _value(self) -> object:
        """Decode the next JSON value; a value cut by the buffer's end is retried with more text."""
        grow = self.chunk_chars
        while True:
            self._peek()
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self._fill(grow):
                    grow *= 2  # an item longer than the buffer: read more at each retry
                    continue
                raise self._error(str(e)) from None
            # A number cut by the buffer's end ("6." of "6.75") still decodes: a scalar counts only
            # when a delimiter follows it (or the file ends).
            cut = end == len(self.buf) or self.buf[end] not in JSON_DELIMITERS
            if cut and not isinstance(value, dict | list | str) and not self.eof and self._fill(grow):
                grow *= 2
                continue
            self.pos = end
            return value

    def items(self, stream_keys: frozenset[str] | set[str] = frozenset()) -> Iterator[tuple[str, int | None, object]]:
        try:
            self._file = open(self.path, encoding="utf-8")  # noqa: SIM115 - closed in finally
        except FileNotFoundError:
            raise FileNotFoundError(f"annotation file not found: {self.path}") from None
        try:
            self.buf, self.pos, self.eof = "", 0, False
            if self._peek() != "{":
                raise self._error("the top level is not a JSON object")
            self.pos += 1
            yield from self._members(stream_keys)
            if self._peek() != "":
                raise self._error("text after the top-level object")
        except UnicodeDecodeError as e:
            raise self._error(str(e)) from None
        finally:
            self._file.close()
            self.buf, self._file = "", None

    def _members(self, stream_keys: frozenset[str] | set[str]) -> Iterator[tuple[str, int | None, object]]:
        """The top-level object's members after its "{", through its "}"."""
        if self._peek() == "}":
            self.pos += 1
            return
        while True:
            key = self._value()
            if not isinstance(key, str):
                raise self._error(f"object key {key!r} is not a string")
            self._expect(":", f"after key {key!r}")
            if key in stream_keys and self._peek() == "[":
                self.pos += 1
                self.arrays.add(key)
                for index, item in enumerate(self._array_items(key)):
                    yield key, index, item
            else:
                yield key, None, self._value()
            if self._expect(",}", "between top-level keys") == "}":
                return

    def _array_items(self, key: str) -> Iterator[object]:
        """The items of an array after its "[", through its "]"."""
        if self._peek() == "]":
            self.pos += 1
            return
        while True:
            yield self._value()
            if self._expect(",]", f"between items of {key!r}") == "]":
                return


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


VOC_DIR = "VOCdevkit/VOC2012"


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
        jpg, obj_png, rgb, instances = found
        h, w = rgb.shape[:2]
        try:
            numeric_id = int(image_id.replace("_", ""))  # 2011_000003 -> 2011000003: ids stay integers
        except ValueError:
            tally.skip("malformed_record", str(list_file), image_id, "VOC image ids are digits and underscores")
            continue
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
