"""TrainModel killed after its first checkpoint resumes at the next epoch when re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, SAMPLE

EPOCHS = 5


def write_config(path: Path, work: Path) -> None:
    path.write_text(f"""
[work]
root = {work}
[coco]
root = {SAMPLE / "coco"}
[TrainModel]
epochs = {EPOCHS}
batch_size = 4
base_channels = 8
depth = 3
num_workers = 0
""")


def luigi_cmd() -> list[str]:
    return [str(Path(sys.executable).parent / "luigi"), "--module", "pipeline", "TrainModel", "--local-scheduler"]


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    cfg, work = tmp_path / "resume.cfg", tmp_path / "work"
    write_config(cfg, work)
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    proc = subprocess.Popen(
        luigi_cmd(), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    checkpoint = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(work.glob("TrainModel/*/checkpoints/last.pt"))
        if found:
            checkpoint = found[0]
            break
        time.sleep(0.05)
    assert checkpoint is not None, "no checkpoint appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = int(torch.load(checkpoint, weights_only=True)["epoch"])
    assert 1 <= killed_at < EPOCHS, "the kill must land mid-training"
    model_dir = checkpoint.parents[1]
    assert not (model_dir / "model.pt").exists()  # a killed run leaves no complete-looking output

    done = subprocess.run(luigi_cmd(), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((model_dir / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] == killed_at
    assert summary["epochs_completed"] == EPOCHS
    epochs = [int(row["epoch"]) for row in summary["history"]]
    assert epochs == list(range(1, EPOCHS + 1))
    assert torch.load(model_dir / "model.pt", weights_only=True)["format"] == "posemask-model"
