"""One MaskShard's work, as plain code: photos -> person masks, manifest rows and COCO results.

Layout under the output folder (documented for users in docs/generate.md)::

    <rel>.person<k>.png      person k's mask, 0/255          <rel>.labels.png   instance labels
    shards/<tag>-<i>of<n>-<digest>/journal.jsonl   rows appended while the shard runs (resume point)
                                  /manifest.jsonl  one row per photo, renamed into place last
                                  /results.json    COCO results of the shard
                                  /shard.json      timing

    shard_name(model_id, index, count, items, max_pixels)   the folder name (tag = hash of the model id)
    earlier_rows(out, index, count, model_id, paths)        latest earlier row per photo (manifests, journals)
    PhotoMasker(...).process(rel, size)                      one photo -> (manifest row, results records)
    PhotoMasker(...).prepare / finish                        its two halves (read + people; masks + files)
    make_shard(masker, items, earlier, folder, ...)          the loop: reuse or process, journal, write
Invariant: every row with outcome "done" lists mask files that exist, and a photo with another
outcome has no mask files.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models.people import SOURCE_BOX, LabelMap, Person, PersonMask, person_from_keypoints, present_keypoints
from models.sample import encode_rle
from pipeline.lib.files import atomic_path, jsonl_line, read_jsonl, short_hash, write_json, write_jsonl
from pipeline.lib.folder import BadImageError, bytes_hash, check_image_header, decode_image_bytes, stable_image_id
from pipeline.lib.keypoint_files import KeypointIndex, PersonKeypoints, load_sidecar, sidecar_path

SHARDS_DIR = "shards"
SHARD_NAME = re.compile(r"^(?P<tag>[0-9a-f]+)-(?P<index>\d+)of(?P<count>\d+)-(?P<digest>[0-9a-f]+)$")
# Skip reasons that are worth another try when a shard runs again (see reusable).
RETRIED_REASONS = frozenset({"error", "decompression_bomb"})
# keypoints id of a photo matched only by a file name that several photos of the folder share
AMBIGUOUS_KEYPOINTS = "file:ambiguous"


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


def write_png(target: Path, array: np.ndarray) -> None:
    """Write a (H,W) uint8/uint16 PNG atomically."""
    with atomic_path(target) as tmp:
        # cv2.imwrite can return True and leave a 0-byte file (a full disk): check before the rename
        if not cv2.imwrite(str(tmp), array) or tmp.stat().st_size == 0:
            raise OSError(f"cannot write {target} (disk full?)")


@dataclass
class PreparedPhoto:
    """A photo read, decoded and with its people found (PhotoMasker.prepare), waiting for finish.

    row: the manifest row so far; image: (H,W,3) uint8 RGB, or None when reading it failed;
    found: people_for's (people, image id, reason when none); samples: the posed people's network
    inputs (PhotoMasker.samples); error: what went wrong, reported by finish; seconds: time spent
    preparing.
    """

    rel: str
    row: dict
    image: np.ndarray | None = None
    found: tuple[list[Person], int, str] | None = None
    samples: list[dict] | None = None
    error: Exception | None = None
    seconds: float = 0.0


@dataclass
class PhotoMasker:
    """Turns one photo into its mask files, manifest row and COCO results records.

    find_people: (image) -> people for a photo without given keypoints (detector + pose estimator).
    segment: (image, people, samples or None) -> PersonMask per person, in order (network, CRF,
        GrabCut; an iterator, so that one photo's memory is bounded: models.people.iter_person_masks).
    samples: (image, people) -> the network's inputs of the posed people (models.people.person_samples),
        made in `prepare` (the read-ahead thread), or None to leave them to `segment` (many people).
    peer: (image) -> (H,W) probability, for a whole-photo peer (then find_people/segment are unused).
    person_box_pad / person_box_pad_top: box around given keypoints without a bbox (detect.keypoint_box).
    """

    input_dir: Path
    output_dir: Path
    model_id: str
    max_pixels: int
    min_keypoints: int
    threshold: float
    index: KeypointIndex | None
    find_people: Callable[[np.ndarray], list[Person]]
    segment: Callable[[np.ndarray, list[Person], list[dict] | None], Iterable[PersonMask]]
    peer: Callable[[np.ndarray], np.ndarray] | None
    peer_name: str
    person_box_pad: float
    person_box_pad_top: float
    samples: Callable[[np.ndarray, list[Person]], list[dict] | None] | None = None

    def reusable(self, earlier: Earlier | None, content_hash: str, keypoints_id: str) -> bool:
        """Whether a photo's earlier row stands: same content, model and keypoints, and nothing to retry.

        Rows skipped for an unexpected "error" (maybe transient, e.g. out of memory) and for
        "decompression_bomb" (the limit may have been raised; the header check is cheap) are redone,
        and so are rows of photos with more pixels than the current ``max_pixels``.
        """
        if not self.same_photo(earlier, content_hash, keypoints_id):
            return False
        row = earlier.row
        if row.get("reason") in RETRIED_REASONS or int(row.get("pixels", 0)) > self.max_pixels:
            return False
        return not self.lost_outputs(earlier)

    def same_photo(self, earlier: Earlier | None, content_hash: str, keypoints_id: str) -> bool:
        """Whether an earlier row is of this photo as it is now (content, model, keypoints)."""
        if earlier is None:
            return False
        row = earlier.row
        return (row.get("content_hash"), row.get("model_id"), row.get("keypoints_id")) == (
            content_hash,
            self.model_id,
            keypoints_id,
        )

    def lost_outputs(self, earlier: Earlier) -> bool:
        """Whether what an earlier row promises is gone: its results records, or a mask file."""
        if earlier.results is None:
            return True
        row = earlier.row
        return row.get("outcome") == "done" and not all((self.output_dir / f).is_file() for f in row.get("files", []))

    # -- people ---------------------------------------------------------------------------------------

    def people_for(self, rel: str, image: np.ndarray) -> tuple[list[Person], int, str]:
        """(people, image id, reason when none) of one photo: keypoints file, sidecar, or the estimators."""
        hw = image.shape[:2]
        if self.index is not None:
            key, given = self.index.lookup(rel)
            image_id = self.image_id(rel, given)
            if not key:
                return [], image_id, "no keypoints for this image in the keypoints file"
            return self.people_from_file(given, hw), image_id, "no person with enough keypoints"
        sidecar = sidecar_path(self.input_dir / rel)
        if sidecar.is_file() and not sidecar.is_symlink():
            given = load_sidecar(sidecar)
            return self.people_from_file(given, hw), self.image_id(rel, given), "no person in " + sidecar.name
        return self.find_people(image), stable_image_id(rel), "no person detected"

    def image_id(self, rel: str, given: list[PersonKeypoints]) -> int:
        for p in given:
            if p.image_id is not None:
                return int(p.image_id)
        if self.index is not None:
            for key in (rel, Path(rel).name):
                if key in self.index.id_of_name:
                    return self.index.id_of_name[key]
        return stable_image_id(rel)

    def people_from_file(self, given: list[PersonKeypoints], hw: tuple[int, int]) -> list[Person]:
        people = []
        for p in given:
            person = person_from_keypoints(
                p.keypoints, p.bbox, hw, self.person_box_pad, self.person_box_pad_top, p.annotation_id
            )
            if person is not None and present_keypoints(person.keypoints) >= self.min_keypoints:
                people.append(person)
        return people

    # -- one photo ------------------------------------------------------------------------------------

    def process(self, rel: str, size: int, keypoints_id: str = "") -> tuple[dict, list[dict]]:
        """One photo -> (manifest row, COCO results records). Bad input becomes a "skipped" row.

        keypoints_id: the plan's (lib/night.py); "file:ambiguous" skips the photo: its keypoint
        records are matched by a file name that another photo of the folder has too.
        """
        return self.finish(self.prepare(rel, size, keypoints_id))

    def prepare(self, rel: str, size: int, keypoints_id: str = "") -> PreparedPhoto:
        """The first half of `process`: read, check and decode the photo, and find its people (the
        keypoints file, a sidecar, or the detector and pose estimator). Never raises: an error is
        kept for `finish` to report. Runs in make_shard's read-ahead thread, beside the network."""
        started = time.perf_counter()
        row = {
            "path": rel,
            "size": size,
            "model_id": self.model_id,
            "people": 0,
            "files": [],
            "reason": "",
            "detail": "",
        }
        prepared = PreparedPhoto(rel, row)
        try:
            width, height = check_image_header(self.input_dir / rel, self.max_pixels)
            row["pixels"] = width * height
            data = (self.input_dir / rel).read_bytes()
            row["size"], row["content_hash"] = len(data), bytes_hash(data)
            prepared.image = decode_image_bytes(data)
            if keypoints_id == AMBIGUOUS_KEYPOINTS and self.peer is None:
                raise BadImageError(
                    "ambiguous_file_name",
                    "the keypoints file names this photo's file name only, "
                    "and another photo of the folder has it too: give full relative paths",
                )
            if self.peer is None:
                prepared.found = self.people_for(rel, prepared.image)
                if self.samples is not None and prepared.found[0]:
                    prepared.samples = self.samples(prepared.image, prepared.found[0])
        except Exception as err:  # noqa: BLE001 - reported by finish, in the photo's row
            prepared.error = err
        prepared.seconds = time.perf_counter() - started
        return prepared

    def finish(self, prepared: PreparedPhoto) -> tuple[dict, list[dict]]:
        """The second half of `process`: segment the prepared photo's people and write their files."""
        started = time.perf_counter()
        rel, row = prepared.rel, prepared.row
        results: list[dict] = []
        try:
            if prepared.error is not None:
                raise prepared.error
            if self.peer is not None:
                results = self.masks_from_peer(rel, prepared.image, row)
            else:
                results = self.masks_of_people(rel, prepared.image, row, prepared.found, prepared.samples)
        except BadImageError as err:
            row.update(outcome="skipped", reason=err.reason, detail=err.detail)
        except Exception as err:  # noqa: BLE001 - one bad image is reported, the batch goes on
            reason = "bad_keypoints" if "keypoints file" in str(err) else "error"
            row.update(outcome="skipped", reason=reason, detail=f"{type(err).__name__}: {err}")
        row.setdefault("content_hash", "")
        if row.get("outcome") != "done":
            try:
                self.remove_masks(rel, keep=0)
            except OSError as err:  # an output path this file system refuses: this photo only
                row.update(outcome="skipped", reason="output_error", detail=f"{type(err).__name__}: {err}")
        row["seconds"] = round(prepared.seconds + time.perf_counter() - started, 4)
        prepared.image = prepared.samples = None  # not kept past the photo's row
        return row, results

    def masks_of_people(
        self, rel: str, image: np.ndarray, row: dict, found: tuple[list[Person], int, str], samples: list[dict] | None
    ) -> list[dict]:
        """found: people_for's (people, image id, reason when none), made by prepare; samples: the
        posed people's network inputs when prepare made them (else None: segment makes them)."""
        people, image_id, none_reason = found
        row["image_id"] = image_id
        if not people:
            row.update(outcome="no_person", reason="no_person", detail=none_reason)
            return []
        # One person at a time: its PNG is written and its probability (in its window of the photo)
        # folded into the label map before the next is made, so memory does not grow with the
        # number of people, and a person's cost with the photo's size only for its PNG and RLE.
        labels = LabelMap(image.shape[:2], len(people), self.threshold)
        files, records, from_box, pose_reasons = [], [], 0, Counter()
        for k, m in enumerate(self.segment(image, people, samples)):
            full_mask = m.mask  # (H,W) bool, made once for the PNG and the RLE
            files.append(self.write_person_mask(rel, k, full_mask))
            labels.add(m.window_prob, m.window)
            records.append(person_record(image_id, rel, k, m, full_mask))
            from_box += m.person.source == SOURCE_BOX
            if m.person.pose_reason:  # detected people: why they have their pose, or none
                pose_reasons[m.person.pose_reason] += 1
        files.append(self.write_labels(rel, labels.result()))
        self.remove_masks(rel, keep=len(records))
        row.update(outcome="done", files=files, people=len(records), people_from_box=from_box)
        row["quality"] = [r.get("quality") for r in records]  # per person, in order (None: no probability)
        if pose_reasons:
            row["pose_reasons"] = dict(sorted(pose_reasons.items()))
        return records

    def masks_from_peer(self, rel: str, image: np.ndarray, row: dict) -> list[dict]:
        """A whole-photo peer's result: one semantic mask, written as <rel>.labels.png (1 = a person)."""
        mask = self.peer(image) >= self.threshold
        row["image_id"] = stable_image_id(rel)
        if not mask.any():
            row.update(outcome="no_person", reason="no_person", detail=f"{self.peer_name} found no person pixel")
            return []
        target = self.mask_base(rel).with_name(f"{Path(rel).name}.labels.png")
        write_png(target, mask.astype(np.uint8))
        self.remove_masks(rel, keep=0, keep_labels=True)
        row.update(outcome="done", files=[target.relative_to(self.output_dir).as_posix()])
        return [
            {
                "image_id": row["image_id"],
                "file_name": rel,
                "category_id": 1,
                "person": None,
                "segmentation": encode_rle(mask),
                "score": 1.0,
                "mask_source": self.peer_name,
            }
        ]

    # -- mask files -----------------------------------------------------------------------------------

    def mask_base(self, rel: str) -> Path:
        """Where a photo's mask files go: its path mirrored under OUTPUT, the file name shortened
        when the masks' names would pass the file system's 255 bytes (short_mask_name)."""
        base = self.output_dir / rel
        return base.with_name(short_mask_name(base.name))

    def write_person_mask(self, rel: str, k: int, mask: np.ndarray) -> str:
        """Person k's PNG (0/255) of its (H,W) bool mask, renamed into place; its path relative to output_dir."""
        base = self.mask_base(rel)
        target = base.with_name(f"{base.name}.person{k}.png")
        write_png(target, mask.astype(np.uint8) * 255)
        return target.relative_to(self.output_dir).as_posix()

    def write_labels(self, rel: str, labels: np.ndarray) -> str:
        """The photo's label PNG (written after its person PNGs); its path relative to output_dir."""
        base = self.mask_base(rel)
        target = base.with_name(f"{base.name}.labels.png")
        write_png(target, labels)
        return target.relative_to(self.output_dir).as_posix()

    def remove_masks(self, rel: str, keep: int, keep_labels: bool = False) -> None:
        """Remove this photo's person masks numbered >= keep (and its labels when keep == 0, unless kept).

        Masks are written person0, person1, ... in order and removed from the highest down, so a
        photo's masks are always a run from person0 (even after a kill): probing upwards from
        `keep` to the first missing file finds them all with a few stat calls, where listing the
        folder would cost time that grows with the folder (quadratic over a flat folder's night).
        """
        base = self.mask_base(rel)
        present = []
        while (candidate := base.with_name(f"{base.name}.person{keep + len(present)}.png")).exists():
            present.append(candidate)
        for f in reversed(present):
            f.unlink(missing_ok=True)
        if keep == 0 and not keep_labels:
            base.with_name(f"{base.name}.labels.png").unlink(missing_ok=True)


# bytes of a photo's file name kept in its mask files' names: 255 (the usual limit of a name) less
# ".person<k>.png" and what a temporary file adds (".<name>.tmp-<pid>", models/atomic.py)
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
    if m.quality is not None:  # the mask's expected IoU with the truth (models/quality.py); score = det x quality
        record["quality"] = round(m.quality, 4)
    if m.person.annotation_id is not None:
        record["annotation_id"] = m.person.annotation_id
    return record


def make_shard(
    masker: PhotoMasker,
    items: Sequence[Sequence],
    earlier: dict[str, Earlier],
    folder: Path,
    name: str,
    label: str,
    show_progress: bool,
    progress: Callable[[int, int, int], None],
    read_ahead: int = 1,
) -> None:
    """Process (or reuse) every item [rel, size, content hash, keypoints id] into folder's files.

    Every processed photo is appended to journal.jsonl after its masks are in place, so a killed
    shard resumes where it stopped; manifest.jsonl is renamed into place last.
    progress(done, total, processed) is called after each photo.
    read_ahead: this many photos to process are prepared (read, decoded, their people found by the
    detector and pose estimator) in a second thread while the current one's network and files are
    made: the two halves release the GIL in OpenCV, MediaPipe and torch, so they overlap on two
    cores (0: one thing at a time). The journal and the rows keep the items' order.
    """
    started_at, started = time.time(), time.perf_counter()
    rows, results, processed = [], [], 0
    journal_path = folder / "journal.jsonl"
    if journal_path.is_file() and not journal_path.read_bytes().endswith(b"\n"):
        with open(journal_path, "a", encoding="utf-8") as j:
            j.write("\n")  # a killed writer's partial last line stays unparseable on its own
    reuse = [masker.reusable(earlier.get(item[0]), item[2], item[3]) for item in items]
    # photos redone because what their earlier row promised is gone (seen before they are redone)
    repairs = {
        n
        for n, item in enumerate(items)
        if not reuse[n]
        and (before := earlier.get(item[0])) is not None
        and masker.same_photo(before, item[2], item[3])
        and masker.lost_outputs(before)
    }
    to_process = iter([i for i, reused in enumerate(reuse) if not reused])
    ahead: dict[int, Future[PreparedPhoto]] = {}

    def prepare_next(pool: ThreadPoolExecutor | None) -> None:
        while pool is not None and len(ahead) < read_ahead and (i := next(to_process, None)) is not None:
            ahead[i] = pool.submit(masker.prepare, items[i][0], items[i][1], items[i][3])

    with (
        ThreadPoolExecutor(1, thread_name_prefix="read-ahead") if read_ahead > 0 else contextlib.nullcontext() as pool,
        open(journal_path, "a", encoding="utf-8") as journal,
        tqdm(items, desc=f"masks {label}", unit="image", disable=not show_progress) as bar,
    ):
        prepare_next(pool)
        for n, (rel, size, _, keypoints_id) in enumerate(bar):
            if reuse[n]:
                before = earlier[rel]
                row, records = dict(before.row, run="reused"), before.results
            else:
                prepared = ahead.pop(n).result() if n in ahead else masker.prepare(rel, size, keypoints_id)
                prepare_next(pool)
                row, records = masker.finish(prepared)
                row.update(keypoints_id=keypoints_id, run="processed")
                if n in repairs:
                    row["repaired"] = True  # done before; its masks or records were lost since
                processed += 1
                if row["outcome"] == "skipped":
                    tqdm.write(f"skipped {rel}: {row['reason']} ({row['detail']})")
                journal.write(jsonl_line({**row, "results": records}))
                journal.flush()
            rows.append(row)
            results += records
            progress(n + 1, len(items), processed)
    seconds = time.perf_counter() - started
    write_json(folder / "results.json", results)
    write_json(
        folder / "shard.json",
        {
            "shard": name,
            "images": len(rows),
            "processed": processed,
            "seconds": round(seconds, 3),
            "started_at": started_at,
            "finished_at": time.time(),
        },
    )
    write_jsonl(folder / "manifest.jsonl", rows)
    journal_path.unlink(missing_ok=True)
