"""The plain settings of a PoseUNet, importable without torch (the Luigi tasks read their defaults
at import; `posemask` and a no-op night then never load torch).

    ModelConfig   architecture and loss of a PoseUNet (models/unet.py)
    HEADS, NORMS  the choices of ModelConfig.head and ModelConfig.norm
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from models.plain import from_plain_dict

HEADS = ("logit", "paper")
NORMS = ("batch", "group", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a PoseUNet; stored as plain types inside every checkpoint and model.pt.

    base_channels: width of the first level; level i has base_channels * 2**i channels.
    depth: number of Down (and Up) blocks below the half-resolution level.
    pose_channels: channels of the pose map (1 = one Gaussian map as in the paper, 14 = per joint).
    head: "logit" (sigmoid, BCE + Dice) or "paper" (tanh, MSE on masks in [-1, 1]).
    norm: normalization after each 3×3 conv: "batch", "group" (GroupNorm) or "none".
    group_norm_groups: groups for norm="group" (reduced to divide the channel count).
    leaky_slope: negative slope of every LeakyReLU.
    zero_init_last: start the output conv at zero, so that training starts from the prior.
    dice_weight: weight of the soft Dice term of the logit head's loss.
    dice_smooth: additive smoothing of the soft Dice ratio (keeps empty masks finite).
    boundary_weight: extra BCE weight of pixels within boundary_px of the mask's edge (0 = plain
      BCE): the boundary-weighted variant of the logit head's loss.
    pose_free: the pose map is zeroed and the prior flat (0.5) inside forward(): the same network
      without keypoints, the ablation that shows what they buy.
    """

    base_channels: int = 16
    depth: int = 4
    pose_channels: int = 1
    head: str = "logit"
    norm: str = "batch"
    group_norm_groups: int = 8
    leaky_slope: float = 0.2
    zero_init_last: bool = True
    dice_weight: float = 1.0
    dice_smooth: float = 1.0
    boundary_weight: float = 0.0
    boundary_px: int = 3
    pose_free: bool = False

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"ModelConfig.head must be one of {HEADS}, got {self.head!r}")
        if self.norm not in NORMS:
            raise ValueError(f"ModelConfig.norm must be one of {NORMS}, got {self.norm!r}")
        for name in ("base_channels", "depth", "pose_channels", "group_norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if min(self.dice_weight, self.dice_smooth, self.leaky_slope, self.boundary_weight, self.boundary_px) < 0:
            raise ValueError("ModelConfig.dice_weight, dice_smooth, leaky_slope and boundary_* must be >= 0")

    @property
    def size_multiple(self) -> int:
        """Input H and W must be multiples of this (stem stride 2, then `depth` poolings)."""
        return 2 ** (self.depth + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (safe for torch.load(weights_only=True) and JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict; unknown keys are an error (a config from another version)."""
        return from_plain_dict(cls, data)
