"""TrainModel (default COCO; any list of datasets) and FineTune (VOC): thin wrappers around models.network.train."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import luigi

from models.network import ENCODERS, HEADS, NORMS, SCHEDULES, ModelConfig, TrainConfig
from models.sample import AUGMENTATIONS
from pipeline import config
from pipeline.cache import BuildCache, cache_paths
from pipeline.config import from_field
from pipeline.core import PoseMaskTask
from pipeline.lib.files import write_json
from pipeline.persons import parse_dataset_split

logger = logging.getLogger(__name__)


class TrainingTask(PoseMaskTask):
    """Parameters shared by TrainModel and FineTune; each reads its own section ([TrainModel], [FineTune]).

    Defaults are models.network.TrainConfig's and models.network.unet.ModelConfig's (the paper's: batch 4,
    lr 1e-4, 30 epochs); pipeline/defaults.cfg holds the small demo configuration.
    """

    epochs = from_field(TrainConfig, "epochs")
    batch_size = from_field(TrainConfig, "batch_size")
    lr = from_field(TrainConfig, "lr")
    weight_decay = from_field(TrainConfig, "weight_decay")
    seed = from_field(TrainConfig, "seed")
    augment = from_field(TrainConfig, "augment", choices=list(AUGMENTATIONS))
    warmup_epochs = from_field(TrainConfig, "warmup_epochs")
    schedule = from_field(TrainConfig, "schedule", choices=list(SCHEDULES))
    patience = from_field(TrainConfig, "patience", description="early stopping on validation IoU; 0 = off")
    dice_weight = from_field(ModelConfig, "dice_weight")
    boundary_weight = from_field(ModelConfig, "boundary_weight")
    pose_free = from_field(ModelConfig, "pose_free", description="pose map zeroed, flat prior: the ablation")
    base_channels = from_field(ModelConfig, "base_channels")
    depth = from_field(ModelConfig, "depth")
    head = from_field(ModelConfig, "head", choices=list(HEADS))
    norm = from_field(ModelConfig, "norm", choices=list(NORMS))
    encoder = from_field(
        ModelConfig, "encoder", choices=list(ENCODERS), description="unet (from scratch) or mobilenet_v2 (pretrained)"
    )
    freeze_encoder = from_field(ModelConfig, "freeze_encoder", description="keep the pretrained encoder's weights")
    person_evidence = from_field(
        ModelConfig, "person_evidence", description="mobilenet_v2: DeepLab's person log-probability joins the decoder"
    )
    encoder_lr_scale = from_field(
        TrainConfig, "encoder_lr_scale", description="the pretrained parts learn at lr x this"
    )
    select = luigi.ChoiceParameter(
        choices=["last", "best"],
        default="last",
        description="weights kept in model.pt: the last epoch's, or the best on val",
    )
    num_workers = from_field(TrainConfig, "num_workers", significant=False)
    device = from_field(TrainConfig, "device", significant=False, description="auto | cpu | cuda | cuda:N")
    cpu_bf16 = from_field(
        TrainConfig,
        "cpu_bf16",
        significant=False,
        description="bf16 autocast on CPUs with native bf16 (AMX / AVX512-BF16): x2.0-2.8 training steps",
    )
    compile = from_field(
        TrainConfig, "compile", significant=False, description="torch.compile the training forward (~40 s first step)"
    )
    num_threads = from_field(
        TrainConfig,
        "num_threads",
        significant=False,
        description="torch CPU threads; 0 = torch's default, one per core: training runs alone, so unlike the "
        "parallel stages ([resources] torch_threads = 1) it takes every core (10.5 against 6.1 samples/s "
        "with 1 thread, measured on 2 cores)",
    )
    configs = (config.crop,)

    train_on: luigi.ListParameter
    validate_on: luigi.ListParameter

    def cache_tasks(self, entries: Sequence[str]) -> list[BuildCache]:
        """BuildCache of each NAME[/SPLIT] entry (split default: train)."""
        return [BuildCache(dataset=d, split=s) for d, s in (parse_dataset_split(e) for e in entries)]

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"model": self.target("model.pt"), "summary": self.target("train_summary.json")}

    def model_config(self) -> ModelConfig:
        pose_channels = 14 if config.crop().per_joint_posemap else 1
        return ModelConfig(
            base_channels=self.base_channels,
            depth=self.depth,
            pose_channels=pose_channels,
            head=self.head,
            norm=self.norm,
            dice_weight=self.dice_weight,
            boundary_weight=self.boundary_weight,
            pose_free=self.pose_free,
            encoder=self.encoder,
            freeze_encoder=self.freeze_encoder,
            person_evidence=self.person_evidence,
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
            num_workers=self.num_workers,
            device=self.device,
            augment=self.augment,
            warmup_epochs=self.warmup_epochs,
            schedule=self.schedule,
            patience=self.patience,
            num_threads=self.num_threads,
            cpu_bf16=self.cpu_bf16,
            compile=self.compile,
            encoder_lr_scale=self.encoder_lr_scale,
        )

    def caches(self) -> tuple[list[str], list[str]]:
        req = self.input()
        return [p for t in req["train"] for p in cache_paths(t)], [p for t in req["val"] for p in cache_paths(t)]

    def init_weights(self) -> str | None:
        return None

    def run(self) -> None:
        from models.network import PoseUNet, read_weights, save_model, train  # torch loads here, not on import

        train_paths, val_paths = self.caches()
        model_cfg = self.model_config()
        result = train(
            model_cfg,
            self.train_config(),
            train_paths,
            val_paths,
            self.work_dir(),
            init_weights=self.init_weights(),
            progress=lambda done, total, msg: self.report_progress(done / max(total, 1), msg),
        )
        selected = self.select
        if selected == "best" and not Path(result["best_checkpoint"]).is_file():
            # No epoch had a finite validation IoU (e.g. an empty val cache): nothing to call best.
            logger.warning(
                "%s: no best.pt (no finite validation IoU); keeping the last epoch's weights", self.task_family
            )
            selected = "last"
        chosen = result["best_checkpoint"] if selected == "best" else result["last_checkpoint"]
        model = PoseUNet(model_cfg)
        model.load_state_dict(read_weights(Path(chosen)))
        meta = {
            "task": self.task_family,
            "train_on": list(self.train_on),
            "validate_on": list(self.validate_on),
            "signature": self.signature(),
            "selected": selected,
            "epochs_completed": result["epochs_completed"],
            "stopped_early": result["stopped_early"],
            "best_val_iou": result["best_val_iou"],
            "best_epoch": result["best_epoch"],
        }
        save_model(self.output()["model"].path, model, model_cfg, meta)
        history = result["history"]
        write_json(
            self.output()["summary"].path,
            {
                **meta,
                "resumed_from_epoch": result["resumed_from_epoch"],
                "device": result["device"],
                "train_caches": train_paths,
                "val_caches": val_paths,
                "history": history,
                "last_val_iou": history[-1].get("val_iou") if history else None,
            },
        )


class TrainModel(TrainingTask):
    """Train the pose-guided U-Net on a list of datasets (default COCO train2017), validating on
    another list (default val2017) -> model.pt."""

    train_on = luigi.ListParameter(default=["coco/train"], description="datasets NAME[/SPLIT] to train on")
    validate_on = luigi.ListParameter(default=["coco/val"], description="datasets NAME[/SPLIT] to validate on")

    def requires(self) -> dict[str, list[BuildCache]]:
        return {"train": self.cache_tasks(self.train_on), "val": self.cache_tasks(self.validate_on)}


class FineTune(TrainingTask):
    """Fine-tune TrainModel's network on VOC (train list), monitoring on the VOC val list."""

    train_on = luigi.ListParameter(default=["voc/train"], description="datasets NAME[/SPLIT] to fine-tune on")
    validate_on = luigi.ListParameter(default=["voc/val"], description="datasets NAME[/SPLIT] to validate on")
    # The architecture is the pretrained network's: these inherited parameters are ignored here,
    # so they must not name (or hash) FineTune's output folder.
    base_channels = luigi.IntParameter(default=16, significant=False, description="ignored: [TrainModel]'s")
    depth = luigi.IntParameter(default=4, significant=False, description="ignored: [TrainModel]'s")
    head = luigi.Parameter(default="logit", significant=False, description="ignored: [TrainModel]'s")
    norm = luigi.Parameter(default="batch", significant=False, description="ignored: [TrainModel]'s")
    dice_weight = luigi.FloatParameter(default=1.0, significant=False, description="ignored: [TrainModel]'s")
    boundary_weight = luigi.FloatParameter(default=0.0, significant=False, description="ignored: [TrainModel]'s")
    pose_free = luigi.BoolParameter(default=False, significant=False, description="ignored: [TrainModel]'s")
    person_evidence = luigi.BoolParameter(default=False, significant=False, description="ignored: [TrainModel]'s")

    def requires(self) -> dict[str, luigi.Task]:
        return {
            "pretrained": TrainModel(),
            "train": self.cache_tasks(self.train_on),
            "val": self.cache_tasks(self.validate_on),
        }

    def init_weights(self) -> str:
        return self.input()["pretrained"]["model"].path

    def model_config(self) -> ModelConfig:
        # The architecture is the pretrained network's, whatever [FineTune] says.
        return TrainModel().model_config()


# Network methods -> the task that trains them. "unet-coco-paper" is the paper's tanh/MSE head,
# trained with [TrainModel]'s other settings, so the report can say which head wins;
# "unet-coco-posefree" the same network and recipe without keypoints (pose map zeroed, flat prior);
# "unet-coco-pretrained" the MobileNetV2 encoder of the shipped DeepLab-v3 with its weights. Each
# entry names its encoder, so that one [TrainModel] recipe trains both side by side.
MODELS: dict[str, Callable[[], PoseMaskTask]] = {
    "unet-coco": lambda: TrainModel(encoder="unet"),
    "unet-coco-paper": lambda: TrainModel(encoder="unet", head="paper"),
    "unet-coco-posefree": lambda: TrainModel(encoder="unet", pose_free=True),
    "unet-coco-pretrained": lambda: TrainModel(encoder="mobilenet_v2"),
    "unet-voc": FineTune,
}


class shipped(luigi.Config):  # noqa: N801 - section names follow luigi.cfg
    """[shipped] the network of MODELS that `make shipped-model` trains, measures (bench/accuracy.py)
    and copies into the package (scripts/ship_model.py); configs/shipped.cfg names it."""

    network = luigi.ChoiceParameter(choices=list(MODELS), default="unet-coco", description="a MODELS name")
