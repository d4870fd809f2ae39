"""Pipeline tests never leave this machine (a safety net around every socket connection), and the
tiny untrained model the nightly tests run."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from models.network.checkpoints import save_model
from models.network.unet import ModelConfig, PoseUNet


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """An untrained 2-level PoseUNet saved as model.pt (the masks' quality does not matter here);
    a test module may define its own."""
    torch.manual_seed(0)
    cfg = ModelConfig(base_channels=4, depth=2)
    path = tmp_path / "tiny.pt"
    save_model(path, PoseUNet(cfg), cfg, {"note": "untrained test model"})
    return path


@pytest.fixture(autouse=True)
def only_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to an address other than 127.0.0.1 fails the test (no DNS, no internet)."""
    real = socket.create_connection

    def guarded(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        if address[0] != "127.0.0.1":
            raise AssertionError(f"test tried to reach {address[0]}: only 127.0.0.1 is allowed")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
