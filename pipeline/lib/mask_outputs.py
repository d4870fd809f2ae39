"""What one photo leaves behind: its mask PNGs (written atomically, named to fit) and its COCO results records.

    write_png(target, array)                 a (H,W) uint8/uint16 PNG, renamed into place (never 0 bytes)
    short_mask_name(name)                    a photo's file name, shortened to fit its masks' names in 255 bytes
    person_record(image_id, rel, k, m, mask) COCO results record of person k of a photo
    decay_overlapping(records, qualities, scores)   one photo's records: quality and score decayed
                                             by each mask's overlap with better ones
    peer_record(image_id, rel, mask, peer)   COCO results record of a whole-photo peer's one semantic mask
    MAX_MASK_NAME_BYTES                      bytes of a photo's name kept in its masks' names

Mask files mirror the photo under OUTPUT: ``<rel>.person<k>.png`` (0/255) and ``<rel>.labels.png``
(0 background, k+1 person k); lib/photo_masker.py decides what is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from models.evaluation import better_overlaps, overlap_decay, rle_ious
from models.people import PersonMask
from models.sample import encode_rle
from pipeline.lib.files import atomic_path


def write_png(target: Path, array: np.ndarray) -> None:
    """Write a (H,W) uint8/uint16 PNG atomically."""
    with atomic_path(target) as tmp:
        # cv2.imwrite can return True and leave a 0-byte file (a full disk): check before the rename
        if not cv2.imwrite(str(tmp), array) or tmp.stat().st_size == 0:
            raise OSError(f"cannot write {target} (disk full?)")


# bytes of a photo's file name kept in its mask files' names: 255 (the usual limit of a name) less
# ".person<k>.png" and what a temporary file adds (".<name>.tmp-<pid>", models/utils/atomic.py)
MAX_MASK_NAME_BYTES = 200
NAME_DIGEST_CHARS = 12


def short_mask_name(name: str, limit: int = MAX_MASK_NAME_BYTES) -> str:
    """`name` when it fits in `limit` bytes (UTF-8); else its first bytes (whole characters), "~"
    and the first 12 hex digits of sha1(name): a fixed, collision-free name per photo (two long
    names that start alike differ in the digest). results.json and the manifest keep the photo's
    own name; its row's `files` list the short ones."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:NAME_DIGEST_CHARS]
    head = raw[: limit - NAME_DIGEST_CHARS - 1].decode("utf-8", "ignore")
    return f"{head}~{digest}"


def person_record(image_id: int, rel: str, k: int, m: PersonMask, mask: np.ndarray) -> dict:
    """COCO results record of person k of a photo ((H,W) bool `mask`: m.mask, made by the caller)."""
    record = {
        "image_id": image_id,
        "file_name": rel,
        "category_id": 1,
        "person": k,
        "segmentation": encode_rle(mask),
        "bbox": [round(float(v), 2) for v in m.person.bbox],
        "keypoints": np.round(m.person.keypoints.reshape(-1), 2).tolist(),
        "score": round(m.score, 5),
        "mask_source": m.person.source,
    }
    if m.person.pose_reason:
        record["pose_reason"] = m.person.pose_reason
    # the mask's expected IoU with the truth (models/evaluation/quality.py); score = det x quality
    if m.quality is not None:
        record["quality"] = round(m.quality, 4)
    if m.person.annotation_id is not None:
        record["annotation_id"] = m.person.annotation_id
    return record


def decay_overlapping(records: list[dict], qualities: list[float | None], scores: list[float]) -> None:
    """One photo's person records, in place: each `quality` becomes models.evaluation.overlap_decay's
    (x (1 - the mask's IoU with a better mask of the photo)) and `score` follows it (the detector's
    share kept); a record whose mask meets a better one says which and how much, `overlaps`:
    {"person": k, "iou": IoU}. qualities, scores: each record's own, unrounded (PersonMask.quality,
    .score)."""
    if sum(q is not None for q in qualities) < 2:
        return
    ious = rle_ious([r["segmentation"] for r in records])
    decayed = overlap_decay(qualities, ious)
    partners = better_overlaps(qualities, ious)
    for record, before, after, score, partner in zip(records, qualities, decayed, scores, partners, strict=True):
        if before is None or after is None:
            continue
        record["quality"] = round(after, 4)
        record["score"] = round(score * after / before, 5) if before > 0 else round(score, 5)
        if partner is not None:
            record["overlaps"] = {"person": records[partner[0]].get("person", partner[0]), "iou": round(partner[1], 3)}


def peer_record(image_id: int, rel: str, mask: np.ndarray, peer_name: str) -> dict:
    """COCO results record of a whole-photo peer's (H,W) bool mask: one semantic mask, no person."""
    return {
        "image_id": image_id,
        "file_name": rel,
        "category_id": 1,
        "person": None,
        "segmentation": encode_rle(mask),
        "score": 1.0,
        "mask_source": peer_name,
    }
