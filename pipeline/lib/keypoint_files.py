"""Keypoint files the nightly job reads: COCO annotations or results files, and per-photo sidecars.

    COCO annotations  {"images": [{id, file_name}], "annotations": [{image_id, keypoints (51), bbox?, id?}]}
    COCO results      [{image_id, keypoints (51), score?, bbox?}]   (matched to photos named <image_id>.jpg)
    sidecar           photo.json beside photo.jpg: [{keypoints, bbox?}] | {"annotations"|"people": [...]}
                      | one {keypoints, bbox?}

    load_keypoint_file(path) -> KeypointIndex   people per file name / image id, unreadable records listed
    load_sidecar(path) -> [PersonKeypoints]     ValueError naming the file when it cannot be read
    sidecar_path(photo)                         photo.jpg -> photo.json
    people_digest(people)                       short hash: a change of keypoints re-runs the photo
    AMBIGUOUS_KEYPOINTS                         the keypoints id of a photo matched by a shared file name only
Crowd regions and non-person categories are ignored; NaN or infinite keypoints are a malformed record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.sample import COCO17_NAMES
from pipeline.lib.files import short_hash

NUM_COCO_KEYPOINTS = len(COCO17_NAMES)
# keypoints id of a photo matched only by a file name that several photos of the folder share
AMBIGUOUS_KEYPOINTS = "file:ambiguous"


@dataclass
class PersonKeypoints:
    """One person's keypoints from a file: (17,3) COCO keypoints, optional box, ids from the file."""

    keypoints: np.ndarray
    bbox: list[float] | None = None
    image_id: int | None = None
    annotation_id: int | None = None
    score: float | None = None

    def to_dict(self) -> dict:
        return {
            "keypoints": np.asarray(self.keypoints, np.float32).reshape(-1).round(2).tolist(),
            "bbox": self.bbox,
            "image_id": self.image_id,
            "annotation_id": self.annotation_id,
            "score": self.score,
        }


def _person_from_record(record: dict, image_id: int | None) -> PersonKeypoints:
    kps = np.asarray(record["keypoints"], np.float32).reshape(NUM_COCO_KEYPOINTS, 3)
    if not np.isfinite(kps).all():
        raise ValueError("keypoints hold NaN or infinite values")
    bbox = record.get("bbox")
    if bbox is not None:
        bbox = [float(v) for v in bbox]
        if len(bbox) != 4 or not np.isfinite(bbox).all() or bbox[2] <= 0 or bbox[3] <= 0:
            raise ValueError(f"bad bbox {bbox}")
    ann_id = record.get("id")
    score = record.get("score")
    return PersonKeypoints(
        kps, bbox, image_id, int(ann_id) if ann_id is not None else None, float(score) if score is not None else None
    )


@dataclass
class KeypointIndex:
    """People per image from one COCO-format keypoints file.

    by_name: file name (as in the file) -> people; by_id: image id -> people (results files,
    which name no file: matched to images whose stem is that number, COCO's naming).
    problems: records that could not be read ({record, reason, detail}).
    """

    source: str
    by_name: dict[str, list[PersonKeypoints]] = field(default_factory=dict)
    by_id: dict[int, list[PersonKeypoints]] = field(default_factory=dict)
    id_of_name: dict[str, int] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)

    def lookup(self, relative: str) -> tuple[str | None, list[PersonKeypoints]]:
        """(key in the file, people) for an image path relative to the input folder; (None, []) if absent.

        The key is "name:<relative path>", "name:<file name>" (matched by the photo's name alone:
        ambiguous when two photos of the folder share it, see lib/night.py) or "id:<image id>".
        """
        name = Path(relative).name
        for key in (relative, name):
            if key in self.by_name:
                return f"name:{key}", self.by_name[key]
        stem = Path(relative).stem
        if stem.isdigit() and int(stem) in self.by_id:
            return f"id:{int(stem)}", self.by_id[int(stem)]
        return None, []

    def keys(self) -> list[str]:
        return [f"name:{k}" for k in self.by_name] + [f"id:{k}" for k in self.by_id]


def _is_person(record: dict, person_ids: set[int]) -> bool:
    return record.get("category_id", 1) in person_ids and not record.get("iscrowd", 0) and "keypoints" in record


def load_keypoint_file(path: Path | str) -> KeypointIndex:
    """Read a COCO annotations file ({images, annotations}) or a COCO results file ([{image_id, keypoints}]).

    Crowd regions and non-person categories are ignored. Raises ValueError naming the file when it
    is neither format.
    """
    path = Path(path)
    try:
        data = read_json(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"keypoints file {path}: cannot read JSON: {err}") from err
    index = KeypointIndex(source=str(path))
    if isinstance(data, dict) and "annotations" in data:
        cats = data.get("categories") or [{"id": 1, "name": "person"}]
        person_ids = {int(c["id"]) for c in cats if c.get("name") == "person"} or {1}
        names, duplicated = _image_names(data.get("images", []), path, index)
        records = data["annotations"]
    elif isinstance(data, list):
        person_ids, names, duplicated, records = {1}, {}, set(), data
    else:
        raise ValueError(
            f"keypoints file {path}: neither COCO annotations ({{images, annotations}}) "
            "nor COCO results ([{image_id, keypoints, ...}])"
        )
    for record in records:
        if isinstance(record, dict) and _is_person(record, person_ids):
            _add_person(index, record, names, duplicated)
    return index


def _image_names(images: list, path: Path, index: KeypointIndex) -> tuple[dict[int, str], set[int]]:
    """(image id -> file name, ids that name two photos) of an annotations file's images. Such ids are
    left out of the names (their people fit neither photo); they and malformed images are problems in
    `index`, whose id_of_name gets every other name."""
    names: dict[int, str] = {}
    duplicated: set[int] = set()
    for im in images:
        try:
            image_id, file_name = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            index.problems.append({"record": im, "reason": "malformed_image_record", "detail": str(path)})
            continue
        if names.get(image_id, file_name) != file_name:  # one id, two photos: its people fit neither
            duplicated.add(image_id)
            index.problems.append(
                {
                    "record": image_id,
                    "reason": "duplicate_image_id",
                    "detail": f"{path}: image id {image_id} names {names[image_id]} and {file_name}",
                }
            )
        names[image_id] = file_name
    for image_id in duplicated:
        del names[image_id]
    for name_id, name in names.items():
        index.id_of_name[name] = name_id
    return names, duplicated


def _add_person(index: KeypointIndex, record: dict, names: dict[int, str], duplicated: set[int]) -> None:
    """One person record of a keypoints file into `index`: under its file name, else its image id, or
    as a problem (malformed, or of an image id that names two photos)."""
    try:
        image_id = int(record["image_id"]) if "image_id" in record else None
        person = _person_from_record(record, image_id)
    except (KeyError, TypeError, ValueError) as err:
        index.problems.append({"record": record.get("id"), "reason": "malformed_record", "detail": str(err)})
        return
    name = record.get("file_name") or (names.get(image_id) if image_id is not None else None)
    if not name and image_id in duplicated:
        index.problems.append(
            {
                "record": record.get("id"),
                "reason": "duplicate_image_id",
                "detail": f"person of image id {image_id}, which names two photos: not used",
            }
        )
        return
    if name:
        index.by_name.setdefault(str(name), []).append(person)
        if image_id is not None:
            index.id_of_name.setdefault(str(name), image_id)
    elif image_id is not None:
        index.by_id.setdefault(image_id, []).append(person)
    else:
        index.problems.append(
            {
                "record": record.get("id"),
                "reason": "malformed_record",
                "detail": "record names neither file_name nor image_id",
            }
        )


def sidecar_path(image_path: Path) -> Path:
    """`photo.jpg` -> `photo.json` beside it (per-image keypoints)."""
    return image_path.with_suffix(".json")


# a per-photo sidecar holds a few people: anything larger is not one (and would be read whole)
MAX_SIDECAR_BYTES = 16 * 1024 * 1024


def read_json(path: Path, max_bytes: int | None = None) -> object:
    """json.loads of a file, with the two ways a hostile JSON hurts named as ValueErrors: over
    `max_bytes` (checked from its size, before reading) and nested too deeply for the parser
    (Python's RecursionError)."""
    if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
        raise ValueError(f"{size:,} bytes, over the {max_bytes:,} a keypoints sidecar may have")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as err:
        raise ValueError("JSON nested too deeply to read") from err


def load_sidecar(path: Path) -> list[PersonKeypoints]:
    """People of one per-image JSON: a list of {keypoints, bbox?}, or {"annotations"|"people": [...]},
    or one {keypoints, bbox?} record. Raises ValueError naming the file (too large, too deeply
    nested, not JSON, not person records)."""
    try:
        data = read_json(path, MAX_SIDECAR_BYTES)
        if isinstance(data, dict):
            data = data.get("annotations", data.get("people", [data] if "keypoints" in data else []))
        if not isinstance(data, list):
            raise ValueError("expected a list of person records")
        return [_person_from_record(r, r.get("image_id")) for r in data if isinstance(r, dict) and _is_person(r, {1})]
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"keypoints file {path}: {err}") from err


def people_digest(people: list[PersonKeypoints]) -> str:
    """Short hash of a person list (what changes an image's keypoints changes its digest)."""
    return short_hash([p.to_dict() for p in people], 12)
