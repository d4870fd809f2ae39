"""One photo of a night, as plain code: photo -> person masks, manifest row and COCO results records.

    PhotoMasker(...).process(rel, size, keypoints_id)   one photo -> (manifest row, results records)
    PhotoMasker(...).prepare / finish                    its two halves (read + people; masks + files)
    PhotoMasker(...).reusable(earlier, hash, keypoints_id)   whether an earlier row of the photo stands
    PreparedPhoto                                        what prepare hands to finish

Invariant: every row with outcome "done" lists mask files that exist, and a photo with another
outcome has no mask files. The shard's loop over its photos is lib/mask_shard.py's; the files a
photo leaves are lib/mask_outputs.py's.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.people import SOURCE_BOX, LabelMap, Person, PersonMask, person_from_keypoints, present_keypoints
from pipeline.lib.folder import BadImageError, bytes_hash, check_image_header, decode_image_bytes, stable_image_id
from pipeline.lib.keypoint_files import (
    AMBIGUOUS_KEYPOINTS,
    KeypointIndex,
    PersonKeypoints,
    load_sidecar,
    sidecar_path,
)
from pipeline.lib.mask_outputs import decay_overlapping, peer_record, person_record, short_mask_name, write_png
from pipeline.lib.shard_folders import Earlier

# Skip reasons that are worth another try when a shard runs again (see reusable).
RETRIED_REASONS = frozenset({"error", "decompression_bomb"})


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
        qualities, scores = [], []  # unrounded, for decay_overlapping
        for k, m in enumerate(self.segment(image, people, samples)):
            full_mask = m.mask  # (H,W) bool, made once for the PNG and the RLE
            files.append(self.write_person_mask(rel, k, full_mask))
            labels.add(m.window_prob, m.window)
            records.append(person_record(image_id, rel, k, m, full_mask))
            qualities.append(m.quality)
            scores.append(m.score)
            from_box += m.person.source == SOURCE_BOX
            if m.person.pose_reason:  # detected people: why they have their pose, or none
                pose_reasons[m.person.pose_reason] += 1
        files.append(self.write_labels(rel, labels.result()))
        decay_overlapping(records, qualities, scores)
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
        return [peer_record(row["image_id"], rel, mask, self.peer_name)]

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
