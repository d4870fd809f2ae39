"""A night checks what it relies on and repairs what was lost: a mask file, a shard's results.json,
the end of a manifest; a photo deleted from INPUT takes its masks with it; another model leaves
no row or mask of the first (pipeline/lib/shard_folders.py shard_intact, pipeline/lib/night.py
prune_stale_shards)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.network.checkpoints import save_model
from models.network.unet import ModelConfig, PoseUNet
from pipeline.lib import files
from tests.pipeline.test_generate import PHOTOS, check_consistent, copy_photos, generate, keypoints_subset


def tiny(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    cfg = ModelConfig(base_channels=4, depth=2, zero_init_last=False)
    save_model(path, PoseUNet(cfg), cfg, {"note": f"untrained test model, seed {seed}"})
    return path


@pytest.fixture
def night(tmp_path: Path, luigi_config):  # noqa: ANN201
    """A finished night over 4 photos in 2 shards; call it again for the next night -> summary."""
    photos = copy_photos(tmp_path / "photos", PHOTOS)
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS)
    out = tmp_path / "masks"
    model = tiny(tmp_path / "a.pt", 0)

    def run(model_path: Path = model) -> dict:
        ok, summary = generate(
            input_dir=str(photos), output_dir=str(out), model=str(model_path), keypoints=str(keypoints), shard_size=2
        )
        assert ok
        check_consistent(out)
        return summary

    first = run()
    assert first["processed"] == 4 and first["done"] == 4
    run.photos, run.out, run.tmp = photos, out, tmp_path  # type: ignore[attr-defined]
    return run


def rows_by_path(out: Path) -> dict[str, dict]:
    return {r["path"]: r for m in sorted((out / "shards").glob("*/manifest.jsonl")) for r in files.read_jsonl(m)}


def untouched(out: Path) -> float:
    return (out / "summary.json").stat().st_mtime_ns


def test_a_lost_mask_is_redone_and_counted_and_nothing_else_runs(night):
    out = night.out
    stamp = untouched(out)
    night()
    assert untouched(out) == stamp  # a finished night is a no-op: not even its summary is rewritten
    lost = out / rows_by_path(out)[PHOTOS[0]]["files"][0]
    before = lost.read_bytes()
    lost.unlink()
    summary = night()
    assert summary["repaired"] == 1 and summary["processed"] == 1
    assert lost.read_bytes() == before
    stamp = untouched(out)
    night()
    assert untouched(out) == stamp


def test_a_lost_results_json_is_rebuilt_even_when_a_photo_of_its_shard_changed(night):
    out = night.out
    results = next(
        m.with_name("results.json")
        for m in (out / "shards").glob("*/manifest.jsonl")
        if PHOTOS[1] in {r["path"] for r in files.read_jsonl(m)}
    )
    records = json.loads(results.read_text())
    results.unlink()
    summary = night()
    assert summary["repaired"] == 2  # the shard's two photos: their records were lost
    assert sorted(r["file_name"] for r in json.loads(results.read_text())) == sorted(r["file_name"] for r in records)
    # lost again, and this time a photo of the shard changes too (it used to fail every later night)
    results.unlink()
    photo = night.photos / PHOTOS[1]
    photo.write_bytes(photo.read_bytes() + b"\0")  # another content hash, the same pixels
    summary = night()
    assert summary["processed"] >= 1 and summary["done"] == 4


def test_a_manifest_that_lost_its_end_is_completed(night):
    out = night.out
    manifest = next((out / "shards").glob("*/manifest.jsonl"))
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:-1]))
    summary = night()
    assert summary["images"] == 4 and summary["done"] == 4
    assert len(manifest.read_text().splitlines()) == len(lines)


def test_a_photo_deleted_from_input_takes_its_masks_and_rows_with_it(night):
    out = night.out
    gone = rows_by_path(out)[PHOTOS[2]]["files"]
    assert gone
    (night.photos / PHOTOS[2]).unlink()
    summary = night()
    assert summary["images"] == 3 and summary["removed_masks"] == len(gone)
    assert not any((out / f).exists() for f in gone)
    assert PHOTOS[2] not in rows_by_path(out)
    check_consistent(out)


def test_another_model_leaves_no_row_or_mask_of_the_first_and_coming_back_recomputes(night):
    out = night.out
    first_ids = {r["model_id"] for r in rows_by_path(out).values()}
    other = tiny(night.tmp / "b.pt", 1)
    summary = night(other)
    assert summary["processed"] == 4
    rows = rows_by_path(out)
    assert len(rows) == 4 and not first_ids & {r["model_id"] for r in rows.values()}
    assert len(list((out / "shards").glob("*/manifest.jsonl"))) == len(summary["shards"])
    back = night()  # the first model again: its old shards were pruned, so it computes, not reports
    assert back["processed"] == 4 and {r["model_id"] for r in rows_by_path(out).values()} == first_ids
    check_consistent(out)


def test_masks_scored_by_an_earlier_quality_rule_are_scored_again(night, monkeypatch):
    """The quality rule is part of the model identity (as the calibration): after an upgrade that
    changes how qualities are made, the next night recomputes instead of reusing the old scores."""
    from pipeline import mask_settings

    first_ids = {r["model_id"] for r in rows_by_path(night.out).values()}
    monkeypatch.setattr(mask_settings, "QUALITY_RULE", mask_settings.QUALITY_RULE + 1)
    summary = night()
    assert summary["processed"] == 4 and not first_ids & {r["model_id"] for r in rows_by_path(night.out).values()}
    check_consistent(night.out)
