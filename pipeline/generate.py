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

The tasks hold the locks and call the plain code; their shared parameters and the model identity are
pipeline/mask_settings.py's, the plan and the summary pipeline/lib/night.py's, a shard's work
pipeline/lib/mask_shard.py's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import luigi
import numpy as np

from models.classical import CRFParams
from models.people import DetectorConfig, Person, estimate_people, iter_person_masks, person_samples
from models.utils import SHIPPED_MODEL, SHIPPED_NAME, require
from pipeline import config
from pipeline.config import with_range
from pipeline.core import PoseMaskTask
from pipeline.crf import read_crf_file
from pipeline.estimators import POSEMASK, box_person_segmenter, estimators, peer_segmenter, pose_estimate, shipped_crf
from pipeline.lib.files import exclusive_lock, read_jsonl, short_hash, write_json
from pipeline.lib.mask_shard import make_shard
from pipeline.lib.night import (
    STATE_DIR,
    Plan,
    format_summary,
    plan_folder,
    prune_stale_shards,
    read_json_or_empty,
    summarize_rows,
)
from pipeline.lib.photo_masker import PhotoMasker
from pipeline.lib.review import REVIEW_DIR, build_review
from pipeline.lib.shard_folders import SHARDS_DIR, earlier_rows, shard_intact, shard_name
from pipeline.mask_settings import MaskSettings, keypoint_index, native_bf16, network
from pipeline.settings import check_settings

LOCK_NAME = ".lock"  # held (flock) by the process that makes a shard


def read_json_list(manifest: str, name: str) -> list:
    """The JSON list in the file `name` beside a shard's manifest ([] when it cannot be read)."""
    try:
        data = json.loads((Path(manifest).parent / name).read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def night_settings() -> list[type]:
    """The config sections and tasks whose settings shape a night (checked before it starts)."""
    return [config.crop, config.detect, config.pose, config.resources, config.evaluation, GenerateMasks, MaskShard]


class GenerateMasks(MaskSettings, PoseMaskTask):
    """Masks for every person in every photo under input_dir, shard by shard (see module docstring).

    ``luigi --module pipeline GenerateMasks --input-dir photos/ --output-dir masks/``
    """

    shard_size = with_range(luigi.IntParameter(default=200, description="at most this many images per MaskShard"), 1)
    review = luigi.BoolParameter(
        default=True,
        significant=False,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="write OUTPUT/review/index.html (pipeline/lib/review.py) when the night changed something",
    )
    print_summary = luigi.BoolParameter(
        default=True,
        significant=False,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="print the summary when done (the posemask command prints its own)",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._plan: Plan | None = None

    def plan(self) -> Plan:
        """Discover, hash and shard the folder (lib/night.py), once per task instance.

        requires() is called often; luigi reuses instances with the same parameters within a
        process, so a long-lived process that builds twice calls
        luigi.task_register.Register.clear_instance_cache() in between.
        """
        if self._plan is None:
            problems = check_settings(night_settings())
            if problems:  # before anything is read or written
                raise ValueError("settings out of range or of the wrong type:\n  " + "\n  ".join(problems))
            self._plan = plan_folder(
                Path(self.input_dir),
                Path(self.output_dir),
                self.model_id(),
                self.shard_size,
                keypoint_index(self.keypoints) if self.keypoints else None,
                self.keypoints,
                estimator_id=f"estimator:{short_hash(config.detect().settings(), 8)}",
            )
        return self._plan

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
        try:  # a shard finished after the last summary ran tonight (a repaired one keeps its name)
            last_summary_at = (out / "summary.json").stat().st_mtime
        except OSError:
            last_summary_at = 0.0
        rows, shard_names, seconds, new_shards = [], [], 0.0, 0
        for shard in self.requires():
            name = shard.shard_name()
            shard_names.append(name)
            shard_rows = list(read_jsonl(shard.output().path))
            stats = read_json_or_empty(Path(shard.output().path).with_name("shard.json"))
            is_new = name not in earlier_shards or float(stats.get("finished_at", 0.0)) > last_summary_at
            if is_new:
                new_shards += 1
                seconds += float(stats.get("seconds", 0.0))
            rows += [dict(r, new=is_new) for r in shard_rows]
        removed = prune_stale_shards(out, shard_names, {f for r in rows for f in r.get("files", [])})
        summary = summarize_rows(rows, plan, seconds)
        summary["removed_masks"] = removed
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
                "review": str(out / REVIEW_DIR / "index.html") if self.review else None,
            }
        )
        write_json(out / "summary.json", summary)
        if self.review:
            results = [r for shard in self.requires() for r in read_json_list(shard.output().path, "results.json")]
            build_review(out, summary, rows, results, Path(self.input_dir))
        write_json(self.output().path, summary)
        if self.print_summary:
            print(format_summary(summary))


class MaskShard(MaskSettings, PoseMaskTask):
    """Masks for one shard's images -> shards/<name>/{manifest.jsonl, results.json, shard.json}.

    The work itself is pipeline/lib/mask_shard.py's; this task loads the model and estimators,
    finds the earlier rows and holds the shard's lock.
    """

    shard_index = luigi.IntParameter()
    shard_count = luigi.IntParameter()
    model_id = luigi.Parameter(description="MaskSettings.model_id() of GenerateMasks")
    items = luigi.ListParameter(description="[relative path, size, content hash, keypoints id] per image")

    def requires(self) -> dict[str, luigi.Task]:
        return self.model_requirement()

    def shard_name(self) -> str:
        return shard_name(self.model_id, self.shard_index, self.shard_count, self.items, self.max_pixels)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(Path(self.output_dir) / SHARDS_DIR / self.shard_name() / "manifest.jsonl"))

    def complete(self) -> bool:
        """The shard still holds what it promised (lib/shard_folders.shard_intact): a lost mask file,
        results.json or manifest line makes it run again, redoing only the photos that lost something."""
        return shard_intact(Path(self.output().path).parent, self.items, Path(self.output_dir))

    def load(self) -> tuple:
        """(network or None for a peer, CRF params or None) for this run."""
        if self.method != POSEMASK:
            return None, None
        config.use_torch_threads()
        inputs = self.input()
        if "model" in inputs:
            model_path = inputs["model"]["model"].path
        else:
            model_path = str(require(SHIPPED_MODEL)) if self.model == SHIPPED_NAME else self.model
        net = network(model_path, self.device)
        net.inference_flip = self.flip
        net.inference_bf16 = self.bf16 and native_bf16(self.device)
        crf = None
        if self.crf:
            if "crf" in inputs:
                crf = read_crf_file(inputs["crf"]["crf"].path)
            elif self.model == SHIPPED_NAME:
                crf = shipped_crf()
            else:
                crf = CRFParams.from_dict(dict(self.crf_params))
        return net, crf

    def masker(self) -> PhotoMasker:
        """The plain per-photo worker with this run's model, CRF, estimators and settings."""
        net, crf = self.load()
        crop_cfg, threshold = config.crop().to_crop_config(), config.evaluation().threshold
        box_fallback, pose_check = config.detect().box_fallback, config.pose().check()
        segmentation_weight = config.pose().segmentation_weight

        def find_people(image: np.ndarray) -> list[Person]:
            detector, estimator = estimators()
            estimate = pose_estimate(estimator, segmentation_weight)
            return estimate_people(image, detector.detect, estimate, self.min_keypoints, box_fallback, pose_check)

        box_segmenter, box_prior = box_person_segmenter(), config.detect().box_prior()
        calibration = self.quality_calibration()

        def samples(image: np.ndarray, people: list[Person]) -> list[dict] | None:
            # made ahead (in the read-ahead thread) up to one batch: more would hold many crops at once
            if len(people) > self.people_per_batch:
                return None
            return person_samples(image, people, crop_cfg, box_prior)

        def segment(image: np.ndarray, people: list[Person], samples: list[dict] | None = None) -> Iterator:
            return iter_person_masks(
                net,
                image,
                people,
                crop_cfg,
                threshold,
                crf,
                self.device,
                self.grabcut,
                self.people_per_batch,
                box_segmenter,
                samples,
                box_prior,
                segmentation_weight,
                calibration,
            )

        peer = peer_segmenter(self.method).segment if self.method != POSEMASK else None
        pads = DetectorConfig()
        return PhotoMasker(
            input_dir=Path(self.input_dir),
            output_dir=Path(self.output_dir),
            model_id=self.model_id,
            max_pixels=self.max_pixels,
            min_keypoints=self.min_keypoints,
            threshold=threshold,
            index=keypoint_index(self.keypoints) if self.keypoints else None,
            find_people=find_people,
            segment=segment,
            peer=peer,
            peer_name=self.method,
            person_box_pad=pads.landmark_pad,
            person_box_pad_top=pads.landmark_pad_top,
            samples=samples if net is not None else None,
        )

    def run(self) -> None:
        folder = Path(self.output().path).parent
        folder.mkdir(parents=True, exist_ok=True)
        # Two workers that scheduled this shard at the same moment (each saw it incomplete) may both
        # be handed it: the second waits for the first, then finds the manifest in place.
        with exclusive_lock(folder / LOCK_NAME):
            if self.complete():
                return
            paths = {item[0] for item in self.items}
            earlier = earlier_rows(Path(self.output_dir), self.shard_index, self.shard_count, self.model_id, paths)
            label = f"shard {self.shard_index + 1}/{self.shard_count}"

            def progress(done: int, total: int, processed: int) -> None:
                self.report_progress(done / max(total, 1), f"{label}: {done}/{total} images, {processed} processed")

            make_shard(
                self.masker(),
                self.items,
                earlier,
                folder,
                self.shard_name(),
                label,
                self.progress,
                progress,
                read_ahead=config.resources().read_ahead,
            )
