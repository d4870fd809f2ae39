"""The nightly job: person masks for every photo of a folder (GenerateMasks -> MaskShard x N).

Output layout under ``output_dir`` (mirrors ``input_dir``; names keep the image's extension so
``a.jpg`` and ``a.png`` never collide):

    <rel>.person<k>.png        person k's mask, 0/255, full image size
    <rel>.labels.png           instance labels: 0 background, k+1 person k (overlaps: higher probability)
    shards/<tag>-<i>of<n>-<digest>/manifest.jsonl   one row per image of the shard (written last)
    shards/<...>/results.json  COCO results of the shard (image_id, file_name, RLE segmentation, ...)
    shards/<...>/shard.json    the shard's timing
    summary.json               the latest night's summary (also .posemask/summary-<digest>.json)
    .posemask/hashes.json      content hashes cached by (path, size, mtime)

A shard's folder name holds a hash of its (path, content hash, keypoints id) list, of the model
id and of ``max_pixels``, so a new or changed image makes exactly its shard incomplete; that shard
consults earlier manifests and recomputes only the images whose content, keypoints or model changed
(and those skipped for an unexpected error or as too large, which are tried again). While a shard
runs, every finished image is appended to ``journal.jsonl`` (after its masks are renamed into
place), so a killed shard resumes where it stopped; ``manifest.jsonl`` is renamed into place last.
Invariant: every manifest row with outcome "done" lists mask files that exist, and every image of
a shard with another outcome has no mask files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import luigi
import numpy as np
from tqdm import tqdm

from models.assets import SHIPPED_CRF, SHIPPED_MODEL, SHIPPED_NAME, require
from models.crf import CRFParams
from models.detect import DetectorConfig
from models.masks import encode_rle
from models.people import SOURCE_BOX, Person, estimate_people, person_from_keypoints, present_keypoints, segment_people
from models.people import instance_labels as label_map
from pipeline import config
from pipeline.core import PoseMaskTask
from pipeline.crf import TuneCRF
from pipeline.lib.files import atomic_path, exclusive_lock, jsonl_line, read_jsonl, short_hash, write_json, write_jsonl
from pipeline.lib.folder import (
    BadImageError,
    HashCache,
    bytes_hash,
    check_image_header,
    decode_image_bytes,
    discover_images,
    file_hash,
    shard_count,
    shard_of,
    shards_overlap,
    stable_image_id,
)
from pipeline.lib.keypoint_files import (
    KeypointIndex,
    PersonKeypoints,
    load_keypoint_file,
    load_sidecar,
    people_digest,
    sidecar_path,
)
from pipeline.nightly import METHODS, POSEMASK, estimators, peer_segmenter, read_crf_file, shipped_crf
from pipeline.train import MODELS

STATE_DIR = ".posemask"
LOCK_NAME = ".lock"  # held (flock) by the process that makes a shard
SHARDS_DIR = "shards"
SHARD_NAME = re.compile(r"^(?P<tag>[0-9a-f]+)-(?P<index>\d+)of(?P<count>\d+)-(?P<digest>[0-9a-f]+)$")
# Skip reasons that are worth another try when a shard runs again (see MaskShard.reusable).
RETRIED_REASONS = frozenset({"error", "decompression_bomb"})


@functools.lru_cache(maxsize=2)
def _cached_keypoint_file(path: str, size: int, mtime_ns: int) -> KeypointIndex:
    return load_keypoint_file(path)


def keypoint_index(path: str) -> KeypointIndex:
    """load_keypoint_file, cached per process while the file is unchanged (shards share it)."""
    stat = Path(path).stat()
    return _cached_keypoint_file(str(path), stat.st_size, stat.st_mtime_ns)


class MaskSettings:
    """Parameters GenerateMasks and MaskShard share (a mixin of luigi tasks; luigi finds parameters by dir())."""

    input_dir = luigi.Parameter(description="folder of photos (searched recursively)")
    output_dir = luigi.Parameter(description="where masks, manifests and summary.json go")
    model = luigi.Parameter(
        default=SHIPPED_NAME,
        description=f"{SHIPPED_NAME} (the model inside the package) | unet-coco | unet-voc | path to a model.pt",
    )
    keypoints = luigi.Parameter(
        default="",
        description="COCO annotations/results JSON; empty = photo.json "
        "beside each photo, else the built-in pose estimator",
    )
    method = luigi.ChoiceParameter(
        choices=list(METHODS),
        default=POSEMASK,
        description="posemask, or a whole-photo peer to compare with (models.peers)",
    )
    crf = luigi.BoolParameter(
        default=False, parsing=luigi.BoolParameter.EXPLICIT_PARSING, description="refine masks with the dense CRF"
    )
    grabcut = luigi.BoolParameter(
        default=True,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="refine each network mask by GrabCut in the person's box",
    )
    max_pixels = luigi.IntParameter(
        default=64_000_000, description="images with more pixels are refused from their header (decompression bombs)"
    )
    min_keypoints = luigi.IntParameter(default=4, description="people with fewer keypoints get no mask")
    crf_params = luigi.DictParameter(
        default={}, description="CRFParams for a model given as a path (named models use TuneCRF's crf.json)"
    )
    device = luigi.Parameter(default="cpu", significant=False, description="cpu | cuda | auto")
    progress = luigi.BoolParameter(
        default=True,
        significant=False,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="a progress bar over each shard's photos",
    )

    def model_requirement(self) -> dict[str, luigi.Task]:
        """The tasks that make the model (and the CRF parameters); none for a model file or a peer."""
        if self.model not in MODELS or self.method != POSEMASK:
            return {}
        required: dict[str, luigi.Task] = {"model": MODELS[self.model]()}
        if self.crf:
            required["crf"] = TuneCRF(model=self.model)
        return required

    def crf_identity(self) -> object:
        """What the CRF parameters come from: TuneCRF (named models), the shipped crf.json, or crf_params."""
        if self.model in MODELS:
            return TuneCRF(model=self.model).signature()
        if self.model == SHIPPED_NAME:
            return file_hash(require(SHIPPED_CRF))
        return dict(self.crf_params)

    def model_id(self) -> str:
        """Identity of everything that shapes a mask: weights, CRF, GrabCut, crop config, threshold."""
        if self.method != POSEMASK:
            return f"peer:{self.method}/{short_hash({'threshold': config.evaluation().threshold}, 8)}"
        if self.model in MODELS:
            base = f"{self.model}:{MODELS[self.model]().signature()}"
        elif self.model == SHIPPED_NAME:
            base = f"{SHIPPED_NAME}:{file_hash(require(SHIPPED_MODEL))[:12]}"
        else:
            path = Path(self.model)
            if not path.is_file():
                raise FileNotFoundError(f"model {self.model!r} is neither {list(MODELS)} nor a model file")
            base = f"file:{file_hash(path)[:12]}"
        if self.crf:
            base += f"+crf:{short_hash(self.crf_identity(), 8)}"
        if self.grabcut:
            base += "+grabcut"
        settings = {
            "crop": config.crop().to_crop_config().to_dict(),
            "threshold": config.evaluation().threshold,
            "min_keypoints": self.min_keypoints,
        }
        return f"{base}/{short_hash(settings, 8)}"

    def shared_params(self) -> dict:
        names = (
            "input_dir",
            "output_dir",
            "model",
            "method",
            "keypoints",
            "crf",
            "grabcut",
            "max_pixels",
            "min_keypoints",
            "crf_params",
            "device",
            "progress",
        )
        return {name: getattr(self, name) for name in names}


@dataclass
class Plan:
    """What GenerateMasks found: items per shard, refused files, keypoint records without an image."""

    model_id: str
    shards: dict[int, list[tuple[str, int, str, str]]] = field(default_factory=dict)
    count: int = 1
    images: int = 0
    refused: list[dict] = field(default_factory=list)
    keypoint_problems: list[dict] = field(default_factory=list)
    hash_hits: int = 0
    hash_misses: int = 0


class GenerateMasks(MaskSettings, PoseMaskTask):
    """Masks for every person in every photo under input_dir, shard by shard (see module docstring).

    ``luigi --module pipeline GenerateMasks --input-dir photos/ --output-dir masks/``
    """

    shard_size = luigi.IntParameter(default=200, description="at most this many images per MaskShard")
    print_summary = luigi.BoolParameter(
        default=True,
        significant=False,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="print the summary when done (the posemask command prints its own)",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._plan: Plan | None = None

    def keypoint_id(self, root: Path, rel: str, index: KeypointIndex | None) -> str:
        """What this image's keypoints come from, hashed (a change re-runs the image)."""
        if index is not None:
            key, people = index.lookup(rel)
            return f"file:{people_digest(people)}" if key else "file:none"
        sidecar = sidecar_path(root / rel)
        if sidecar.is_file() and not sidecar.is_symlink():
            return f"sidecar:{file_hash(sidecar)[:12]}"
        return f"estimator:{short_hash(config.detect().settings(), 8)}"

    def plan(self) -> Plan:
        """Discover, hash and shard the folder.

        Once per task instance, as requires() is called often; luigi reuses instances with the same
        parameters within a process, so a long-lived process that builds twice calls
        luigi.task_register.Register.clear_instance_cache() in between.
        """
        if self._plan is not None:
            return self._plan
        root, out = Path(self.input_dir), Path(self.output_dir)
        found = discover_images(root, exclude=[out])
        index = keypoint_index(self.keypoints) if self.keypoints else None
        hashes = HashCache(out / STATE_DIR / "hashes.json")
        plan = Plan(model_id=self.model_id(), refused=found.refused, images=len(found.images))
        plan.count = shard_count(len(found.images), self.shard_size)
        matched: set[str] = set()
        for rel in found.images:
            size, digest = hashes.hash(root, rel)
            if index is not None:
                key, _ = index.lookup(rel)
                if key:
                    matched.add(key)
            item = (rel, size, digest, self.keypoint_id(root, rel, index))
            plan.shards.setdefault(shard_of(rel, plan.count), []).append(item)
        if hashes.misses:
            hashes.save()
        plan.hash_hits, plan.hash_misses = hashes.hits, hashes.misses
        if index is not None:
            plan.keypoint_problems = [dict(p, file=self.keypoints) for p in index.problems]
            for key in sorted(set(index.keys()) - matched):
                plan.keypoint_problems.append(
                    {
                        "file": key.split(":", 1)[1],
                        "reason": "keypoints_for_missing_image",
                        "detail": f"{self.keypoints} has people for {key} but no such image is under {root}",
                    }
                )
        self._plan = plan
        return plan

    def requires(self) -> list[MaskShard]:
        plan = self.plan()
        return [
            MaskShard(
                **self.shared_params(),
                shard_index=i,
                shard_count=plan.count,
                model_id=plan.model_id,
                items=[list(item) for item in plan.shards[i]],
            )
            for i in sorted(plan.shards)
        ]

    def output(self) -> luigi.LocalTarget:
        plan = self.plan()
        shard_names = [t.shard_name() for t in self.requires()]
        digest = short_hash([shard_names, plan.refused, plan.keypoint_problems])
        return luigi.LocalTarget(str(Path(self.output_dir) / STATE_DIR / f"summary-{digest}.json"))

    def complete(self) -> bool:
        """The summary marker and every shard's manifest exist (a later run may have pruned the shards
        of an earlier configuration, e.g. after another ``max_pixels`` and back)."""
        return super().complete() and all(shard.complete() for shard in self.requires())

    def run(self) -> None:
        plan = self.plan()
        out = Path(self.output_dir)
        previous = read_json_or_empty(out / "summary.json")
        earlier_shards = set(previous.get("shards", []))
        rows, shard_names, seconds, new_shards = [], [], 0.0, 0
        for shard in self.requires():
            name = shard.shard_name()
            shard_names.append(name)
            shard_rows = list(read_jsonl(shard.output().path))
            is_new = name not in earlier_shards
            stats = read_json_or_empty(Path(shard.output().path).with_name("shard.json"))
            if is_new:
                new_shards += 1
                seconds += float(stats.get("seconds", 0.0))
            rows += [dict(r, new=is_new) for r in shard_rows]
        summary = summarize_rows(rows, plan, seconds)
        summary.update(
            {
                "input_dir": self.input_dir,
                "output_dir": self.output_dir,
                "model": self.model,
                "model_id": plan.model_id,
                "method": self.method,
                "crf": self.crf,
                "grabcut": self.grabcut,
                "keypoints": self.keypoints or None,
                "shards": shard_names,
                "shards_run": new_shards,
                "content_hashes": {"cached": plan.hash_hits, "computed": plan.hash_misses},
            }
        )
        write_json(out / "summary.json", summary)
        write_json(self.output().path, summary)
        prune_stale_shards(out, shard_names)
        if self.print_summary:
            print(format_summary(summary))


def read_json_or_empty(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def summarize_rows(rows: list[dict], plan: Plan, seconds: float) -> dict:
    """The night's numbers from the manifest rows (each with `new`: its shard ran since the last summary)."""
    processed = [r for r in rows if r.get("run") == "processed" and r.get("new")]
    skipped = Counter(r["reason"] for r in rows if r["outcome"] == "skipped")
    refused = Counter(r["reason"] for r in plan.refused)
    kp_problems = Counter(r["reason"] for r in plan.keypoint_problems)
    problems = [
        {"file": r["path"], "reason": r["reason"], "detail": r.get("detail", "")}
        for r in rows
        if r["outcome"] == "skipped"
    ]
    problems += [{"file": r["path"], "reason": r["reason"], "detail": r.get("detail", "")} for r in plan.refused]
    problems += [
        {"file": r.get("file"), "reason": r["reason"], "detail": r.get("detail", "")} for r in plan.keypoint_problems
    ]
    return {
        "images": len(rows),
        "processed": len(processed),
        "reused": len(rows) - len(processed),
        "done": sum(r["outcome"] == "done" for r in rows),
        "no_person": sum(r["outcome"] == "no_person" for r in rows),
        "people": sum(int(r.get("people", 0)) for r in rows),
        "skipped": dict(skipped),
        "skipped_total": sum(skipped.values()),
        "refused": dict(refused),
        "keypoint_problems": dict(kp_problems),
        "problems_total": sum(skipped.values()) + sum(refused.values()) + sum(kp_problems.values()),
        "problems": problems,
        "seconds": round(seconds, 3),
        "images_per_s": round(len(processed) / seconds, 3) if seconds > 0 else None,
    }


def format_summary(summary: dict) -> str:
    """A few lines for people: what was done, what was skipped and why, how fast, where the masks are."""
    skipped = (
        ", ".join(
            f"{k} {v}"
            for k, v in sorted({**summary["skipped"], **summary["refused"], **summary["keypoint_problems"]}.items())
        )
        or "none"
    )
    rate = f"{summary['images_per_s']:.2f} images/s" if summary.get("images_per_s") else "-"
    return "\n".join(
        [
            f"posemask masks: {summary['images']} images, {summary['processed']} processed now, "
            f"{summary['reused']} unchanged since an earlier run",
            f"  people: {summary['people']} masks; no person found: {summary['no_person']}",
            f"  skipped: {summary['problems_total']} ({skipped})",
            f"  time: {summary['seconds']:.1f} s, {rate}",
            f"  masks: {summary['output_dir']}  (summary.json, shards/*/manifest.jsonl, shards/*/results.json)",
        ]
    )


def prune_stale_shards(out: Path, current: list[str]) -> None:
    """Remove complete shard folders of this model that the current shard set replaced.

    Their rows live on in the current manifests (reused rows are copied), so nothing is lost.
    """
    tags = {SHARD_NAME.match(name)["tag"] for name in current if SHARD_NAME.match(name)}
    for folder in (out / SHARDS_DIR).glob("*"):
        match = SHARD_NAME.match(folder.name)
        if match and match["tag"] in tags and folder.name not in current and (folder / "manifest.jsonl").is_file():
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Earlier:
    """An image's latest earlier row and its COCO results records."""

    row: dict
    results: list[dict]


class MaskShard(MaskSettings, PoseMaskTask):
    """Masks for one shard's images -> shards/<name>/{manifest.jsonl, results.json, shard.json}."""

    shard_index = luigi.IntParameter()
    shard_count = luigi.IntParameter()
    model_id = luigi.Parameter(description="MaskSettings.model_id() of GenerateMasks")
    items = luigi.ListParameter(description="[relative path, size, content hash, keypoints id] per image")

    def requires(self) -> dict[str, luigi.Task]:
        return self.model_requirement()

    def shard_name(self) -> str:
        """``<model tag>-<index>of<count>-<digest>``; the digest covers the items and ``max_pixels``.

        ``max_pixels`` is in the digest, not in the model tag, so a new limit re-runs the shards but
        their earlier rows stay reusable (see :meth:`reusable`).
        """
        tag = hashlib.sha1(self.model_id.encode()).hexdigest()[:8]  # of the string itself (not its JSON)
        digest = short_hash([self.model_id, [list(item) for item in self.items], self.max_pixels])
        return f"{tag}-{self.shard_index:04d}of{self.shard_count:04d}-{digest}"

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(Path(self.output_dir) / SHARDS_DIR / self.shard_name() / "manifest.jsonl"))

    # -- earlier work -------------------------------------------------------------------------------

    def earlier_rows(self) -> dict[str, Earlier]:
        """Latest row per image from earlier shard folders of this model that can hold this shard's images."""
        out = Path(self.output_dir)
        mine = {item[0] for item in self.items}
        tag = self.shard_name().split("-")[0]
        found: dict[str, Earlier] = {}
        folders = sorted((out / SHARDS_DIR).glob("*"), key=lambda p: (p / "manifest.jsonl").is_file())
        for folder in folders:  # incomplete folders (journals) last: they are the newest work
            match = SHARD_NAME.match(folder.name)
            if not match or match["tag"] != tag:
                continue
            if not shards_overlap(self.shard_index, self.shard_count, int(match["index"]), int(match["count"])):
                continue
            manifest = folder / "manifest.jsonl"
            if manifest.is_file():
                results: dict[str, list[dict]] = {}
                for record in json.loads((folder / "results.json").read_text()):
                    results.setdefault(record["file_name"], []).append(record)
                for row in read_jsonl(manifest):
                    if row.get("path") in mine:
                        found[row["path"]] = Earlier(row, results.get(row["path"], []))
            else:
                for row in read_jsonl(folder / "journal.jsonl"):
                    if row.get("path") in mine and "results" in row:
                        found[row["path"]] = Earlier({k: v for k, v in row.items() if k != "results"}, row["results"])
        return found

    def reusable(self, earlier: Earlier | None, content_hash: str, keypoints_id: str) -> bool:
        """Whether an image's earlier row stands: same content, model and keypoints, and nothing to retry.

        Rows skipped for an unexpected "error" (maybe transient, e.g. out of memory) and for
        "decompression_bomb" (the limit may have been raised; the header check is cheap) are redone,
        and so are rows of images with more pixels than the current ``max_pixels``.
        """
        if earlier is None:
            return False
        row = earlier.row
        if (row.get("content_hash"), row.get("model_id"), row.get("keypoints_id")) != (
            content_hash,
            self.model_id,
            keypoints_id,
        ):
            return False
        if row.get("reason") in RETRIED_REASONS or int(row.get("pixels", 0)) > self.max_pixels:
            return False
        out = Path(self.output_dir)
        return row.get("outcome") != "done" or all((out / f).is_file() for f in row.get("files", []))

    # -- one image ----------------------------------------------------------------------------------

    def people_for(self, rel: str, image: np.ndarray, index: KeypointIndex | None) -> tuple[list[Person], int, str]:
        """(people, image id, reason when none) of one image."""
        hw = image.shape[:2]
        if index is not None:
            key, given = index.lookup(rel)
            image_id = self._image_id(rel, given, index)
            if not key:
                return [], image_id, "no keypoints for this image in the keypoints file"
            return self._people_from_file(given, hw), image_id, "no person with enough keypoints"
        sidecar = sidecar_path(Path(self.input_dir) / rel)
        if sidecar.is_file() and not sidecar.is_symlink():
            given = load_sidecar(sidecar)
            return self._people_from_file(given, hw), self._image_id(rel, given, None), "no person in " + sidecar.name
        detector, estimator = estimators()
        people = estimate_people(
            image, detector.detect, estimator.estimate, self.min_keypoints, config.detect().box_fallback
        )
        return people, stable_image_id(rel), "no person detected"

    def _image_id(self, rel: str, given: list[PersonKeypoints], index: KeypointIndex | None) -> int:
        for p in given:
            if p.image_id is not None:
                return int(p.image_id)
        if index is not None:
            for key in (rel, Path(rel).name):
                if key in index.id_of_name:
                    return index.id_of_name[key]
        return stable_image_id(rel)

    def _people_from_file(self, given: list[PersonKeypoints], hw: tuple[int, int]) -> list[Person]:
        cfg = DetectorConfig()
        people = []
        for p in given:
            person = person_from_keypoints(
                p.keypoints, p.bbox, hw, cfg.landmark_pad, cfg.landmark_pad_top, p.annotation_id
            )
            if person is not None and present_keypoints(person.keypoints) >= self.min_keypoints:
                people.append(person)
        return people

    def process(
        self, rel: str, size: int, net, crop_cfg, threshold: float, crf: CRFParams | None, index: KeypointIndex | None
    ) -> tuple[dict, list[dict]]:
        """One image -> (manifest row, COCO results records). Bad input becomes a "skipped" row."""
        path = Path(self.input_dir) / rel
        row = {
            "path": rel,
            "size": size,
            "model_id": self.model_id,
            "people": 0,
            "files": [],
            "reason": "",
            "detail": "",
        }
        started = time.perf_counter()
        results: list[dict] = []
        try:
            width, height = check_image_header(path, self.max_pixels)
            row["pixels"] = width * height
            data = path.read_bytes()
            row["size"], row["content_hash"] = len(data), bytes_hash(data)
            image = decode_image_bytes(data)
            if self.method != POSEMASK:
                return self.process_with_peer(rel, image, threshold, row, started)
            people, image_id, none_reason = self.people_for(rel, image, index)
            row["image_id"] = image_id
            if not people:
                row.update(outcome="no_person", reason="no_person", detail=none_reason)
            else:
                masks = segment_people(net, image, people, crop_cfg, threshold, crf, self.device, self.grabcut)
                row["files"] = self.write_masks(rel, masks, threshold)
                row.update(
                    outcome="done", people=len(masks), people_from_box=sum(m.person.source == SOURCE_BOX for m in masks)
                )
                for k, m in enumerate(masks):
                    record = {
                        "image_id": image_id,
                        "file_name": rel,
                        "category_id": 1,
                        "person": k,
                        "segmentation": encode_rle(m.mask),
                        "bbox": [round(float(v), 2) for v in m.person.bbox],
                        "keypoints": np.round(m.person.keypoints.reshape(-1), 2).tolist(),
                        "score": round(m.score, 5),
                        "mask_source": m.person.source,
                    }
                    if m.person.annotation_id is not None:
                        record["annotation_id"] = m.person.annotation_id
                    results.append(record)
        except BadImageError as err:
            row.update(outcome="skipped", reason=err.reason, detail=err.detail)
        except Exception as err:  # noqa: BLE001 - one bad image is reported, the batch goes on
            reason = "bad_keypoints" if "keypoints file" in str(err) else "error"
            row.update(outcome="skipped", reason=reason, detail=f"{type(err).__name__}: {err}")
        row.setdefault("content_hash", "")
        if row["outcome"] != "done":
            self.remove_masks(rel, keep=0)
        row["seconds"] = round(time.perf_counter() - started, 4)
        return row, results

    def process_with_peer(
        self, rel: str, image: np.ndarray, threshold: float, row: dict, started: float
    ) -> tuple[dict, list[dict]]:
        """A whole-photo peer's result: one semantic mask, written as <rel>.labels.png (1 = a person)."""
        mask = peer_segmenter(self.method).segment(image) >= threshold
        row["image_id"] = stable_image_id(rel)
        results = []
        if mask.any():
            target = self.mask_base(rel).with_name(f"{Path(rel).name}.labels.png")
            write_png(target, mask.astype(np.uint8))
            self.remove_masks(rel, keep=0, keep_labels=True)
            row.update(outcome="done", files=[target.relative_to(Path(self.output_dir)).as_posix()])
            results.append(
                {
                    "image_id": row["image_id"],
                    "file_name": rel,
                    "category_id": 1,
                    "person": None,
                    "segmentation": encode_rle(mask),
                    "score": 1.0,
                    "mask_source": self.method,
                }
            )
        else:
            row.update(outcome="no_person", reason="no_person", detail=f"{self.method} found no person pixel")
            self.remove_masks(rel, keep=0)
        row.setdefault("content_hash", "")
        row["seconds"] = round(time.perf_counter() - started, 4)
        return row, results

    def mask_base(self, rel: str) -> Path:
        return Path(self.output_dir) / rel

    def write_masks(self, rel: str, masks: list, threshold: float) -> list[str]:
        """Person PNGs then the label PNG, each renamed into place; returns paths relative to output_dir."""
        base = self.mask_base(rel)
        files = []
        for k, m in enumerate(masks):
            target = base.with_name(f"{base.name}.person{k}.png")
            write_png(target, m.mask.astype(np.uint8) * 255)
            files.append(target)
        target = base.with_name(f"{base.name}.labels.png")
        write_png(target, label_map([m.prob for m in masks], threshold))
        files.append(target)
        self.remove_masks(rel, keep=len(masks))
        return [f.relative_to(Path(self.output_dir)).as_posix() for f in files]

    def remove_masks(self, rel: str, keep: int, keep_labels: bool = False) -> None:
        """Remove this image's person masks numbered >= keep (and its labels when keep == 0, unless kept)."""
        base = self.mask_base(rel)
        if not base.parent.is_dir():
            return
        pattern = re.compile(re.escape(base.name) + r"\.person(\d+)\.png$")
        for f in base.parent.iterdir():
            match = pattern.match(f.name)
            if match and int(match[1]) >= keep:
                f.unlink(missing_ok=True)
        if keep == 0 and not keep_labels:
            base.with_name(f"{base.name}.labels.png").unlink(missing_ok=True)

    # -- the shard ----------------------------------------------------------------------------------

    def load(self) -> tuple:
        """(network, crop config, threshold, CRF params or None) for this run."""
        from models.train import load_model, resolve_device

        inputs = self.input()
        if self.method != POSEMASK:  # a peer needs no network
            return None, config.crop().to_crop_config(), config.evaluation().threshold, None
        if "model" in inputs:
            model_path = inputs["model"]["model"].path
        else:
            model_path = str(require(SHIPPED_MODEL)) if self.model == SHIPPED_NAME else self.model
        net, _, _ = load_model(model_path, resolve_device(self.device))
        crf = None
        if self.crf:
            if "crf" in inputs:
                crf = read_crf_file(inputs["crf"]["crf"].path)
            elif self.model == SHIPPED_NAME:
                crf = shipped_crf()
            else:
                crf = CRFParams.from_dict(dict(self.crf_params))
        return net, config.crop().to_crop_config(), config.evaluation().threshold, crf

    def run(self) -> None:
        folder = Path(self.output().path).parent
        folder.mkdir(parents=True, exist_ok=True)
        # Two workers that scheduled this shard at the same moment (each saw it incomplete) may both
        # be handed it: the second waits for the first, then finds the manifest in place.
        with exclusive_lock(folder / LOCK_NAME):
            if not self.complete():
                self.make_shard(folder)

    def make_shard(self, folder: Path) -> None:
        """Process the shard's images into folder/{journal.jsonl -> results.json, shard.json, manifest.jsonl}."""
        started_at, started = time.time(), time.perf_counter()
        earlier = self.earlier_rows()
        net, crop_cfg, threshold, crf = self.load()
        index = keypoint_index(self.keypoints) if self.keypoints else None
        rows, results, processed = [], [], 0
        journal_path = folder / "journal.jsonl"
        if journal_path.is_file() and not journal_path.read_bytes().endswith(b"\n"):
            with open(journal_path, "a", encoding="utf-8") as j:
                j.write("\n")  # a killed writer's partial last line stays unparseable on its own
        label = f"shard {self.shard_index + 1}/{self.shard_count}"
        with (
            open(journal_path, "a", encoding="utf-8") as journal,
            tqdm(self.items, desc=f"masks {label}", unit="image", disable=not self.progress) as bar,
        ):
            for n, (rel, size, content_hash, keypoints_id) in enumerate(bar):
                before = earlier.get(rel)
                if self.reusable(before, content_hash, keypoints_id):
                    row, records = dict(before.row, run="reused"), before.results
                else:
                    row, records = self.process(rel, size, net, crop_cfg, threshold, crf, index)
                    row.update(keypoints_id=keypoints_id, run="processed")
                    processed += 1
                    if row["outcome"] == "skipped":
                        tqdm.write(f"skipped {rel}: {row['reason']} ({row['detail']})")
                    journal.write(jsonl_line({**row, "results": records}))
                    journal.flush()
                rows.append(row)
                results += records
                self.report_progress(
                    (n + 1) / max(len(self.items), 1),
                    f"{label}: {n + 1}/{len(self.items)} images, {processed} processed",
                )
        seconds = time.perf_counter() - started
        write_json(folder / "results.json", results)
        write_json(
            folder / "shard.json",
            {
                "shard": self.shard_name(),
                "images": len(rows),
                "processed": processed,
                "seconds": round(seconds, 3),
                "started_at": started_at,
                "finished_at": time.time(),
            },
        )
        write_jsonl(self.output().path, rows)
        journal_path.unlink(missing_ok=True)


def write_png(target: Path, array: np.ndarray) -> None:
    """Write a (H,W) uint8/uint16 PNG atomically."""
    with atomic_path(target) as tmp:
        if not cv2.imwrite(str(tmp), array):
            raise OSError(f"cannot write {target}")
