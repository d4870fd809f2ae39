"""A night over a photo folder, as plain code: the plan (photos found, hashed and sharded) and the summary.

plan_folder(root, out, model_id, shard_size, index, keypoints_file, estimator_id) -> Plan
    every photo under root (lib/folder.discover_images), its content hash (cached in
    out/.posemask/hashes.json), what its keypoints come from (keypoint_id), its shard
summarize_rows(rows, plan, seconds)   the numbers of summary.json from the manifest rows
format_summary(summary)               what the posemask command prints
prune_stale_shards(out, current, kept)  shard folders the current set replaced, and mask files no current row lists
output_owner(out) / claim_output(out, root)   the one photo folder an output folder belongs to
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.lib.files import read_jsonl, resolve_inside, write_json
from pipeline.lib.folder import HashCache, discover_images, file_hash, shard_count, shard_of
from pipeline.lib.keypoint_files import AMBIGUOUS_KEYPOINTS, KeypointIndex, people_digest, sidecar_path
from pipeline.lib.review import LOW_QUALITY
from pipeline.lib.shard_folders import SHARD_NAME, SHARDS_DIR

STATE_DIR = ".posemask"
OWNER_FILE = "input.json"
# held by a local-scheduler night for its whole run (OUTPUT/.posemask/night.lock, pipeline/cli.py)
NIGHT_LOCK = "night.lock"


class OutputInUseError(ValueError):
    """The output folder holds the masks of another photo folder."""


def output_owner(out: Path) -> str | None:
    """The photo folder (resolved path) whose masks `out` holds, or None for a new output folder."""
    return read_json_or_empty(out / STATE_DIR / OWNER_FILE).get("input_dir")


def claim_output(out: Path, root: Path) -> None:
    """Bind `out` to the photo folder `root` on its first night; OutputInUseError for another folder.

    A night prunes the shards its plan replaced and mirrors the photo folder's paths: a second
    folder in the same output would delete the first one's manifests and overwrite its masks.
    """
    mine, theirs = str(root.resolve()), output_owner(out)
    if theirs is None:
        write_json(out / STATE_DIR / OWNER_FILE, {"input_dir": mine})
    elif theirs != mine:
        raise OutputInUseError(
            f"output folder {out} holds the masks of {theirs}, not of {mine}: give each photo folder its own "
            f"output folder (or delete {out / STATE_DIR / OWNER_FILE} to hand this one over)"
        )


@dataclass
class Plan:
    """What GenerateMasks found: items per shard, refused files, keypoint records without an image."""

    model_id: str
    shards: dict[int, list[tuple[str, int, str, str]]] = field(default_factory=dict)
    count: int = 1
    images: int = 0
    refused: list[dict] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    keypoint_problems: list[dict] = field(default_factory=list)
    hash_hits: int = 0
    hash_misses: int = 0


def keypoint_id(root: Path, rel: str, index: KeypointIndex | None, estimator_id: str) -> str:
    """What a photo's keypoints come from, hashed (a change re-runs the photo)."""
    if index is not None:
        key, people = index.lookup(rel)
        return f"file:{people_digest(people)}" if key else "file:none"
    sidecar = sidecar_path(root / rel)
    if sidecar.is_file() and not sidecar.is_symlink():
        return f"sidecar:{file_hash(sidecar)[:12]}"
    return estimator_id


def plan_folder(
    root: Path,
    out: Path,
    model_id: str,
    shard_size: int,
    index: KeypointIndex | None,
    keypoints_file: str,
    estimator_id: str,
) -> Plan:
    """Discover, hash and shard the photos under `root` (the output folder `out` is left out).

    `out` must belong to `root` (claim_output: OutputInUseError before anything is written).
    """
    claim_output(out, root)
    found = discover_images(root, exclude=[out])
    hashes = HashCache(out / STATE_DIR / "hashes.json")
    plan = Plan(model_id=model_id, refused=found.refused, images=len(found.images), hidden=found.hidden)
    plan.count = shard_count(found.images, shard_size)
    matched: set[str] = set()
    name_counts = Counter(Path(rel).name for rel in found.images)
    for rel in found.images:
        size, digest = hashes.hash(root, rel)
        kp_id = keypoint_id(root, rel, index, estimator_id)
        if index is not None:
            key, _ = index.lookup(rel)
            if key:
                matched.add(key)
            if key == f"name:{Path(rel).name}" and name_counts[Path(rel).name] > 1 and key != f"name:{rel}":
                # the file names the photo by its name alone and two photos have it: the shard skips
                # the photo as "ambiguous_file_name" rather than draw one photo's people on the other
                kp_id = AMBIGUOUS_KEYPOINTS
        item = (rel, size, digest, kp_id)
        plan.shards.setdefault(shard_of(rel, plan.count), []).append(item)
    if hashes.misses:
        hashes.save()
    plan.hash_hits, plan.hash_misses = hashes.hits, hashes.misses
    if index is not None:
        plan.keypoint_problems = [dict(p, file=keypoints_file) for p in index.problems]
        for key in sorted(set(index.keys()) - matched):
            plan.keypoint_problems.append(
                {
                    "file": key.split(":", 1)[1],
                    "reason": "keypoints_for_missing_image",
                    "detail": f"{keypoints_file} has people for {key} but no such image is under {root}",
                }
            )
    return plan


def read_json_or_empty(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def summarize_rows(rows: list[dict], plan: Plan, seconds: float) -> dict:
    """The night's numbers from the manifest rows (each with `new`: its shard ran since the last summary)."""
    processed = [r for r in rows if r.get("run") == "processed" and r.get("new")]
    repaired = [r for r in processed if r.get("repaired")]
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
    pose_reasons: Counter = Counter()
    for r in rows:
        pose_reasons.update(r.get("pose_reasons") or {})
    return {
        "images": len(rows),
        "processed": len(processed),
        # done before, but their masks or records were lost since (a disk hiccup, an rm): redone
        "repaired": len(repaired),
        "reused": len(rows) - len(processed),
        "done": sum(r["outcome"] == "done" for r in rows),
        "no_person": sum(r["outcome"] == "no_person" for r in rows),
        "people": sum(int(r.get("people", 0)) for r in rows),
        # detected people by why they have their pose or none (models.people.ownership.REASONS)
        "pose_reasons": dict(sorted(pose_reasons.items())),
        # masks whose quality (expected IoU) is under the review page's "low quality": the ones to check
        "low_quality": sum(q is not None and q < LOW_QUALITY for r in rows for q in r.get("quality") or []),
        "skipped": dict(skipped),
        "skipped_total": sum(skipped.values()),
        "refused": dict(refused),
        "hidden": len(plan.hidden),
        "hidden_examples": plan.hidden[:10],
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
            *(
                [
                    f"  repaired: {summary.get('repaired', 0)} photos whose masks or records were lost; "
                    f"removed: {summary.get('removed_masks', 0)} masks of photos no longer in the folder"
                ]
                if summary.get("repaired") or summary.get("removed_masks")
                else []
            ),
            *(
                ["  detected people's poses: " + ", ".join(f"{k} {v}" for k, v in summary["pose_reasons"].items())]
                if summary.get("pose_reasons")
                else []
            ),
            *(
                [
                    f"  to check: {summary['low_quality']} masks of quality under {LOW_QUALITY}"
                    + (f"; worst first: {summary['review']}" if summary.get("review") else "")
                ]
                if "low_quality" in summary
                else []
            ),
            f"  skipped: {summary['problems_total']} ({skipped})",
            *(
                [f"  hidden, not read: {summary['hidden']} (e.g. {', '.join(summary['hidden_examples'][:3])})"]
                if summary.get("hidden")
                else []
            ),
            f"  time: {summary['seconds']:.1f} s, {rate}",
            f"  masks: {summary['output_dir']}  (summary.json, shards/*/manifest.jsonl, shards/*/results.json)",
        ]
    )


def prune_stale_shards(out: Path, current: list[str], kept_files: set[str]) -> int:
    """Remove every shard folder the current set replaced, of any model (an OUTPUT holds one set of
    masks: another model's rows would describe files this night rewrote), and the mask files their
    rows list that no current row lists (photos deleted from INPUT; nothing else, since a photo
    done again rewrites or removes its own files) -> how many mask files were removed.

    The current manifests hold every row that still stands (reused rows are copied), so nothing
    is lost.
    """
    removed = 0
    current_set = set(current)
    for folder in (out / SHARDS_DIR).glob("*"):
        if not SHARD_NAME.match(folder.name) or folder.name in current_set:
            continue
        listed = [row for name in ("manifest.jsonl", "journal.jsonl") for row in read_jsonl(folder / name)]
        for row in listed:
            for rel in row.get("files", []):
                if rel in kept_files:
                    continue
                try:
                    target = resolve_inside(out, rel)
                    if target.is_file():
                        target.unlink()
                        removed += 1
                except (OSError, ValueError):  # a row naming a path outside OUTPUT is never followed
                    continue
        shutil.rmtree(folder, ignore_errors=True)
    return removed
