"""Image folders for GenerateMasks: discovery, shard keys, content hashes, image headers (keypoints: keypoint_files.py).

Plain functions (no luigi). Paths inside a folder are POSIX strings relative to its root.

Sharding: an image's shard is ``sha1(relative path) mod 2**k`` with ``2**k`` the smallest power
of two that keeps every shard at or under ``shard_size`` images (the fullest one: a true maximum).
The key never depends on the other images, so a new image changes exactly one shard, unless it
overfills it: then k grows by one, and every new shard is one half of exactly one old shard
(`shards_overlap`), so earlier manifests are still found cheaply.
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
from pipeline.lib.images import decode_rgb

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
HASH_CHUNK_BYTES = 1 << 20


@dataclass
class Discovery:
    """Images found under a root, and the entries refused (each {path, reason, detail})."""

    images: list[str] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # hidden photos and folders ("folder/"), not read


def _inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


NOT_UTF8_DETAIL = "the name is not valid UTF-8 (shown with \\x escapes): rename it to process it"


def not_utf8(path: Path, root: Path) -> str | None:
    """None when `path`'s name below `root` is valid UTF-8; else that relative path with its
    undecodable bytes as \\xNN escapes (valid UTF-8 itself, so that every JSON output stays so)."""
    rel = path.relative_to(root).as_posix()
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(rel).decode("utf-8", "backslashreplace")
    return None


def discover_images(
    root: Path | str, extensions: Iterable[str] = IMAGE_EXTENSIONS, exclude: Iterable[Path | str] = ()
) -> Discovery:
    """Every image file under `root` (recursive, extension case-insensitive), sorted.

    Symlinks (to files or folders) are refused, as is anything that resolves outside `root`;
    both are listed in `refused` with their reason. Hidden photos and folders (".name") are not
    read but listed in `hidden` (a folder once, not its content); the folders in `exclude` (an
    output folder inside the input folder) are skipped silently.
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
            if (shown := not_utf8(here / name, root)) is not None:
                found.refused.append({"path": shown + "/", "reason": "name_not_utf8", "detail": NOT_UTF8_DETAIL})
        dirnames[:] = [d for d in dirnames if not_utf8(here / d, root) is None]
        for name in sorted(dirnames):
            if (here / name).is_symlink():
                rel = (here / name).relative_to(root).as_posix()
                found.refused.append({"path": rel, "reason": "symlink", "detail": "symlinked folder not followed"})
        for name in sorted(dirnames):
            if name.startswith(".") and (here / name).resolve() not in excluded:
                found.hidden.append((here / name).relative_to(root).as_posix() + "/")
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink())
        for name in sorted(filenames):
            if Path(name).suffix.lower() not in exts:
                continue
            path = here / name
            if (shown := not_utf8(path, root)) is not None:
                found.refused.append({"path": shown, "reason": "name_not_utf8", "detail": NOT_UTF8_DETAIL})
                continue
            rel = path.relative_to(root).as_posix()
            if name.startswith("."):
                found.hidden.append(rel)
                continue
            if path.is_symlink():
                found.refused.append({"path": rel, "reason": "symlink", "detail": "symlinked file not read"})
            elif not path.is_file():  # a FIFO or device named *.jpg would block the hashing forever
                found.refused.append({"path": rel, "reason": "not_a_regular_file", "detail": "not read"})
            elif not _inside(root, path):
                found.refused.append({"path": rel, "reason": "outside_input_dir", "detail": str(path.resolve())})
            else:
                found.images.append(rel)
    found.images.sort()
    return found


MAX_SHARD_COUNT = 1 << 24  # a bound on the doubling: shard_size 1 over colliding low key bits


def shard_count(relatives: Iterable[str], shard_size: int) -> int:
    """Smallest power of two 2**k whose fullest shard (by shard_of) holds at most shard_size of these
    images: shard_size is a true maximum, not an average (hash shards are uneven)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    keys = np.fromiter((path_key(r) for r in relatives), np.uint64)
    count = 1
    while len(keys) > count * shard_size:  # the average bound first: no bincount needed below it
        count *= 2
    while (
        count < MAX_SHARD_COUNT
        and len(keys)
        and np.bincount((keys % np.uint64(count)).astype(np.int64)).max() > shard_size
    ):
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
    """Encoded bytes -> (H,W,3) uint8 RGB (lib/images.py, as BuildCache decodes); BadImageError when it fails."""
    image = decode_rgb(data)
    if image is None:
        raise BadImageError("corrupt_image", "pixel data cannot be decoded")
    return image
