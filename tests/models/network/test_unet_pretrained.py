"""models.network.unet's MobileNetV2 path: the shipped DeepLab-v3's pretrained encoder inside the pose-guided
network (issue 21): it starts as the prior, its encoder as DeepLab's, and it trains, saves and loads."""

from __future__ import annotations

import pytest
import torch

from models.network.checkpoints import load_model, save_model
from models.network.mobilenet import MobileNetV2Encoder, load_deeplab_weights
from models.network.netconfig import ModelConfig
from models.network.unet import PoseUNet
from models.utils.assets import DEEPLAB_MODEL, require

SIZE = 64


def inputs(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image in [-1, 1], posemap, prior) of a random batch at SIZE."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1
    posemap = torch.rand(batch, 1, SIZE // 2, SIZE // 2, generator=g)
    prior = torch.rand(batch, 1, SIZE, SIZE, generator=g) * 0.9 + 0.05
    return image, posemap, prior


def test_an_untrained_pretrained_network_returns_the_prior_and_its_encoder_is_deeplabs():
    torch.manual_seed(0)
    net = PoseUNet(encoder="mobilenet_v2", base_channels=8, norm="group").eval()
    image, posemap, prior = inputs()
    with torch.no_grad():
        torch.testing.assert_close(net.predict_probability(image, posemap, prior), prior)
        reference = MobileNetV2Encoder()
        load_deeplab_weights(reference, require(DEEPLAB_MODEL))
        # the zero-initialised pose projection: the pretrained blocks see exactly DeepLab's input
        x = net.encoder.stem(image) + net.pose_inject(posemap)
        for block in net.encoder.blocks:
            x = block(x)
        torch.testing.assert_close(x, reference.eval()(image)[-1])
    assert ModelConfig(encoder="mobilenet_v2").size_multiple == 8
    with pytest.raises(ValueError, match="encoder"):
        ModelConfig(encoder="resnet")


@pytest.mark.parametrize("freeze", [False, True])
def test_it_learns_a_mask_and_a_frozen_encoder_stays_deeplabs(freeze: bool):
    torch.manual_seed(0)
    net = PoseUNet(encoder="mobilenet_v2", base_channels=8, norm="group", freeze_encoder=freeze)
    image, posemap, prior = inputs(4)
    target = torch.zeros(4, 1, SIZE, SIZE)
    target[:, :, 16:48, 24:40] = 1.0  # a person-shaped block the prior knows nothing of
    before = net.encoder.stem[0].weight.detach().clone()
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = net.loss(net(image, posemap, prior), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    moved = not torch.equal(net.encoder.stem[0].weight, before)
    assert moved is not freeze
    assert (net.encoder.stem[0].weight.grad is None) is freeze


def test_a_saved_pretrained_network_loads_as_it_was_and_runs_in_bf16_with_flip(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="mobilenet_v2", base_channels=8, norm="group", zero_init_last=False)
    net = PoseUNet(cfg).eval()
    with torch.no_grad():
        for p in net.pose_inject.parameters():
            p.normal_(0, 0.1)  # trained-looking weights everywhere
    save_model(tmp_path / "model.pt", net, cfg, {})
    loaded, loaded_cfg, _ = load_model(tmp_path / "model.pt")
    assert loaded_cfg == cfg
    image, posemap, prior = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, posemap, prior), net(image, posemap, prior))
        loaded.inference_flip, loaded.inference_bf16 = True, True
        probability = loaded.predict_probability(image, posemap, prior)
    assert probability.dtype == torch.float32 and 0.0 <= float(probability.min()) <= float(probability.max()) <= 1.0


def test_person_evidence_is_deeplabs_own_person_log_probability_and_starts_as_the_prior():
    from models.network.mobilenet import DEEPLAB_PERSON_CLASS, deeplab_v3

    torch.manual_seed(0)
    net = PoseUNet(encoder="mobilenet_v2", base_channels=8, norm="group", person_evidence=True).eval()
    image, posemap, prior = inputs()
    deeplab = deeplab_v3(require(DEEPLAB_MODEL))
    with torch.no_grad():
        torch.testing.assert_close(net.predict_probability(image, posemap, prior), prior)
        features = deeplab.encoder(image)[-1]
        expected = torch.log_softmax(deeplab.head(features), dim=1)[:, DEEPLAB_PERSON_CLASS : DEEPLAB_PERSON_CLASS + 1]
        torch.testing.assert_close(net.person_log_probability(features), expected)
    assert net.bottleneck.conv.in_channels == deeplab.encoder.channels[-1] + 1
    # without the evidence, DeepLab's head is not part of the network
    plain = PoseUNet(encoder="mobilenet_v2", base_channels=8, norm="group")
    assert plain.evidence_head is None
    assert not any(name.startswith("evidence_head") for name in plain.state_dict())


def test_the_pretrained_parts_learn_at_their_own_rate():
    from models.network.netconfig import TrainConfig
    from models.network.schedule import make_optimizer

    net = PoseUNet(encoder="mobilenet_v2", base_channels=8, norm="group", person_evidence=True)
    optimizer = make_optimizer(net, TrainConfig(lr=1e-3, encoder_lr_scale=0.1))
    decoder, pretrained = optimizer.param_groups
    assert decoder["lr"] == pytest.approx(1e-3) and pretrained["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in pretrained["params"]} == {id(p) for p in net.pretrained_parameters()}
    assert len(decoder["params"]) + len(pretrained["params"]) == len(list(net.parameters()))
    # frozen: only the decoder is optimised; from scratch: one group, as before
    frozen = PoseUNet(encoder="mobilenet_v2", base_channels=8, norm="group", freeze_encoder=True)
    assert len(make_optimizer(frozen, TrainConfig()).param_groups) == 1
    scratch = PoseUNet(base_channels=4, depth=2)
    (group,) = make_optimizer(scratch, TrainConfig(lr=2e-4, encoder_lr_scale=0.1)).param_groups
    assert group["lr"] == pytest.approx(2e-4) and len(group["params"]) == len(list(scratch.parameters()))
