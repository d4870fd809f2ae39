"""CacheDataset(raw=True) + normalize_batch against the float path; batch_to_device's raw transfer.

The raw path is what training and inference use on CUDA (models/network/batches.py raw_transfer): these tests
prove on the CPU that it gives bit-equal inputs; bench/gpu_check.sh checks the same on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bench.synthetic import write_synthetic_cache
from models.network import batches as train_module
from models.network.batches import batch_to_device, raw_transfer
from models.network.dataset import CacheDataset, normalize_batch, normalize_image, prior_to_probability
from models.network.inference import predict
from models.network.netconfig import TrainConfig
from models.network.training import train
from models.network.unet import ModelConfig
from models.sample.augment import AUGMENTATIONS, FLIPPED_JOINTS, AugmentConfig

ALWAYS_FLIP = AugmentConfig(**{**AUGMENTATIONS["none"].__dict__, "flip_prob": 1.0})
# above 1/255, so that the clamp of the prior is exercised (the synthetic prior holds 1 and 254)
EPS = 0.01
KEYS = ("image", "posemap", "prior", "mask", "index")


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("raw")
    joints14 = write_synthetic_cache(root / "j14.h5", 4, seed=4, size=64, pose_channels=14)
    with h5py.File(joints14, "r+") as h5:
        # the synthetic per-joint channels are all alike: make each its own, so a missed swap shows
        posemap = h5["posemap"]
        posemap[...] = np.random.default_rng(0).integers(0, 256, posemap.shape, dtype=np.uint8)
    return {
        "crop256": write_synthetic_cache(root / "crop256.h5", 4, seed=5),
        "small": write_synthetic_cache(root / "small.h5", 6, seed=1, size=64),
        "joints14": joints14,
    }


def _batches(path: Path, augment: AugmentConfig | None, raw: bool, seed: int) -> list[dict[str, torch.Tensor]]:
    """Every batch of one epoch (batch 3, in order) with torch's RNG seeded as training seeds it."""
    torch.manual_seed(seed)
    dataset = CacheDataset(path, augment=augment, prior_eps=EPS, raw=raw)
    try:
        return list(DataLoader(dataset, batch_size=3, shuffle=False))
    finally:
        dataset.close()


def _assert_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    for key in KEYS:
        assert got[key].dtype == want[key].dtype, key
        assert got[key].shape == want[key].shape, key
        assert torch.equal(got[key], want[key]), f"{key} differs: max {(got[key] - want[key]).abs().max()}"


@pytest.mark.parametrize(
    ("cache", "augment"),
    [
        ("crop256", None),
        ("crop256", ALWAYS_FLIP),
        ("small", AUGMENTATIONS["flip"]),  # flip with p = 0.5: both branches in one epoch
        ("joints14", ALWAYS_FLIP),  # left/right pose channels swapped
        ("small", AUGMENTATIONS["full"]),  # warped and redrawn from the joints
        ("joints14", AUGMENTATIONS["full"]),
    ],
)
def test_raw_batch_normalised_equals_float_batch(
    caches: dict[str, Path], cache: str, augment: AugmentConfig | None
) -> None:
    for seed in (0, 7):
        raw = _batches(caches[cache], augment, raw=True, seed=seed)
        floats = _batches(caches[cache], augment, raw=False, seed=seed)
        assert len(raw) == len(floats) == 2
        for raw_batch, float_batch in zip(raw, floats, strict=True):
            for key in ("image", "posemap", "prior", "mask"):
                assert raw_batch[key].dtype == torch.uint8, key
            assert raw_batch["index"].dtype == torch.int64
            _assert_equal(normalize_batch(raw_batch, EPS), float_batch)


def test_raw_sample_layout_and_flip(caches: dict[str, Path]) -> None:
    plain = CacheDataset(caches["joints14"], raw=True)[1]
    assert plain["image"].shape == (3, 64, 64) and plain["posemap"].shape == (14, 32, 32)
    assert plain["prior"].shape == plain["mask"].shape == (1, 64, 64)
    one = CacheDataset(caches["small"], raw=True)[2]
    assert one["posemap"].shape == (1, 32, 32) and int(one["index"]) == 2
    flipped = CacheDataset(caches["joints14"], augment=ALWAYS_FLIP, raw=True)[1]
    # the flip mirrors the uint8 arrays: a flip of a flip is the cached sample (the right channels back)
    assert not torch.equal(flipped["image"], plain["image"])
    assert torch.equal(flipped["image"].flip(-1), plain["image"])
    assert torch.equal(flipped["mask"].flip(-1), plain["mask"])
    assert torch.equal(flipped["posemap"], plain["posemap"].flip(-1)[FLIPPED_JOINTS])
    assert not torch.equal(flipped["posemap"], plain["posemap"].flip(-1))


def test_normalize_batch_every_uint8_value() -> None:
    values = np.arange(256, dtype=np.uint8)
    image = np.stack([values.reshape(16, 16)] * 3, axis=-1)  # (16,16,3)
    plane = values.reshape(16, 16)
    batch = {
        "image": torch.from_numpy(image.transpose(2, 0, 1).copy())[None],
        "posemap": torch.from_numpy(plane)[None, None],
        "prior": torch.from_numpy(plane)[None, None],
        "mask": torch.from_numpy((plane % 2).astype(np.uint8))[None, None],
        "index": torch.tensor([0]),
    }
    out = normalize_batch(batch, EPS)
    assert torch.equal(out["image"][0], normalize_image(image))
    assert torch.equal(out["prior"][0], prior_to_probability(plane, EPS))
    assert torch.equal(out["posemap"][0, 0], torch.from_numpy(plane).float() / 255.0)
    assert out["prior"].min() == EPS and out["prior"].max() == np.float32(1 - EPS)
    assert torch.equal(out["mask"], batch["mask"].float()) and out["index"] is batch["index"]
    with pytest.raises(ValueError, match="uint8"):
        normalize_batch(out, EPS)


@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_to_device_raw_equals_float(caches: dict[str, Path], channels_last: bool) -> None:
    cpu = torch.device("cpu")
    raw = _batches(caches["small"], AUGMENTATIONS["flip"], raw=True, seed=3)[0]
    floats = _batches(caches["small"], AUGMENTATIONS["flip"], raw=False, seed=3)[0]
    got = batch_to_device(raw, cpu, channels_last, prior_eps=EPS)
    want = batch_to_device(floats, cpu, channels_last)
    _assert_equal(got, want)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for key in ("image", "posemap", "prior", "mask"):
        assert got[key].is_contiguous(memory_format=fmt), key
    with pytest.raises(ValueError, match="prior_eps"):
        batch_to_device(raw, cpu, channels_last)


def test_raw_transfer_only_on_cuda() -> None:
    # the CPU keeps the float path (its results unchanged); no CUDA is needed to ask about one
    assert raw_transfer(torch.device("cpu")) is False
    assert raw_transfer(torch.device("cuda")) is True
    assert raw_transfer(torch.device("cuda", 1)) is True


def test_train_and_predict_through_the_raw_path_match_the_float_path(
    caches: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDA plumbing (raw datasets, prior_eps down to batch_to_device) exercised on the CPU."""
    cfg = TrainConfig(
        epochs=2, batch_size=4, lr=1e-2, seed=3, num_workers=0, device="cpu", progress_bar=False, prior_eps=EPS
    )
    model_cfg = ModelConfig(base_channels=4, depth=2)
    runs = {}
    for raw in (False, True):
        monkeypatch.setattr(train_module, "raw_transfer", lambda device, raw=raw: raw)
        result = train(model_cfg, cfg, [caches["small"]], [caches["small"]], tmp_path / f"raw{raw}")
        probabilities = predict(result["model"], [caches["small"]], batch_size=4)
        runs[raw] = (result, probabilities)
    (floats, float_probs), (raws, raw_probs) = runs[False], runs[True]
    assert raws["last_weights_sum"] == floats["last_weights_sum"]
    for got, want in zip(raws["history"], floats["history"], strict=True):
        assert (got["train_loss"], got["val_loss"], got["val_iou"]) == (
            want["train_loss"],
            want["val_loss"],
            want["val_iou"],
        )
    np.testing.assert_array_equal(raw_probs, float_probs)
