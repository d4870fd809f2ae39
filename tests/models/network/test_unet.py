"""PoseUNet: shapes, gradients, the prior identity at ΔM = 0, losses, config round trip."""

from __future__ import annotations

import pytest
import torch

from models.network.unet import ModelConfig, PoseUNet, count_parameters, soft_dice_loss

SIZE = 64  # multiple of 2**(depth+1) for the tiny configs below


def _inputs(batch: int, pose_channels: int, size: int = SIZE, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
    posemap = torch.rand(batch, pose_channels, size // 2, size // 2, generator=gen)
    prior = torch.rand(batch, 1, size, size, generator=gen) * 0.98 + 0.01
    return image, posemap, prior


@pytest.mark.parametrize("head", ["logit", "paper"])
@pytest.mark.parametrize("pose_channels", [1, 14])
def test_output_shape_and_probability_range(head: str, pose_channels: int) -> None:
    model = PoseUNet(
        ModelConfig(base_channels=4, depth=2, pose_channels=pose_channels, head=head, zero_init_last=False)
    ).eval()
    image, posemap, prior = _inputs(2, pose_channels)
    with torch.no_grad():
        output = model(image, posemap, prior)
        probability = model.probability(output)
    assert output.shape == (2, 1, SIZE, SIZE)
    assert probability.shape == (2, 1, SIZE, SIZE)
    assert probability.min() >= 0 and probability.max() <= 1
    if head == "paper":
        assert output.min() >= -1 and output.max() <= 1


def test_default_config_builds_256_output_and_param_count() -> None:
    model = PoseUNet().eval()
    n_params = count_parameters(model)
    print(f"default PoseUNet parameters: {n_params}")
    assert 500_000 <= n_params <= 2_500_000
    image, posemap, prior = _inputs(1, 1, size=256)
    with torch.no_grad():
        assert model(image, posemap, prior).shape == (1, 1, 256, 256)


@pytest.mark.parametrize("head", ["logit", "paper"])
def test_gradients_reach_every_parameter(head: str) -> None:
    model = PoseUNet(ModelConfig(base_channels=4, depth=2, head=head, norm="batch", zero_init_last=False))
    image, posemap, prior = _inputs(2, 1)
    target = (prior > 0.5).float()
    model.loss(model(image, posemap, prior), target).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("head", ["logit", "paper"])
@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_zero_delta_reproduces_prior_exactly(head: str, norm: str) -> None:
    model = PoseUNet(ModelConfig(base_channels=4, depth=2, head=head, norm=norm))  # zero_init_last
    image, posemap, prior = _inputs(3, 1)
    prior[0, 0, 0, :4] = torch.tensor([1e-4, 1 - 1e-4, 1 / 255, 254 / 255])  # the extremes we feed
    with torch.no_grad():
        probability = model.probability(model(image, posemap, prior))
    torch.testing.assert_close(probability, prior, atol=1e-6, rtol=0)


def test_nonzero_last_layer_changes_the_prior() -> None:
    model = PoseUNet(ModelConfig(base_channels=4, depth=2, zero_init_last=False)).eval()
    image, posemap, prior = _inputs(2, 1)
    with torch.no_grad():
        probability = model.probability(model(image, posemap, prior))
    assert (probability - prior).abs().max() > 1e-3


def test_losses() -> None:
    logit_model = PoseUNet(ModelConfig(base_channels=4, depth=2, head="logit", dice_weight=0.0))
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2] = 1
    # Confident and right -> near 0; confident and wrong -> large.
    right = torch.where(target > 0, 20.0, -20.0)
    assert logit_model.loss(right, target) < 1e-6
    assert logit_model.loss(-right, target) > 10
    paper_model = PoseUNet(ModelConfig(base_channels=4, depth=2, head="paper"))
    assert paper_model.loss(2 * target - 1, target).item() == 0.0
    assert paper_model.loss(1 - 2 * target, target).item() == pytest.approx(4.0)
    # Soft Dice: perfect overlap -> 0, disjoint -> ~1.
    assert soft_dice_loss(target, target, smooth=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(1 - target, target, smooth=1e-6).item() == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs_are_named() -> None:
    model = PoseUNet(ModelConfig(base_channels=4, depth=2))
    image, posemap, prior = _inputs(2, 1)
    with pytest.raises(ValueError, match="posemap"):
        model(image, posemap[:, :, :-1], prior)
    with pytest.raises(ValueError, match="prior"):
        model(image, posemap, prior[:1])
    with pytest.raises(ValueError, match="multiples of 8"):
        model(image[..., :60, :60], posemap[..., :30, :30], prior[..., :60, :60])


def test_config_round_trip_and_validation() -> None:
    cfg = ModelConfig(base_channels=8, depth=3, pose_channels=14, head="paper")
    as_dict = cfg.to_dict()
    assert all(isinstance(v, int | float | str | bool) for v in as_dict.values())
    assert ModelConfig.from_dict(as_dict) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({**as_dict, "widht": 3})
    with pytest.raises(ValueError, match="head"):
        ModelConfig(head="softmax")
    with pytest.raises(ValueError, match="depth"):
        ModelConfig(depth=0)


def test_test_time_flip_averages_with_the_mirrored_input() -> None:
    from models.sample.augment import FLIPPED_JOINTS

    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2, pose_channels=14, zero_init_last=False)).eval()
    image, posemap, prior = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 14, 16, 16), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        plain = net.predict_probability(image, posemap, prior)
        mirrored = net.probability(net(image.flip(-1), posemap.flip(-1)[:, FLIPPED_JOINTS], prior.flip(-1))).flip(-1)
        torch.testing.assert_close(net.predict_probability(image, posemap, prior, flip=True), (plain + mirrored) / 2)
        net.inference_flip = True  # the model's default for callers that do not say
        torch.testing.assert_close(net.predict_probability(image, posemap, prior), (plain + mirrored) / 2)
        assert not torch.allclose(plain, mirrored)


def test_the_pose_free_network_never_sees_the_keypoints() -> None:
    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2, pose_free=True, zero_init_last=False)).eval()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a = net(image, torch.rand(1, 1, 16, 16), torch.rand(1, 1, 32, 32) * 0.9 + 0.05)
        b = net(image, torch.zeros(1, 1, 16, 16), torch.full((1, 1, 32, 32), 0.3))
    torch.testing.assert_close(a, b)
    untrained = PoseUNet(ModelConfig(base_channels=4, depth=2, pose_free=True))  # zero-initialised: the flat prior
    torch.testing.assert_close(
        untrained.probability(untrained(image, torch.rand(1, 1, 16, 16), torch.rand(1, 1, 32, 32))),
        torch.full((1, 1, 32, 32), 0.5),
    )


def test_bf16_inference_stays_float32_and_close_to_float32() -> None:
    """inference_bf16 runs the body in bf16 autocast; the head and the probability stay float32,
    and on this net the probabilities move by bf16 rounding only."""
    torch.manual_seed(0)
    net = PoseUNet(ModelConfig(base_channels=4, depth=2, zero_init_last=False)).eval()
    image, posemap, prior = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 1, 16, 16), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        plain = net.predict_probability(image, posemap, prior, flip=True)
        net.inference_bf16 = True
        low = net.predict_probability(image, posemap, prior, flip=True)
    assert low.dtype == torch.float32 and not torch.equal(low, plain)  # autocast was on
    assert (low - plain).abs().max() < 0.05


def test_native_bf16_is_false_where_it_would_be_emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.network import unet

    monkeypatch.setattr(unet, "cpu_has_native_bf16", lambda: False)
    assert not unet.native_bf16("cpu")
    monkeypatch.setattr(unet, "cpu_has_native_bf16", lambda: True)
    assert unet.native_bf16("cpu")
