"""The plain settings of a PoseUNet and of its training, importable without torch (the Luigi tasks
read their defaults at import; `posemask` and a no-op night then never load torch).

    ModelConfig   architecture and loss of a PoseUNet (models/network/unet.py)
    HEADS, NORMS, ENCODERS  the choices of ModelConfig.head, .norm and .encoder
    TrainConfig   how models/network/training.py trains one
    SCHEDULES     the choices of TrainConfig.schedule
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from models.sample import AUGMENTATIONS
from models.utils import from_plain_dict

HEADS = ("logit", "paper")
NORMS = ("batch", "group", "none")
# "unet": the paper's encoder, trained from scratch; "mobilenet_v2": the depth-0.5 MobileNetV2 of
# the shipped DeepLab-v3 file with its pretrained weights (models/network/mobilenet.py)
ENCODERS = ("unet", "mobilenet_v2")


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
    encoder: "unet" (the paper's, from scratch) or "mobilenet_v2" (pretrained: models.network.unet's
      MobileNetV2 path; depth is then unused).
    freeze_encoder: with "mobilenet_v2", its pretrained weights are not trained.
    person_evidence: with "mobilenet_v2", DeepLab-v3's own pretrained head runs on the encoder's
      H/8 features and its person log-probability joins the decoder's input there (what the whole
      DeepLab, trained on VOC's people, thinks of each pixel).
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
    encoder: str = "unet"
    freeze_encoder: bool = False
    person_evidence: bool = False

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"ModelConfig.encoder must be one of {ENCODERS}, got {self.encoder!r}")
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
        """Input H and W must be multiples of this (stem stride 2, then `depth` poolings; the
        MobileNetV2 encoder's output stride is 8)."""
        return 8 if self.encoder == "mobilenet_v2" else 2 ** (self.depth + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (safe for torch.load(weights_only=True) and JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict; unknown keys are an error (a config from another version)."""
        return from_plain_dict(cls, data)


SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How to train (all stored as plain types in checkpoints). Defaults are the paper's.

    epochs: total epochs (a resumed run continues up to this number).
    batch_size: samples per optimizer step (also the validation batch size). Under torchrun the
      global batch: each of the WORLD_SIZE ranks takes batch_size / WORLD_SIZE (must divide).
    lr, weight_decay: Adam's learning rate and L2 weight decay.
    seed: seeds model init, shuffling, augmentation (reproducible on CPU; under torchrun the
      shuffled order is the single process's, augmentation draws differ per rank).
    num_workers: DataLoader worker processes (0 = load in the training process; -1 = auto: 0 on
      the CPU, where worker processes compete with torch's threads for the same cores: loading in
      the training process measured 1.4-1.9x faster on 2 cores, fp32 and bf16, flip and full
      augmentation; on CUDA min(4, cores), to overlap loading with the GPU).
    num_threads: torch CPU threads for this process (0 = leave torch's default); on a busy or
      small CPU, fewer threads than cores avoids OpenMP contention.
    device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
    amp: bf16 autocast on CUDA (ignored on CPU).
    cpu_bf16: bf16 autocast on the CPU as well, where the CPU computes bf16 natively (AMX /
      AVX512-BF16; elsewhere it is emulated, slower, and not applied). Training samples/s on this
      machine's 2 cores, base_channels 16: on an in-memory batch of 8 against float32 NCHW,
      BatchNorm x2.8 (channels-last), GroupNorm x2.0 (contiguous, see models.network.training._prepare_device);
      through the real data path against the recipe of issue 14's filing, x2.45 and x1.86 with the
      in-process loading (bench/train_speed.py); the demo training's validation IoU matched
      float32's (docs/results.md "Speed and scale-out"). Not a TrainModel
      parameter's hash: like `amp` on CUDA, it is how the steps are computed, not what is trained.
    channels_last: channels-last memory format (CPU and CUDA: x1.5 training steps on this CPU).
    encoder_lr_scale: the pretrained parts (encoder, DeepLab head) learn at lr x this (1 = as the
      decoder); ignored by the from-scratch encoder.
    compile: torch.compile the training forward (inductor; needs a C++ compiler on the CPU). The
      first step compiles for ~40 s or more; see docs/results.md "Speed and scale-out" for what it buys.
    val_every: validate every N epochs (and always after the last one).
    augment: a preset of models.sample.augment.AUGMENTATIONS: "none", "flip" (the paper's mirror) or
      "full" (flip, scale/rotation/shift, colour, joint noise and dropped joints).
    warmup_epochs: the learning rate rises linearly from lr/100 to lr over these epochs.
    schedule: "constant" or "cosine" (from lr after the warm-up down to lr/100 at the last epoch).
    patience: stop when the validation IoU has not improved for this many epochs (0 = never).
    prior_eps: prior probability clip, see CacheDataset.
    iou_threshold: probability threshold of the validation IoU.
    progress_bar: show tqdm bars over batches.
    """

    epochs: int = 30
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    num_workers: int = -1
    num_threads: int = 0
    device: str = "auto"
    amp: bool = True
    cpu_bf16: bool = True
    channels_last: bool = True
    compile: bool = False
    encoder_lr_scale: float = 1.0
    val_every: int = 1
    augment: str = "flip"
    warmup_epochs: int = 0
    schedule: str = "constant"
    patience: int = 0
    prior_eps: float = 1e-4
    iou_threshold: float = 0.5
    progress_bar: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < -1 or self.num_threads < 0:
            raise ValueError(
                f"TrainConfig.num_workers must be >= -1 (auto) and num_threads >= 0, "
                f"got {self.num_workers}, {self.num_threads}"
            )
        if self.encoder_lr_scale < 0:
            raise ValueError(f"TrainConfig.encoder_lr_scale must be >= 0, got {self.encoder_lr_scale}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"TrainConfig.lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"TrainConfig.augment must be one of {list(AUGMENTATIONS)}, got {self.augment!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.warmup_epochs < 0 or self.patience < 0:
            raise ValueError("TrainConfig.warmup_epochs and patience must be >= 0")
        if not 0.0 < self.iou_threshold < 1.0:
            raise ValueError(f"TrainConfig.iou_threshold must be in (0, 1), got {self.iou_threshold}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of to_dict; unknown keys are an error."""
        return from_plain_dict(cls, data)
