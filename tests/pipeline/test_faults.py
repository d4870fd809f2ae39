"""Fault injection: every stage SIGKILLed in a subprocess at several points, re-run, and compared
with an uninterrupted run of the same stage; no temp file may survive the re-run.

One module-scoped harness runs the reference DAG (each stage in its own `luigi` process, timed),
then, in a second work folder, each stage in order: killed as soon as it writes a temp file, killed
at about half and at 90 % of its reference running time, then run to the end. Training is also
killed right after its first checkpoint, and must resume from it. Tiny configuration, the sample.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from tests.conftest import SAMPLE
from tests.pipeline.test_scheduler import (
    done_shards,
    environment,
    free_port,
    many_photos,
    masks_command,
    start_luigid,
    wait_for,
)

LUIGI = Path(sys.executable).parent / "luigi"
PHOTOS = ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg"]
KEYPOINTS = SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json"
TEMP_MARK = ".tmp"


def config_text(work: Path) -> str:
    return f"""
[core]
local_scheduler = true
log_level = WARNING
no_lock = true

[work]
root = {work}

[coco]
root = {SAMPLE / "coco"}

[cache]
processes = 2
window = 8

[TrainModel]
epochs = 3
batch_size = 8
base_channels = 4
depth = 2
num_workers = 0
num_threads = 1
augment = full

[TuneCRF]
grid = {{"iterations": [3], "bilateral_sxy": [30, 60]}}
max_samples = 8
"""


@dataclass
class Stage:
    name: str
    args: list[str]
    folder: str  # under the work root (or "masks" for the nightly output), where its files appear
    durations: list[float] = field(default_factory=list)


def stages(photos: Path, masks: Path) -> list[Stage]:
    coco_val = ["--dataset", "coco", "--split", "val"]
    night = ["--input-dir", str(photos), "--output-dir", str(masks), "--model", "unet-coco"]
    return [
        Stage("COCOPersons", ["COCOPersons", *coco_val], "COCOPersons"),
        Stage("BuildCache", ["BuildCache", *coco_val], "BuildCache"),
        Stage("TrainModel", ["TrainModel"], "TrainModel"),
        Stage("PredictMasks", ["PredictMasks", "--model", "unet-coco", *coco_val], "PredictMasks"),
        Stage("RefineCRF", ["RefineCRF", "--model", "unet-coco", *coco_val], "RefineCRF"),
        Stage("Evaluate", ["Evaluate", "--method", "unet-coco+crf", *coco_val], "Evaluate"),
        Stage("MaskShard", ["GenerateMasks", *night, "--keypoints", str(KEYPOINTS), "--progress", "false"], "masks"),
    ]


def launch(stage: Stage, cfg: Path) -> subprocess.Popen:
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg), PYTHONUNBUFFERED="1")
    command = [str(LUIGI), "--module", "pipeline", *stage.args]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def temps_under(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return [p for p in folder.rglob(".*") if TEMP_MARK in p.name]


def run_to_end(stage: Stage, cfg: Path) -> float:
    started = time.perf_counter()
    process = launch(stage, cfg)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, f"{stage.name} failed:\n{err[-3000:]}"
    return time.perf_counter() - started


def kill_when(stage: Stage, cfg: Path, ready, deadline: float = 120.0) -> bool:
    """Launch the stage and SIGKILL it once ready() holds; True when it was still running then."""
    process = launch(stage, cfg)
    started = time.perf_counter()
    while process.poll() is None and time.perf_counter() - started < deadline:
        if ready(time.perf_counter() - started):
            process.send_signal(signal.SIGKILL)
            process.wait()
            return process.returncode == -signal.SIGKILL
        time.sleep(0.005)
    process.kill()
    process.wait()
    return False


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("faults")
    photos = root / "photos"
    photos.mkdir()
    for name in PHOTOS:
        (photos / name).write_bytes((SAMPLE / "coco" / "val2017" / name).read_bytes())
    runs = {}
    for kind in ("reference", "faulty"):
        work = root / kind / "work"
        cfg = root / kind / "luigi.cfg"
        cfg.parent.mkdir(parents=True)
        cfg.write_text(config_text(work))
        runs[kind] = {"work": work, "cfg": cfg, "stages": stages(photos, root / kind / "masks")}
    reference = runs["reference"]
    for stage in reference["stages"]:
        stage.durations.append(run_to_end(stage, reference["cfg"]))
    faulty, kills = runs["faulty"], {}
    for ref_stage, stage in zip(reference["stages"], faulty["stages"], strict=True):
        base = faulty["work"] if stage.folder != "masks" else faulty["work"].parent
        folder = base / stage.folder

        def mid_run(t: float, folder: Path = folder) -> bool:
            # a temp file, or (the nightly shard) a journal: written after each photo, so a kill still
            # lands when a fast shard's temp files live for less than one poll
            return bool(temps_under(folder)) or any(folder.glob("shards/*/journal.jsonl"))

        def attempt(ready, stage: Stage = stage, folder: Path = folder) -> bool:
            landed = kill_when(stage, faulty["cfg"], ready)
            if not landed and folder.exists():
                # it finished before the kill (a fast stage on a quiet machine): start the next attempt
                # from nothing, or every later kill would meet a complete stage that exits at once
                shutil.rmtree(folder)
            return landed

        landed = [attempt(mid_run)]
        total = ref_stage.durations[0]
        for fraction in (0.5, 0.9):
            landed.append(attempt(lambda t, limit=fraction * total: t >= limit))
        if stage.name == "TrainModel":
            # a fresh start, killed right after its first checkpoint: the re-run must resume from it
            # (the folder may be gone already: an attempt that met a finished stage resets it)
            shutil.rmtree(folder, ignore_errors=True)
            landed.append(
                kill_when(stage, faulty["cfg"], lambda t, folder=folder: any(folder.glob("*/checkpoints/last.pt")))
            )
        stage.durations.append(run_to_end(stage, faulty["cfg"]))
        kills[stage.name] = landed
    return {"runs": runs, "kills": kills, "root": root}


def one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"{pattern} under {folder}: {found}"
    return found[0]


def paired(harness: dict, pattern: str) -> tuple[Path, Path]:
    ref, bad = (harness["runs"][k]["work"] for k in ("reference", "faulty"))
    return one(ref, pattern), one(bad, pattern)


def test_every_stage_was_killed_mid_run(harness: dict) -> None:
    for name, landed in harness["kills"].items():
        assert any(landed), f"{name}: no kill landed while the stage was running ({landed})"


def test_no_temp_file_survives_the_reruns(harness: dict) -> None:
    assert temps_under(harness["root"] / "faulty") == []


def test_records_and_cache_equal_an_uninterrupted_run(harness: dict) -> None:
    ref, bad = paired(harness, "COCOPersons/coco-val-*/persons.jsonl")
    assert ref.read_bytes() == bad.read_bytes()
    ref, bad = paired(harness, "BuildCache/coco-val-*/cache.h5")
    with h5py.File(ref, "r") as a, h5py.File(bad, "r") as b:
        assert set(a) == set(b)
        for name in a:
            np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)


def test_training_resumed_from_its_checkpoint_to_the_same_epochs(harness: dict) -> None:
    ref, bad = paired(harness, "TrainModel/*/train_summary.json")
    a, b = json.loads(ref.read_text()), json.loads(bad.read_text())
    assert a["epochs_completed"] == b["epochs_completed"] == 3
    assert b["resumed_from_epoch"] is not None and b["resumed_from_epoch"] >= 1
    assert [row["epoch"] for row in b["history"]] == [1, 2, 3]
    np.testing.assert_allclose(
        [r["train_loss"] for r in a["history"]], [r["train_loss"] for r in b["history"]], atol=1e-4
    )


def test_predictions_crf_and_scores_equal_an_uninterrupted_run(harness: dict) -> None:
    for pattern in ("PredictMasks/*coco-val*/pred.h5", "RefineCRF/*coco-val*/pred.h5"):
        ref, bad = paired(harness, pattern)
        with h5py.File(ref, "r") as a, h5py.File(bad, "r") as b:
            np.testing.assert_array_equal(a["instance_id"][...], b["instance_id"][...])
            for name in a:
                if a[name].dtype.kind == "f":
                    np.testing.assert_allclose(a[name][...], b[name][...], atol=2e-3, err_msg=pattern)
    ref, bad = paired(harness, "Evaluate/*/scores.csv")
    rows_a, rows_b = (list(csv.DictReader(p.open())) for p in (ref, bad))
    assert [r["instance_id"] for r in rows_a] == [r["instance_id"] for r in rows_b]
    np.testing.assert_allclose(
        [float(r["iou_full"]) for r in rows_a], [float(r["iou_full"]) for r in rows_b], atol=2e-3
    )


def test_masks_and_manifests_equal_an_uninterrupted_run(harness: dict) -> None:
    ref, bad = (harness["runs"][k]["work"].parent / "masks" for k in ("reference", "faulty"))
    ref_pngs = sorted(p.relative_to(ref) for p in ref.glob("*.png"))
    assert ref_pngs and ref_pngs == sorted(p.relative_to(bad) for p in bad.glob("*.png"))
    for rel in ref_pngs:
        a, b = (cv2.imread(str(folder / rel), cv2.IMREAD_UNCHANGED) for folder in (ref, bad))
        assert (a != b).mean() < 0.001, rel
    summary_a, summary_b = (json.loads((folder / "summary.json").read_text()) for folder in (ref, bad))
    for key in ("images", "done", "people", "skipped", "problems_total"):
        assert summary_a[key] == summary_b[key], key


# ----------------------------------------------------------------------------- `posemask masks`: kills and signals
# (issue 22; the helpers are tests/pipeline/test_scheduler.py's)


@pytest.mark.slow
def test_a_night_whose_scheduler_dies_stops_within_30_s_and_the_rerun_completes(tmp_path, tiny_model):
    photos, keypoints = many_photos(tmp_path / "photos", 12)  # 48 shards: minutes of work
    env = environment(tmp_path)
    out = tmp_path / "out"
    port = free_port()
    luigid = start_luigid(tmp_path, port)
    command = masks_command(photos, out, tiny_model, keypoints, "--scheduler-url", f"http://127.0.0.1:{port}")
    night = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: done_shards(out) >= 2, 120, "the first shards")
    finally:
        luigid.kill()
        luigid.wait(timeout=10)
    killed_at = time.monotonic()
    _, stderr = night.communicate(timeout=60)
    assert time.monotonic() - killed_at < 30
    assert night.returncode == 3, stderr
    assert "stopped answering" in stderr
    assert done_shards(out) < 48, "the night finished before the scheduler died: the test proves nothing"
    rerun = subprocess.run(masks_command(photos, out, tiny_model, keypoints), env=env, capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert done_shards(out) == 48


def temp_files(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*") if ".tmp-" in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_night_cleanly_and_the_rerun_continues(tmp_path, tiny_model, signum):
    photos, keypoints = many_photos(tmp_path / "photos", 8)
    out = tmp_path / "out"
    env = environment(tmp_path)
    night = subprocess.Popen(
        masks_command(photos, out, tiny_model, keypoints), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for(lambda: done_shards(out) >= 2, 120, "the first shards")
    night.send_signal(signum)
    _, stderr = night.communicate(timeout=30)
    message = stderr.decode()
    assert night.returncode == 128 + signum, message
    assert f"stopped by {signal.Signals(signum).name}" in message and "Traceback" not in message
    assert not temp_files(out)
    partial = done_shards(out)
    assert partial < 32
    rerun = subprocess.run(masks_command(photos, out, tiny_model, keypoints), env=env, capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr  # the lock was released: not 4
    assert done_shards(out) == 32


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        found += [int(c) for c in children]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_the_forked_workers_die_with_a_killed_night(tmp_path, tiny_model):
    photos, keypoints = many_photos(tmp_path / "photos", 8)
    out = tmp_path / "out"
    env = environment(tmp_path)
    # two long shards of 16 photos with the dense CRF: an orphan would go on writing for many seconds
    command = masks_command(photos, out, tiny_model, keypoints, "--workers", "2", "--crf")
    command[command.index("--shard-size") + 1] = "16"
    night = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(children_of(night.pid)) == 2, 120, "two forked workers at work")
    time.sleep(1.0)  # both well inside their shard
    workers = children_of(night.pid)
    night.kill()  # SIGKILL: the night cannot clean up; its workers must not outlive it
    done_at_kill = done_shards(out)
    assert done_at_kill < 2, "the shards finished before the kill: the test proves nothing"
    night.wait(timeout=10)
    wait_for(lambda: not any(alive(p) for p in workers), 3, "the orphaned workers to die")
    time.sleep(3.0)
    assert done_shards(out) == done_at_kill, "an orphaned worker went on writing after the night was killed"
    rerun = subprocess.run(command, env=env, capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr  # not 4: no orphan holds the lock
    rows = [json.loads(line) for m in (out / "shards").glob("*/manifest.jsonl") for line in m.open()]
    assert len(rows) == 32
