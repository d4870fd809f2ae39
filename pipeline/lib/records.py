"""persons.jsonl: one person instance per line, the hand-over from the annotation readers
(lib/annotations.py) to the cache (lib/cachebuild.py) and the evaluation.

A record (JSON object, one line, compact)::

    dataset       "coco" | "ochuman" | "voc" | a named dataset
    split         "train" | "val" | ...
    image         image path relative to the dataset root (never escapes it: resolve_inside)
    image_id      int; VOC "2011_000003" -> 2011000003
    instance_id   int, unique within the dataset
    height, width the image size the annotation was made for
    bbox          [x, y, w, h] pixels
    keypoints     51 numbers: COCO-17 (x, y, v), v = 0 missing, 1 occluded, 2 visible
    mask          {"type": "coco", "segmentation": polygons | RLE}
                  | {"type": "voc", "object_png": relative path, "instance": k, "void_value": 255}

    read_records(path, start, stop)   records start .. stop-1 (streamed; a bad line is a named error)
    count_records(path)               how many, without parsing
    record_mask(record, root)         (H, W) uint8 ground-truth mask
    record_ignore(record, root)       (H, W) bool pixels left out of scoring (VOC void), or None
    read_palette_png(path)            a VOC palette PNG's indices, (H, W) uint8
Writing is ``files.write_jsonl(target, records)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from models.sample import coco_instance_mask
from pipeline.lib.files import resolve_inside


class RecordError(ValueError):
    """A record that cannot become a sample, with the skip reason summaries count it under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def read_palette_png(path: Path) -> np.ndarray:
    """A VOC palette PNG as its (H,W) index array (never the RGB rendering)."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette PNG, got mode {im.mode}")
        return np.array(im)


def read_records(path: Path, start: int = 0, stop: int | None = None) -> Iterator[dict]:
    """Stream a persons.jsonl file; only records start .. stop-1 (blank lines not counted) are parsed."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            if stop is not None and n >= stop:
                return
            if n >= start:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"malformed record {n} in {path}: {e}") from None
            n += 1


def count_records(path: Path) -> int:
    """Number of records (non-blank lines) in a persons.jsonl file, without parsing them."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def record_mask(record: dict, root: Path) -> np.ndarray:
    """The ground-truth (H,W) uint8 mask of a person record."""
    m = record["mask"]
    try:
        if m["type"] == "coco":
            return coco_instance_mask(m["segmentation"], record["height"], record["width"])
        if m["type"] == "voc":
            obj = read_palette_png(resolve_inside(root, m["object_png"]))
            return (obj == m["instance"]).astype(np.uint8)
    except (ValueError, TypeError, KeyError, OSError) as e:
        raise RecordError("bad_mask", f"{type(e).__name__}: {e}") from None
    raise RecordError("bad_mask", f"unknown mask type {m['type']!r}")


def record_ignore(record: dict, root: Path) -> np.ndarray | None:
    """(H,W) bool of pixels left out of scoring (VOC's void band, value 255), or None."""
    m = record["mask"]
    if m["type"] != "voc":
        return None
    obj = read_palette_png(resolve_inside(root, m["object_png"]))
    return obj == m.get("void_value", 255)
