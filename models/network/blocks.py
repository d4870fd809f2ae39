"""The building blocks of PoseUNet (models/network/unet.py), milesial/Pytorch-UNet style.

ConvAct(in_ch, out_ch, kernel, stride, cfg)   conv -> norm (ModelConfig.norm) -> LeakyReLU
DoubleConv, Down, Up, Stem                    the U-Net's encoder and decoder blocks
FullResHead(in_ch, image_ch, out_ch, cfg)     upsample x2, concat the image, conv k3
OutConv(in_ch, zero_init)                     the output conv k1 (zero at start with zero_init)
compute_dtype(x), upsample_to(x, size)        the dtype autocast computes in; bilinear resize
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.network.netconfig import ModelConfig


def _norm_layer(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = min(groups, channels)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype convolutions run in: autocast's when it is on for x's device, else x's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def upsample_to(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B,C,h,w) to (B,C,*size) in x's own dtype: autocast would run it in
    float32 and make the concatenation after it (a U-Net's widest tensors) float32 too."""
    with torch.autocast(x.device.type, enabled=False):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvAct(nn.Module):
    """conv (k, stride) -> norm -> LeakyReLU. (B,in,H,W) -> (B,out,H/stride,W/stride)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, cfg: ModelConfig) -> None:
        super().__init__()
        use_bias = cfg.norm == "none"  # a norm layer's shift makes the conv bias redundant
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=use_bias)
        self.norm = _norm_layer(cfg.norm, out_ch, cfg.group_norm_groups)
        self.act = nn.LeakyReLU(cfg.leaky_slope, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        # under autocast a GroupNorm returns float32: back to the conv's dtype before the activation
        return self.act(self.norm(y).to(y.dtype))


class DoubleConv(nn.Module):
    """Two 3×3 ConvAct blocks. (B,in,H,W) -> (B,out,H,W)."""

    def __init__(self, in_ch: int, out_ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.block = nn.Sequential(ConvAct(in_ch, out_ch, 3, 1, cfg), ConvAct(out_ch, out_ch, 3, 1, cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Down(nn.Module):
    """2×2 max-pool then DoubleConv. (B,in,H,W) -> (B,out,H/2,W/2)."""

    def __init__(self, in_ch: int, out_ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = DoubleConv(in_ch, out_ch, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class Up(nn.Module):
    """Bilinear ×2 upsample, concat the skip, DoubleConv.

    (B,in,H,W) + skip (B,skip,2H,2W) -> (B,out,2H,2W).
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.conv = DoubleConv(in_ch + skip_ch, out_ch, cfg)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x)
        return self.conv(torch.cat([upsample_to(x.to(dtype), skip.shape[-2:]), skip.to(dtype)], dim=1))


class Stem(nn.Module):
    """First layer: 7×7 stride-2 conv + LeakyReLU. (B,3,H,W) -> (B,out,H/2,W/2)."""

    def __init__(self, in_ch: int, out_ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 7, stride=2, padding=3)
        self.act = nn.LeakyReLU(cfg.leaky_slope, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class FullResHead(nn.Module):
    """Back to full resolution: upsample ×2, concat the image (sharp edges), one 3×3 ConvAct.

    (B,in,H/2,W/2) + image (B,3,H,W) -> (B,out,H,W).
    """

    def __init__(self, in_ch: int, image_ch: int, out_ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.conv = ConvAct(in_ch + image_ch, out_ch, 3, 1, cfg)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x)
        return self.conv(torch.cat([upsample_to(x.to(dtype), image.shape[-2:]), image.to(dtype)], dim=1))


class OutConv(nn.Module):
    """1×1 conv to one channel, no activation. (B,in,H,W) -> (B,1,H,W) = ΔM."""

    def __init__(self, in_ch: int, zero_init: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, 1, 1)
        if zero_init:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
