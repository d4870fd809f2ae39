"""A night's shard folders, ``OUTPUT/shards/<tag>-<i>of<n>-<digest>/``: their names, what earlier ones hold.

    shard_name(model_id, index, count, items, max_pixels)   the folder name (tag = hash of the model id)
    shard_tag(model_id)                                     that tag
    earlier_rows(out, index, count, model_id, paths)        latest earlier row per photo (manifests, journals)
    Earlier                                                 such a row with its COCO results records
    shard_intact(folder, items, output_dir)                 a finished shard still holds what it promised
    SHARDS_DIR, SHARD_NAME                                  the folder of the shards, the pattern of their names

Each folder holds journal.jsonl (rows appended while the shard runs: the resume point),
manifest.jsonl (one row per photo, renamed into place last), results.json and shard.json
(lib/mask_shard.py writes them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.lib.files import read_jsonl, short_hash

SHARDS_DIR = "shards"
SHARD_NAME = re.compile(r"^(?P<tag>[0-9a-f]+)-(?P<index>\d+)of(?P<count>\d+)-(?P<digest>[0-9a-f]+)$")


def shard_tag(model_id: str) -> str:
    return hashlib.sha1(model_id.encode()).hexdigest()[:8]  # of the string itself (not its JSON)


def shard_name(model_id: str, index: int, count: int, items: Sequence[Sequence], max_pixels: int) -> str:
    """``<model tag>-<index>of<count>-<digest>``; the digest covers the items and ``max_pixels``.

    ``max_pixels`` is in the digest, not in the model tag, so a new limit re-runs the shards but
    their earlier rows stay reusable (see `reusable`).
    """
    digest = short_hash([model_id, [list(item) for item in items], max_pixels])
    return f"{shard_tag(model_id)}-{index:04d}of{count:04d}-{digest}"


@dataclass
class Earlier:
    """A photo's latest earlier row and its COCO results records (None: its shard's results.json
    was lost or damaged)."""

    row: dict
    results: list[dict] | None


@functools.lru_cache(maxsize=4)
def _shard_folders(shards_dir: str, mtime_ns: int, links: int) -> tuple[tuple[str, str, int, int], ...]:
    """(name, tag, index, count) of each shard folder: one listing per change of the shards folder
    (its mtime and link count, 2 + its subfolders, move when a folder is added or removed), not one
    per shard."""
    try:
        names = sorted(os.listdir(shards_dir))
    except FileNotFoundError:
        return ()
    return tuple((name, m["tag"], int(m["index"]), int(m["count"])) for name in names if (m := SHARD_NAME.match(name)))


def earlier_rows(out: Path, index: int, count: int, model_id: str, paths: set[str]) -> dict[str, Earlier]:
    """Latest row per photo from earlier shard folders of this model that can hold these photos."""
    from pipeline.lib.folder import shards_overlap

    tag = shard_tag(model_id)
    shards_dir = out / SHARDS_DIR
    try:
        stat = shards_dir.stat()
        listing = _shard_folders(str(shards_dir), stat.st_mtime_ns, stat.st_nlink)
    except FileNotFoundError:
        return {}
    candidates = [
        shards_dir / name
        for name, other_tag, other_index, other_count in listing
        if other_tag == tag and shards_overlap(index, count, other_index, other_count)
    ]
    found: dict[str, Earlier] = {}
    for folder in sorted(candidates, key=lambda p: (p / "manifest.jsonl").is_file()):
        # incomplete folders (journals) last: they are the newest work
        manifest = folder / "manifest.jsonl"
        if manifest.is_file():
            results: dict[str, list[dict]] | None = {}
            try:
                for record in json.loads((folder / "results.json").read_text()):
                    results.setdefault(record["file_name"], []).append(record)
            except (OSError, ValueError, TypeError, KeyError):
                results = None  # lost or damaged: the rows say what was done, their records must be redone
            for row in read_jsonl(manifest):
                if row.get("path") in paths:
                    found[row["path"]] = Earlier(row, None if results is None else results.get(row["path"], []))
        elif (folder / "journal.jsonl").is_file():
            for row in read_jsonl(folder / "journal.jsonl"):
                if row.get("path") in paths and "results" in row:
                    found[row["path"]] = Earlier({k: v for k, v in row.items() if k != "results"}, row["results"])
    return found


@functools.lru_cache(maxsize=4096)
def _shard_contents(manifest: str, results: str, stamps: tuple) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(photo paths, mask files of the done rows) of a manifest whose results.json parses, read once
    per version of the two files (`stamps`: their sizes and mtimes); None when results.json does
    not parse."""
    try:
        json.loads(Path(results).read_text())
    except (OSError, ValueError):
        return None
    rows = list(read_jsonl(manifest))
    files = tuple(f for r in rows if r.get("outcome") == "done" for f in r.get("files", []))
    return tuple(r.get("path", "") for r in rows), files


def shard_intact(folder: Path, items: Sequence, output_dir: Path) -> bool:
    """Whether a finished shard still holds what it promised: a manifest with one row per item, a
    results.json that parses, and every done row's mask files. Parsing is cached per version of
    the two files; the mask files are checked (a stat each) every time, since a deleted PNG leaves
    them unchanged."""
    manifest, results = folder / "manifest.jsonl", folder / "results.json"
    try:
        stamps = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (manifest, results))
    except OSError:
        return False
    contents = _shard_contents(str(manifest), str(results), stamps)
    if contents is None or list(contents[0]) != [item[0] for item in items]:
        return False
    return all((output_dir / f).is_file() for f in contents[1])
