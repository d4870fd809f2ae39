"""TrainModel(select="best") without a best.pt keeps the last checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import models.network as models_train
from bench.synthetic import write_synthetic_cache
from models.network.checkpoints import load_model
from pipeline.train import TrainModel


def test_select_best_falls_back_to_last_without_best_pt(luigi_config, tmp_path: Path, monkeypatch) -> None:
    train_cache = write_synthetic_cache(tmp_path / "train.h5", 4, seed=1, size=64)
    val_cache = write_synthetic_cache(tmp_path / "val.h5", 4, seed=2, size=64)
    real_train = models_train.train

    def train_without_best(*args, **kwargs):
        result = real_train(*args, **kwargs)
        Path(result["best_checkpoint"]).unlink()  # as when no epoch had a finite validation IoU
        return result

    monkeypatch.setattr(models_train, "train", train_without_best)  # TrainModel.run imports it from there
    monkeypatch.setattr(TrainModel, "caches", lambda self: ([str(train_cache)], [str(val_cache)]))
    torch.set_num_threads(1)
    task = TrainModel(select="best", epochs=1, batch_size=4, base_channels=4, depth=2, num_workers=0, device="cpu")
    task.run()
    summary = json.loads(Path(task.output()["summary"].path).read_text())
    assert summary["selected"] == "last"
    net, _, meta = load_model(task.output()["model"].path, torch.device("cpu"))
    last = torch.load(task.work_dir() / "checkpoints" / "last.pt", weights_only=True)
    for key, value in last["model_state"].items():
        assert torch.equal(net.state_dict()[key].cpu(), value), key
