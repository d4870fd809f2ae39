"""PoseUNet: a pose-guided U-Net that predicts a correction ΔM to a prior person mask.

Layout (milesial/Pytorch-UNet style, small named blocks in models/network/blocks.py), for an input of H×W (256×256):

    image (B,3,H,W) ──Stem: conv k7 s2──► (B,c,H/2,W/2) ─┬─ concat posemap (B,P,H/2,W/2)
                                                          ▼
                                     DoubleConv ─► x0 (c, H/2) ─ Down ─► x1 (2c, H/4) ... x_depth
                                                          ▲ skip        ▲ skip
                                          Up ◄──────────────────────────┘ ... back to H/2
    FullResHead: upsample ×2, concat the image, conv k3 ─► OutConv k1 ─► ΔM (B,1,H,W)

Every conv is followed by a LeakyReLU except the output conv. The prior enters only at the head,
as its log-odds (the paper's Eq. 4, M = ΔM + log M̂, written so that ΔM = 0 gives back the prior):

* head="logit": output = ΔM + logit(prior), a mask logit; probability = sigmoid(output);
  loss = BCE-with-logits + dice_weight · soft Dice.
* head="paper": output = tanh((ΔM + logit(prior)) / 2) in [-1, 1] (tanh(logit(p)/2) = 2p - 1);
  probability = (output + 1) / 2; loss = MSE against the target mapped to [-1, 1].

With zero_init_last the output conv starts at zero, so an untrained network returns the prior.

encoder="mobilenet_v2" swaps the encoder for the pretrained MobileNetV2 of the shipped DeepLab-v3
(models/network/mobilenet.py): the pose map is added after its stem through a zero-initialised 1x1
projection, rather than concatenated, so that the pretrained blocks first see the input they were
trained on; the decoder takes its H/8, H/4 and H/2 outputs (the pose map joins again at H/2) and
ends in the same FullResHead and OutConv. The head, the loss, flip and bf16 are shared.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.network.blocks import (
    ConvAct,
    DoubleConv,
    Down,
    FullResHead,
    OutConv,
    Stem,
    Up,
)
from models.network.netconfig import HEADS, NORMS, ModelConfig  # noqa: F401 - re-exported: models.network.unet.ModelConfig
from models.sample import FLIPPED_JOINTS


def soft_dice_loss(probability: torch.Tensor, target: torch.Tensor, smooth: float) -> torch.Tensor:
    """1 - soft Dice, averaged over instances. probability, target: (B,1,H,W) in [0,1] -> scalar."""
    dims = tuple(range(1, probability.ndim))
    intersection = (probability * target).sum(dims)
    total = probability.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * intersection + smooth) / (total + smooth)).mean()


def boundary_band(target: torch.Tensor, radius: int) -> torch.Tensor:
    """(B,1,H,W) {0,1} mask -> (B,1,H,W) {0,1}: pixels within `radius` of its edge (dilation - erosion)."""
    kernel = 2 * radius + 1
    dilated = F.max_pool2d(target, kernel, stride=1, padding=radius)
    eroded = -F.max_pool2d(-target, kernel, stride=1, padding=radius)
    return dilated - eroded


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 / AMX: oneDNN's check). Elsewhere
    bf16 autocast is emulated and slower than float32, so the bf16 settings are not applied."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 autocast pays on `device`: CUDA with bf16 support, or a CPU with native bf16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


class PoseUNet(nn.Module):
    """Pose-guided U-Net predicting a mask as a correction of a prior mask (see module docstring)."""

    IMAGE_CHANNELS = 3

    def __init__(self, cfg: ModelConfig | None = None, **overrides: Any) -> None:
        """cfg: the architecture; keyword overrides (e.g. base_channels=4) build one from defaults."""
        super().__init__()
        #: predict_probability's test-time flip (an inference setting: not part of the weights or config)
        self.inference_flip = False
        #: predict_probability in bf16 autocast (an inference setting, as inference_flip; the head
        #: and the probability stay float32)
        self.inference_bf16 = False
        if cfg is None:
            cfg = ModelConfig(**overrides)
        elif overrides:
            cfg = ModelConfig.from_dict({**cfg.to_dict(), **overrides})
        self.cfg = cfg
        if cfg.encoder == "mobilenet_v2":
            self._build_pretrained(cfg)
            return
        widths = [cfg.base_channels * 2**level for level in range(cfg.depth + 1)]
        self.stem = Stem(self.IMAGE_CHANNELS, widths[0], cfg)
        self.pose_merge = DoubleConv(widths[0] + cfg.pose_channels, widths[0], cfg)
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], cfg) for i in range(cfg.depth))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], widths[i], cfg) for i in reversed(range(cfg.depth)))
        self.full_res = FullResHead(widths[0], self.IMAGE_CHANNELS, widths[0], cfg)
        self.out_conv = OutConv(widths[0], zero_init=cfg.zero_init_last)

    def _build_pretrained(self, cfg: ModelConfig) -> None:
        """The MobileNetV2 path (cfg.encoder = "mobilenet_v2"): the shipped DeepLab-v3's encoder
        with its weights, the pose added after its stem through a zero-initialised 1x1 projection
        (so that at the start the pretrained blocks see exactly what they were trained on), and a
        decoder on its H/8, H/4 and H/2 outputs, the pose map joining again at H/2."""
        from models.network.mobilenet import STEM_CHANNELS, DeepLabV3, MobileNetV2Encoder, load_deeplab_weights
        from models.utils import DEEPLAB_MODEL, require

        width = cfg.base_channels
        deeplab = DeepLabV3()
        load_deeplab_weights(deeplab, require(DEEPLAB_MODEL))
        self.encoder = deeplab.encoder
        # DeepLab's head only where its person evidence is used: no unused weights otherwise
        self.evidence_head = deeplab.head if cfg.person_evidence else None
        if cfg.freeze_encoder:
            deeplab.requires_grad_(False)
        self.pose_inject = nn.Conv2d(cfg.pose_channels, STEM_CHANNELS, 1)
        nn.init.zeros_(self.pose_inject.weight)
        nn.init.zeros_(self.pose_inject.bias)
        half, quarter, eighth = (self.encoder.channels[k] for k in MobileNetV2Encoder.scales)
        self.bottleneck = ConvAct(eighth + int(cfg.person_evidence), 4 * width, 1, 1, cfg)
        self.up_quarter = Up(4 * width, quarter, 2 * width, cfg)
        self.up_half = Up(2 * width, half + cfg.pose_channels, width, cfg)
        self.full_res = FullResHead(width, self.IMAGE_CHANNELS, width, cfg)
        self.out_conv = OutConv(width, zero_init=cfg.zero_init_last)

    def _delta_pretrained(self, image: torch.Tensor, posemap: torch.Tensor) -> torch.Tensor:
        """ΔM of the MobileNetV2 path: image (B,3,H,W) in [-1, 1], posemap (B,P,H/2,W/2) -> (B,1,H,W)."""
        x = self.encoder.stem(image)
        x = x + self.pose_inject(posemap.to(x.dtype))
        features = []
        for block in self.encoder.blocks:
            x = block(x)
            features.append(x)
        half, quarter, eighth = (features[k] for k in self.encoder.scales)
        if self.evidence_head is not None:
            eighth = torch.cat([eighth, self.person_log_probability(eighth)], dim=1)
        x = self.up_quarter(self.bottleneck(eighth), quarter)
        x = self.up_half(x, torch.cat([half, posemap.to(half.dtype)], dim=1))
        return self.out_conv(self.full_res(x, image))

    def person_log_probability(self, features: torch.Tensor) -> torch.Tensor:
        """DeepLab's log-probability of "person": encoder features (B,160,h,w) -> (B,1,h,w)."""
        from models.network.mobilenet import DEEPLAB_PERSON_CLASS

        logits = self.evidence_head(features).float()
        person = DEEPLAB_PERSON_CLASS
        return torch.log_softmax(logits, dim=1)[:, person : person + 1].to(features.dtype)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The parameters that came from the DeepLab file (encoder and, when used, its head);
        empty for the from-scratch encoder."""
        if self.cfg.encoder != "mobilenet_v2":
            return []
        parts = [self.encoder] + ([self.evidence_head] if self.evidence_head is not None else [])
        return [p for part in parts for p in part.parameters()]

    def _check_inputs(self, image: torch.Tensor, posemap: torch.Tensor, prior: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != self.IMAGE_CHANNELS:
            raise ValueError(f"image must be (B,3,H,W), got {tuple(image.shape)}")
        batch, _, height, width = image.shape
        multiple = self.cfg.size_multiple
        if height % multiple or width % multiple:
            raise ValueError(
                f"image H,W must be multiples of {multiple} for depth {self.cfg.depth}, got {height}x{width}"
            )
        expected_pose = (batch, self.cfg.pose_channels, height // 2, width // 2)
        if tuple(posemap.shape) != expected_pose:
            raise ValueError(f"posemap must be {expected_pose}, got {tuple(posemap.shape)}")
        if tuple(prior.shape) != (batch, 1, height, width):
            raise ValueError(f"prior must be {(batch, 1, height, width)}, got {tuple(prior.shape)}")

    def delta(self, image: torch.Tensor, posemap: torch.Tensor) -> torch.Tensor:
        """ΔM: image (B,3,H,W), posemap (B,P,H/2,W/2) -> (B,1,H,W)."""
        if self.cfg.encoder == "mobilenet_v2":
            return self._delta_pretrained(image, posemap)
        x = self.stem(image)
        x = self.pose_merge(torch.cat([x, posemap.to(x.dtype)], dim=1))
        skips = [x]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.out_conv(self.full_res(x, image))

    def forward(self, image: torch.Tensor, posemap: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """Raw output (B,1,H,W): a logit (head="logit") or a mask in [-1, 1] (head="paper").

        image: (B,3,H,W) normalized to [-1, 1]; posemap: (B,P,H/2,W/2) in [0, 1];
        prior: (B,1,H,W) probability strictly inside (0, 1). The head is computed in float32
        (also under autocast) so that ΔM = 0 reproduces the prior exactly.
        """
        self._check_inputs(image, posemap, prior)
        if self.cfg.pose_free:  # the ablation: no keypoints reach the network, in training or inference
            posemap, prior = torch.zeros_like(posemap), torch.full_like(prior, 0.5)
        log_odds = self.delta(image, posemap).float() + torch.logit(prior.float())
        if self.cfg.head == "logit":
            return log_odds
        return torch.tanh(0.5 * log_odds)

    def probability(self, output: torch.Tensor) -> torch.Tensor:
        """Raw output (B,1,H,W) -> foreground probability (B,1,H,W) in [0, 1], float32."""
        output = output.float()
        if self.cfg.head == "logit":
            return torch.sigmoid(output)
        return ((output + 1.0) * 0.5).clamp(0.0, 1.0)

    def predict_probability(
        self, image: torch.Tensor, posemap: torch.Tensor, prior: torch.Tensor, flip: bool | None = None
    ) -> torch.Tensor:
        """Foreground probability (B,1,H,W) of inputs as forward() takes them; `flip` (default: the
        model's `inference_flip`) averages it with the mirrored input's, mirrored back (test-time
        flip, left/right joint channels swapped: +0.003 to +0.009 mean IoU measured, 2x the time)."""
        flip = self.inference_flip if flip is None else flip
        with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=self.inference_bf16):
            probability = self.probability(self(image, posemap, prior))
            if not flip:
                return probability
            mirrored_pose = posemap.flip(-1)
            if mirrored_pose.shape[1] == len(FLIPPED_JOINTS):
                mirrored_pose = mirrored_pose[:, FLIPPED_JOINTS]
            mirrored = self.probability(self(image.flip(-1), mirrored_pose, prior.flip(-1))).flip(-1)
        return 0.5 * (probability + mirrored)

    def loss(self, output: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """Training loss (scalar). output: raw (B,1,H,W); target_mask: (B,1,H,W) in {0, 1}."""
        output = output.float()
        target = target_mask.float()
        if self.cfg.head == "logit":
            weight = None
            if self.cfg.boundary_weight and self.cfg.boundary_px:
                weight = 1.0 + self.cfg.boundary_weight * boundary_band(target, self.cfg.boundary_px)
            bce = F.binary_cross_entropy_with_logits(output, target, weight=weight)
            if self.cfg.dice_weight == 0:
                return bce
            dice = soft_dice_loss(torch.sigmoid(output), target, self.cfg.dice_smooth)
            return bce + self.cfg.dice_weight * dice
        return F.mse_loss(output, 2.0 * target - 1.0)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
