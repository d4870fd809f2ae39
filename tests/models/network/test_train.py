"""Training loop, checkpoints/resume, model files, prediction; and the CacheDataset it reads.

(The CacheDataset tests live here because models/network/dataset.py exists to feed train.py.)
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bench.synthetic import write_synthetic_cache
from models.network.checkpoints import load_model, save_model
from models.network.dataset import CacheDataset, InMemoryBatch
from models.network.inference import predict
from models.network.netconfig import TrainConfig
from models.network.seeding import _rng_state, _set_rng_state
from models.network.training import train
from models.network.unet import ModelConfig, PoseUNet, cpu_has_native_bf16
from models.network.validation import instance_iou
from models.sample.augment import AUGMENTATIONS, FLIPPED_JOINTS, AugmentConfig
from models.sample.skeleton import JOINT_NAMES

TINY = ModelConfig(base_channels=4, depth=2)
ALWAYS_FLIP = AugmentConfig(**{**AUGMENTATIONS["none"].__dict__, "flip_prob": 1.0})


def _train_cfg(epochs: int, **overrides) -> TrainConfig:
    settings = dict(
        epochs=epochs, batch_size=4, lr=1e-2, seed=3, num_workers=0, device="cpu", augment="flip", progress_bar=False
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("caches")
    return {
        "crop256": write_synthetic_cache(root / "crop256.h5", 4, seed=5),
        # Training tests use 64x64 crops: the code paths are the same and 16x cheaper.
        "train": write_synthetic_cache(root / "train.h5", 8, seed=1, size=64),
        "val": write_synthetic_cache(root / "val.h5", 4, seed=2, size=64),
        "joints14": write_synthetic_cache(root / "j14.h5", 2, seed=4, size=64, pose_channels=14),
    }


# ----------------------------------------------------------------------------- dataset


def test_dataset_items(caches: dict[str, Path]) -> None:
    dataset = CacheDataset([caches["crop256"], caches["crop256"]])
    assert len(dataset) == 8
    item = dataset[5]  # second file, local index 1
    assert item["image"].shape == (3, 256, 256) and item["image"].dtype == torch.float32
    assert item["image"].min() >= -1.0 and item["image"].max() <= 1.0
    assert item["posemap"].shape == (1, 128, 128) and 0 <= item["posemap"].min() <= item["posemap"].max() <= 1
    assert item["mask"].shape == (1, 256, 256) and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert item["prior"].min() > 0 and item["prior"].max() < 1
    assert int(item["index"]) == 5
    with h5py.File(caches["crop256"], "r") as h5:
        np.testing.assert_array_equal(item["mask"][0].numpy(), h5["mask"][1])
        np.testing.assert_allclose(item["prior"][0].numpy(), h5["prior"][1] / 255.0, atol=1e-6)
    with pytest.raises(IndexError):
        dataset[8]


def test_flip_moves_every_array_together(caches: dict[str, Path]) -> None:
    plain = CacheDataset(caches["crop256"])[0]
    flipped = CacheDataset(caches["crop256"], augment=ALWAYS_FLIP)[0]
    for key in ("image", "posemap", "prior", "mask"):
        torch.testing.assert_close(flipped[key], plain[key].flip(-1), atol=0, rtol=0)


def test_flip_swaps_left_right_joint_channels(caches: dict[str, Path]) -> None:
    order = FLIPPED_JOINTS
    assert JOINT_NAMES[order[JOINT_NAMES.index("l_wrist")]] == "r_wrist"
    assert JOINT_NAMES[order[JOINT_NAMES.index("head")]] == "head"
    plain = CacheDataset(caches["joints14"])[1]
    flipped = CacheDataset(caches["joints14"], augment=ALWAYS_FLIP)[1]
    assert plain["posemap"].shape == (14, 32, 32)
    torch.testing.assert_close(flipped["posemap"], plain["posemap"].flip(-1)[order], atol=0, rtol=0)


def test_dataset_rejects_bad_files(tmp_path: Path, caches: dict[str, Path]) -> None:
    not_h5 = tmp_path / "junk.h5"
    not_h5.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="junk.h5"):
        CacheDataset([not_h5])
    missing = tmp_path / "missing.h5"
    with h5py.File(missing, "w") as h5:
        h5.create_dataset("image", data=np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"missing\.h5 lacks datasets"):
        CacheDataset([missing])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CacheDataset([tmp_path / "nowhere.h5"])
    with pytest.raises(ValueError, match="different crop sizes"):
        CacheDataset([caches["crop256"], caches["joints14"]])


def test_dataloader_workers_match_main_process(caches: dict[str, Path]) -> None:
    dataset = CacheDataset(caches["val"])
    dataset[0]  # opens handles in this process: workers must not reuse them
    in_process = [b["mask"] for b in torch.utils.data.DataLoader(dataset, batch_size=2)]
    forked = [b["mask"] for b in torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)]
    for a, b in zip(in_process, forked, strict=True):
        torch.testing.assert_close(a, b)


def test_in_memory_batch(caches: dict[str, Path]) -> None:
    batch = InMemoryBatch.from_dataset(CacheDataset(caches["train"]), batch_size=3, start=2)
    assert batch.image.shape == (3, 3, 64, 64)
    assert batch.index.tolist() == [2, 3, 4]
    moved = batch.to("cpu", channels_last=True)
    assert moved.image.is_contiguous(memory_format=torch.channels_last)
    assert set(moved.as_dict()) == {"image", "posemap", "prior", "mask", "index"}


# ----------------------------------------------------------------------------- metrics, RNG


def test_instance_iou() -> None:
    target = torch.zeros(3, 1, 4, 4)
    target[0, 0, :2] = 1  # 8 px
    target[1, 0, 0] = 1  # 4 px
    probability = torch.zeros(3, 1, 4, 4)
    probability[0, 0, :1] = 0.9  # 4 of 8 -> 0.5
    probability[1, 0, 0] = 0.5  # at the threshold: not foreground -> 0
    iou = instance_iou(probability, target, threshold=0.5)  # instance 2: both empty -> 1
    torch.testing.assert_close(iou, torch.tensor([0.5, 0.0, 1.0]))


def test_rng_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    np.random.normal()  # make numpy cache a gaussian
    state = _rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.normal(size=3), random.random())
    _set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.normal(size=3), expected[1])
    assert random.random() == expected[2]


# ----------------------------------------------------------------------------- training


def test_train_writes_loadable_checkpoints_and_history(caches: dict[str, Path], tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    result = train(
        TINY,
        _train_cfg(2),
        [caches["train"]],
        [caches["val"]],
        tmp_path,
        progress=lambda done, total, msg: calls.append((done, total, msg)),
    )
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 2
    assert last["model_config"] == TINY.to_dict()
    assert last["train_config"]["epochs"] == 2
    assert len(last["history"]) == 2
    assert {"torch", "numpy", "python"} <= set(last["rng"])
    assert last["optimizer_state"]["state"], "Adam moments must be saved"
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["meta"]["epoch"] == result["best_epoch"]
    assert best["meta"]["val_iou"] == pytest.approx(result["best_val_iou"])
    assert 0.0 <= result["best_val_iou"] <= 1.0
    with open(tmp_path / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "val_iou", "seconds", "samples_per_s", "lr"}
    assert float(rows[1]["samples_per_s"]) > 0 and float(rows[1]["lr"]) == pytest.approx(1e-2)
    assert (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert [c[:2] for c in calls] == [(0, 2), (1, 2), (2, 2)]
    assert not list((tmp_path / "checkpoints").glob("*.tmp")), "temporary files left behind"


def test_failed_training_closes_the_cache_files(
    caches: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.network.epoch as train_module

    open_at_close: list[bool] = []
    real_close = CacheDataset.close

    def spy_close(self: CacheDataset) -> None:
        open_at_close.append(self._files is not None)
        real_close(self)

    def fails_after_reading(model, loader, *args, **kwargs):
        next(iter(loader))  # the train cache's h5 handles are open now
        raise RuntimeError("simulated failure mid-epoch")

    monkeypatch.setattr(CacheDataset, "close", spy_close)
    monkeypatch.setattr(train_module, "_run_epoch", fails_after_reading)
    with pytest.raises(RuntimeError, match="simulated failure"):
        train(TINY, _train_cfg(1), [caches["train"]], [caches["val"]], tmp_path)
    assert open_at_close == [True, False]  # train (open, closed now) and val (never opened) both closed


def straight_and_resumed(
    net_cfg: ModelConfig, train_cfg: TrainConfig, caches: dict[str, Path], tmp_path: Path
) -> tuple[dict, dict, dict, dict]:
    """Train `train_cfg.epochs` (2) straight, and again killed after the first epoch then resumed
    (with the global RNG scrambled: resume must restore it); the resumed run's last weights equal
    the straight run's -> (straight result, resumed result, straight last.pt, resumed last.pt)."""
    straight = train(net_cfg, train_cfg, [caches["train"]], [caches["val"]], tmp_path / "straight")

    # the first run is told 2 epochs too (the cosine depends on the total) and killed after one
    def kill_after_first_epoch(done: int, total: int, message: str) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            net_cfg,
            train_cfg,
            [caches["train"]],
            [caches["val"]],
            tmp_path / "resumed",
            progress=kill_after_first_epoch,
        )
    torch.manual_seed(12345)  # scramble the global RNG: resume must restore it from the checkpoint
    resumed = train(net_cfg, train_cfg, [caches["train"]], [caches["val"]], tmp_path / "resumed")
    assert resumed["resumed_from_epoch"] == 1
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    for key, value in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][key], value, atol=1e-6, rtol=0, msg=key)
    return straight, resumed, a, b


@pytest.mark.parametrize("recipe", [{}, {"augment": "full", "warmup_epochs": 1, "schedule": "cosine"}])
def test_resume_gives_same_weights_as_uninterrupted(caches: dict[str, Path], tmp_path: Path, recipe: dict) -> None:
    """Also with the whole recipe: augmentation draws from the checkpointed RNG, the LR is a function of the epoch."""
    straight, resumed, a, _ = straight_and_resumed(TINY, _train_cfg(2, **recipe), caches, tmp_path)
    initial = PoseUNet(TINY).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in a["model_state"].items()), "training did nothing"
    assert [r["train_loss"] for r in straight["history"]] == pytest.approx(
        [r["train_loss"] for r in resumed["history"]], abs=1e-6
    )


def test_the_pretrained_network_resumes_with_its_own_learning_rates(caches: dict[str, Path], tmp_path: Path) -> None:
    """The MobileNetV2 path with the whole recipe and the encoder at a tenth of the rate: a killed
    run resumes to the same weights, and the optimizer's two groups keep their ratio throughout."""
    net_cfg = ModelConfig(encoder="mobilenet_v2", base_channels=4, norm="group", person_evidence=True)
    recipe = dict(augment="full+box", warmup_epochs=1, schedule="cosine", encoder_lr_scale=0.1, lr=1e-3)
    straight, _, a, b = straight_and_resumed(net_cfg, _train_cfg(2, **recipe), caches, tmp_path)
    decoder, encoder = b["optimizer_state"]["param_groups"]
    assert encoder["lr"] == pytest.approx(0.1 * decoder["lr"]) and decoder["lr"] > 0
    initial = PoseUNet(net_cfg).state_dict()
    moved = {k for k, v in a["model_state"].items() if not torch.equal(initial[k], v)}
    assert any(k.startswith("encoder.") for k in moved) and any(k.startswith("evidence_head.") for k in moved)
    assert straight["history"][-1]["lr"] == pytest.approx(decoder["lr"])


def test_finished_run_is_a_no_op_and_config_mismatch_is_refused(caches: dict[str, Path], tmp_path: Path) -> None:
    paper = ModelConfig(base_channels=4, depth=2, head="paper")
    train(paper, _train_cfg(1, augment="none"), [caches["train"]], None, tmp_path)
    before = (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns
    again = train(paper, _train_cfg(1, augment="none"), [caches["train"]], None, tmp_path)
    assert again["epochs_completed"] == 1 and len(again["history"]) == 1
    assert (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="last.pt was made with model config"):
        train(TINY, _train_cfg(2), [caches["train"]], None, tmp_path)


def test_model_file_round_trip_predict_and_init_weights(caches: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = PoseUNet(ModelConfig(base_channels=4, depth=2, zero_init_last=False))
    save_model(tmp_path / "model.pt", model, model.cfg, {"trained_on": ["coco"], "epochs": 3})
    raw = torch.load(tmp_path / "model.pt", weights_only=True)
    assert raw["model_config"] == model.cfg.to_dict()
    loaded, cfg, meta = load_model(tmp_path / "model.pt", "cpu")
    assert cfg == model.cfg and meta == {"trained_on": ["coco"], "epochs": 3}
    assert not loaded.training

    probabilities = predict(loaded, [caches["val"], caches["train"]], batch_size=3, device="cpu")
    assert probabilities.shape == (12, 64, 64) and probabilities.dtype == np.float32
    dataset = CacheDataset([caches["val"], caches["train"]])
    with torch.no_grad():
        item = dataset[5]
        expected = loaded.probability(loaded(item["image"][None], item["posemap"][None], item["prior"][None]))
    np.testing.assert_allclose(probabilities[5], expected[0, 0].numpy(), atol=1e-5)

    # Fine-tuning starts from exactly these weights: one epoch at a negligible lr keeps them.
    cfg_ft = ModelConfig(base_channels=4, depth=2, zero_init_last=False)
    result = train(
        cfg_ft,
        _train_cfg(1, lr=1e-12, augment="none"),
        [caches["train"]],
        None,
        tmp_path / "ft",
        init_weights=tmp_path / "model.pt",
    )
    for key, value in model.state_dict().items():
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm statistics move with every forward pass in train mode
        torch.testing.assert_close(result["model"].state_dict()[key], value, atol=1e-6, rtol=0, msg=key)
    with pytest.raises(ValueError, match="init_weights"):
        train(
            ModelConfig(base_channels=8, depth=2),
            _train_cfg(1),
            [caches["train"]],
            None,
            tmp_path / "ft2",
            init_weights=tmp_path / "model.pt",
        )
    with pytest.raises(TypeError, match="meta"):
        save_model(tmp_path / "bad.pt", model, model.cfg, {"path": tmp_path})


def test_untrained_model_predicts_the_prior(caches: dict[str, Path]) -> None:
    probabilities = predict(PoseUNet(TINY), caches["crop256"], batch_size=4, device="cpu")
    with h5py.File(caches["crop256"], "r") as h5:
        prior = h5["prior"][:] / 255.0
    np.testing.assert_allclose(probabilities, prior, atol=1e-6)


# ----------------------------------------------------------------------------- recipe


def test_learning_rate_warms_up_then_follows_the_cosine() -> None:
    from models.network.schedule import LR_FLOOR, learning_rate

    cfg = _train_cfg(10, lr=1e-3, warmup_epochs=2, schedule="cosine")
    assert learning_rate(cfg, 0.0) == pytest.approx(1e-3 * LR_FLOOR)
    assert learning_rate(cfg, 1.0) == pytest.approx(1e-3 * (LR_FLOOR + (1 - LR_FLOOR) / 2))
    assert learning_rate(cfg, 2.0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 6.0) == pytest.approx(1e-3 * (LR_FLOOR + (1 - LR_FLOOR) / 2))
    assert learning_rate(cfg, 10.0) == pytest.approx(1e-3 * LR_FLOOR)
    rates = [learning_rate(cfg, e / 4) for e in range(8, 40)]
    assert rates == sorted(rates, reverse=True)
    assert learning_rate(_train_cfg(5, lr=2e-4), 3.3) == 2e-4  # constant, no warm-up: the paper's
    with pytest.raises(ValueError, match="schedule"):
        _train_cfg(1, schedule="linear")
    with pytest.raises(ValueError, match="augment"):
        _train_cfg(1, augment="heavy")


def test_early_stopping_ends_training_and_a_resume_does_not_continue(caches: dict[str, Path], tmp_path: Path) -> None:
    from models.network.schedule import stopped_early

    assert not stopped_early([], 0, 2)
    assert not stopped_early([{"epoch": 3}], 2, 2) and stopped_early([{"epoch": 4}], 2, 2)
    assert not stopped_early([{"epoch": 40}], 2, 0)
    # at a negligible learning rate the validation IoU never improves after epoch 1
    cfg = _train_cfg(6, lr=1e-12, patience=2, augment="none")
    result = train(TINY, cfg, [caches["train"]], [caches["val"]], tmp_path)
    assert result["stopped_early"] and result["epochs_completed"] == 3 and result["best_epoch"] == 1
    again = train(TINY, cfg, [caches["train"]], [caches["val"]], tmp_path)
    assert again["epochs_completed"] == 3 and len(again["history"]) == 3


def test_full_augmentation_trains_and_lr_is_recorded(caches: dict[str, Path], tmp_path: Path) -> None:
    cfg = _train_cfg(2, lr=1e-3, augment="full", warmup_epochs=1, schedule="cosine")
    result = train(TINY, cfg, [caches["train"]], [caches["val"]], tmp_path)
    lrs = [row["lr"] for row in result["history"]]
    assert lrs[0] < 1e-3 and lrs[1] < 1e-3 and np.isfinite([r["train_loss"] for r in result["history"]]).all()


def test_boundary_weighted_loss_weighs_the_edge() -> None:
    from models.network.unet import boundary_band

    target = torch.zeros(1, 1, 16, 16)
    target[..., 4:12, 4:12] = 1
    band = boundary_band(target, 1)
    assert band[0, 0, 8, 8] == 0 and band[0, 0, 0, 0] == 0 and band[0, 0, 4, 8] == 1 and band[0, 0, 3, 8] == 1
    plain = PoseUNet(ModelConfig(base_channels=4, depth=2, dice_weight=0))
    weighted = PoseUNet(ModelConfig(base_channels=4, depth=2, dice_weight=0, boundary_weight=4.0, boundary_px=1))
    wrong_edge = torch.full((1, 1, 16, 16), -4.0)
    wrong_edge[..., 4:12, 4:12] = 4.0
    wrong_edge[..., 4, 4:12] = -4.0  # one edge row wrong
    assert weighted.loss(wrong_edge, target) > 2 * plain.loss(wrong_edge, target)


def test_cpu_bf16_trains_in_bf16_and_stays_close(caches: dict[str, Path], tmp_path: Path) -> None:
    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16: cpu_bf16 is not applied")
    plain = train(TINY, _train_cfg(1, cpu_bf16=False), [caches["train"]], [caches["val"]], tmp_path / "fp32")
    bf16 = train(TINY, _train_cfg(1, cpu_bf16=True), [caches["train"]], [caches["val"]], tmp_path / "bf16")
    loss_fp32, loss_bf16 = plain["history"][0]["train_loss"], bf16["history"][0]["train_loss"]
    assert np.isfinite(loss_bf16) and loss_bf16 != loss_fp32  # autocast was on: bf16 rounding shows
    assert abs(loss_bf16 - loss_fp32) < 0.05 * abs(loss_fp32)


def test_prepare_device_applies_cpu_bf16_only_where_it_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 autocast on a CPU with native bf16 only; a GroupNorm net then trains contiguous (its
    channels-last bf16 kernels measured slower), a BatchNorm net channels-last."""
    from models.network import training as train_module

    cfg = _train_cfg(1)  # cpu_bf16 and channels_last: the defaults
    assert cfg.cpu_bf16 and cfg.channels_last
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: True)
    assert train_module._prepare_device(cfg, None, "batch")[1:] == (True, True)
    assert train_module._prepare_device(cfg, None, "group")[1:] == (True, False)
    assert train_module._prepare_device(_train_cfg(1, cpu_bf16=False), None, "group")[1:] == (False, True)
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: False)
    assert train_module._prepare_device(cfg, None, "group")[1:] == (False, True)


def test_loader_workers_auto_is_in_process_on_the_cpu() -> None:
    from models.network.batches import loader_workers

    assert loader_workers(-1, torch.device("cpu")) == 0
    assert 1 <= loader_workers(-1, torch.device("cuda")) <= 4
    assert loader_workers(3, torch.device("cpu")) == 3
    with pytest.raises(ValueError, match="num_workers"):
        TrainConfig(num_workers=-2)


def test_compiled_training_saves_the_plain_weights(caches: dict[str, Path], tmp_path: Path) -> None:
    """TrainConfig.compile compiles the training forward only: the weights it saves load into a
    plain PoseUNet (no torch.compile prefixes) and equal the returned model's."""
    result = train(TINY, _train_cfg(1, compile=True), [caches["train"]], None, tmp_path)
    plain = PoseUNet(TINY)
    plain.load_state_dict(result["model"].state_dict())  # strict: the same keys
    assert np.isfinite(result["history"][0]["train_loss"])
    assert not any("_orig_mod" in key for key in result["model"].state_dict())
