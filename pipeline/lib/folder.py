"""Image folders for GenerateMasks: discovery, shard keys, content hashes, keypoint files, manifests.

Plain functions (no luigi). Paths inside a folder are POSIX strings relative to its root.

Sharding: an image's shard is ``sha1(relative path) mod 2**k`` with ``2**k`` the smallest power
of two that keeps shards at or under ``shard_size`` images. The key never depends on the other
images, so a new image changes exactly one shard; and when the folder doubles (k grows by one),
every new shard is one half of exactly one old shard (`shards_overlap`), so earlier manifests are
still found cheaply.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.lib.files import write_json

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
HASH_CHUNK_BYTES = 1 << 20
NUM_COCO_KEYPOINTS = 17


@dataclass
class Discovery:
    """Images found under a root, and the entries refused (each {path, reason, detail})."""

    images: list[str] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)


def _inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def discover_images(
    root: Path | str, extensions: Iterable[str] = IMAGE_EXTENSIONS, exclude: Iterable[Path | str] = ()
) -> Discovery:
    """Every image file under `root` (recursive, extension case-insensitive), sorted.

    Symlinks (to files or folders) are refused, as is anything that resolves outside `root`;
    both are listed in `refused` with their reason. Hidden entries (".name", e.g. temp files)
    are ignored, and so are the folders in `exclude` (an output folder inside the input folder).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist or is not a folder")
    exts = {e.lower() for e in extensions}
    excluded = {Path(p).resolve() for p in exclude}
    found = Discovery()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if here.resolve() in excluded:
            dirnames[:] = []
            continue
        for name in sorted(dirnames):
            if (here / name).is_symlink():
                rel = (here / name).relative_to(root).as_posix()
                found.refused.append({"path": rel, "reason": "symlink", "detail": "symlinked folder not followed"})
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink())
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in exts:
                continue
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found.refused.append({"path": rel, "reason": "symlink", "detail": "symlinked file not read"})
            elif not _inside(root, path):
                found.refused.append({"path": rel, "reason": "outside_input_dir", "detail": str(path.resolve())})
            else:
                found.images.append(rel)
    found.images.sort()
    return found


def shard_count(num_images: int, shard_size: int) -> int:
    """Smallest power of two 2**k with num_images / 2**k <= shard_size (at least 1)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    count = 1
    while num_images > count * shard_size:
        count *= 2
    return count


def path_key(relative: str) -> int:
    """Stable 64-bit key of a relative path (the same on every machine and every night)."""
    return int.from_bytes(hashlib.sha1(relative.encode("utf-8")).digest()[:8], "big")


def shard_of(relative: str, count: int) -> int:
    """Shard index of an image among `count` (a power of two) shards."""
    return path_key(relative) % count


def shards_overlap(index: int, count: int, other_index: int, other_count: int) -> bool:
    """Whether shard (index of count) and shard (other_index of other_count) can share an image.

    Both counts are powers of two, so with m = min(count, other_count): key % m is fixed by both.
    """
    m = min(count, other_count)
    return index % m == other_index % m


def stable_image_id(relative: str) -> int:
    """A positive int id for an image the keypoints file gives none for (47 bits, JSON-safe)."""
    return path_key(relative) >> 17


def file_hash(path: Path | str) -> str:
    """sha256 hex digest of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class HashCache:
    """Content hashes remembered by (relative path, size, mtime_ns): unchanged files are not re-read.

    Stored as one JSON file ({relative path: [size, mtime_ns, sha256]}), written atomically.
    A stale entry (size or mtime differ) is recomputed; a file edited without changing either
    (rare: same size, restored mtime) keeps its old hash until the cache file is removed.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.entries: dict[str, list] = {}
        self.hits = self.misses = 0
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.entries = {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 3}
            except (ValueError, AttributeError):
                self.entries = {}  # a damaged cache only costs re-hashing

    def hash(self, root: Path, relative: str) -> tuple[int, str]:
        """(size in bytes, sha256) of root/relative."""
        stat = (root / relative).stat()
        entry = self.entries.get(relative)
        if entry is not None and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            self.hits += 1
            return int(entry[0]), str(entry[2])
        self.misses += 1
        digest = file_hash(root / relative)
        self.entries[relative] = [stat.st_size, stat.st_mtime_ns, digest]
        return int(stat.st_size), digest

    def save(self) -> None:
        write_json(self.path, self.entries)


# ----------------------------------------------------------------------------- image headers


class BadImageError(ValueError):
    """An input file that cannot be used; `reason` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_image_header(path: Path | str, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels.

    Raises BadImageError: "empty_file" (0 bytes), "not_an_image" (no known image header),
    "decompression_bomb" (width * height > max_pixels), "corrupt_image" (header unreadable).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.stat().st_size == 0:
        raise BadImageError("empty_file", "file has 0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header only
                width, height = im.size
    except Image.DecompressionBombError as err:
        raise BadImageError("decompression_bomb", str(err)) from err
    except UnidentifiedImageError as err:
        raise BadImageError("not_an_image", "no image header recognised") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImageError("corrupt_image", f"header unreadable: {err}") from err
    if width * height > max_pixels:
        raise BadImageError("decompression_bomb", f"{width}x{height} = {width * height} pixels > max {max_pixels}")
    if width < 1 or height < 1:
        raise BadImageError("corrupt_image", f"header says {width}x{height}")
    return width, height


def decode_image_bytes(data: bytes) -> np.ndarray:
    """Encoded bytes -> (H,W,3) uint8 RGB (OpenCV, as BuildCache decodes); BadImageError when it fails."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadImageError("corrupt_image", "pixel data cannot be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- keypoint files


@dataclass
class PersonKeypoints:
    """One person's keypoints from a file: (17,3) COCO keypoints, optional box, ids from the file."""

    keypoints: np.ndarray
    bbox: list[float] | None = None
    image_id: int | None = None
    annotation_id: int | None = None
    score: float | None = None

    def to_dict(self) -> dict:
        return {"keypoints": np.asarray(self.keypoints, np.float32).reshape(-1).round(2).tolist(),
                "bbox": self.bbox, "image_id": self.image_id, "annotation_id": self.annotation_id,
                "score": self.score}  # fmt: skip


def _person_from_record(record: dict, image_id: int | None) -> PersonKeypoints:
    kps = np.asarray(record["keypoints"], np.float32).reshape(NUM_COCO_KEYPOINTS, 3)
    if not np.isfinite(kps).all():
        raise ValueError("keypoints hold NaN or infinite values")
    bbox = record.get("bbox")
    if bbox is not None:
        bbox = [float(v) for v in bbox]
        if len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
            raise ValueError(f"bad bbox {bbox}")
    ann_id = record.get("id")
    score = record.get("score")
    return PersonKeypoints(kps, bbox, image_id, int(ann_id) if ann_id is not None else None,
                           float(score) if score is not None else None)  # fmt: skip


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
        """(key in the file, people) for an image path relative to the input folder; (None, []) if absent."""
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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"keypoints file {path}: cannot read JSON: {err}") from err
    index = KeypointIndex(source=str(path))
    if isinstance(data, dict) and "annotations" in data:
        cats = data.get("categories") or [{"id": 1, "name": "person"}]
        person_ids = {int(c["id"]) for c in cats if c.get("name") == "person"} or {1}
        names = {}
        for im in data.get("images", []):
            try:
                names[int(im["id"])] = str(im["file_name"])
            except (KeyError, TypeError, ValueError):
                index.problems.append({"record": im, "reason": "malformed_image_record", "detail": str(path)})
        for name_id, name in names.items():
            index.id_of_name[name] = name_id
        records = data["annotations"]
    elif isinstance(data, list):
        person_ids, names, records = {1}, {}, data
    else:
        raise ValueError(f"keypoints file {path}: neither COCO annotations ({{images, annotations}}) "
                         "nor COCO results ([{image_id, keypoints, ...}])")
    for record in records:
        if not isinstance(record, dict) or not _is_person(record, person_ids):
            continue
        try:
            image_id = int(record["image_id"]) if "image_id" in record else None
            person = _person_from_record(record, image_id)
        except (KeyError, TypeError, ValueError) as err:
            index.problems.append({"record": record.get("id"), "reason": "malformed_record", "detail": str(err)})
            continue
        name = record.get("file_name") or (names.get(image_id) if image_id is not None else None)
        if name:
            index.by_name.setdefault(str(name), []).append(person)
            if image_id is not None:
                index.id_of_name.setdefault(str(name), image_id)
        elif image_id is not None:
            index.by_id.setdefault(image_id, []).append(person)
        else:
            index.problems.append({"record": record.get("id"), "reason": "malformed_record",
                                   "detail": "record names neither file_name nor image_id"})  # fmt: skip
    return index


def sidecar_path(image_path: Path) -> Path:
    """`photo.jpg` -> `photo.json` beside it (per-image keypoints)."""
    return image_path.with_suffix(".json")


def load_sidecar(path: Path) -> list[PersonKeypoints]:
    """People of one per-image JSON: a list of {keypoints, bbox?}, or {"annotations"|"people": [...]},
    or one {keypoints, bbox?} record. Raises ValueError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("annotations", data.get("people", [data] if "keypoints" in data else []))
        if not isinstance(data, list):
            raise ValueError("expected a list of person records")
        return [_person_from_record(r, r.get("image_id")) for r in data
                if isinstance(r, dict) and _is_person(r, {1})]  # fmt: skip
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"keypoints file {path}: {err}") from err


def people_digest(people: list[PersonKeypoints]) -> str:
    """Short hash of a person list (what changes an image's keypoints changes its digest)."""
    blob = json.dumps([p.to_dict() for p in people], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]
