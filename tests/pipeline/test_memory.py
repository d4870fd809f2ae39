"""A long night's memory stays flat: the resident memory of `posemask masks` over hundreds of
photos grows by less than 50 MB after its warm-up (bench/night_memory.py measures thousands)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.night_memory import make_photos, night_memory
from models.network.checkpoints import save_model
from models.network.unet import ModelConfig, PoseUNet


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_a_long_nights_memory_stays_flat(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(base_channels=4, depth=2)
    model = tmp_path / "tiny.pt"
    save_model(model, PoseUNet(cfg), cfg, {"note": "untrained test model"})
    make_photos(tmp_path / "photos", 600)
    figures = night_memory(tmp_path / "photos", tmp_path / "masks", ["--model", str(model), "--shard-size", "60"])
    print(f"\nnight memory: {figures}")
    assert figures["growth_mb"] < 50, figures
    assert figures["rss_after_warm_up_mb"] > 100  # the sampler saw the real process (torch alone is more)
    assert len(list((tmp_path / "masks" / "shards").glob("*/manifest.jsonl"))) >= 10
