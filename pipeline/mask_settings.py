"""What GenerateMasks and MaskShard share: their parameters, the model's identity, and what they load.

    MaskSettings            the parameters of both tasks (a mixin; luigi finds parameters by dir())
    MaskSettings.model_requirement() / crf_identity() / model_id() / shared_params()
    network(path, device)   a model file's network, loaded once per process while the file is unchanged
    native_bf16(device)     whether `device` computes bf16 natively (then the network runs in it)
    keypoint_index(path)    load_keypoint_file, cached per process while the file is unchanged

The tasks themselves are pipeline/generate.py's.
"""

from __future__ import annotations

import functools
from pathlib import Path

import luigi

from models.evaluation import QUALITY_RULE, QualityModel, model_calibration
from models.utils import SHIPPED_CRF, SHIPPED_MODEL, SHIPPED_NAME, require
from pipeline import config
from pipeline.config import with_range
from pipeline.crf import TuneCRF
from pipeline.estimators import METHODS, POSEMASK
from pipeline.lib.files import short_hash
from pipeline.lib.folder import file_hash
from pipeline.lib.keypoint_files import KeypointIndex, load_keypoint_file
from pipeline.train import MODELS


@functools.lru_cache(maxsize=2)
def _network(path: str, device: str, size: int, mtime_ns: int):  # noqa: ANN202 - a models.network.unet.PoseUNet
    from models.network import load_model, resolve_device

    net, _, _ = load_model(path, resolve_device(device))
    return net


def network(path: str, device: str):  # noqa: ANN201 - a models.network.unet.PoseUNet
    """The network of a model file, loaded once per process while the file is unchanged (the
    shards of a night run one after another in a process: each would load it again)."""
    stat = Path(path).stat()
    return _network(path, device, stat.st_size, stat.st_mtime_ns)


def native_bf16(device: str) -> bool:
    """Whether `device` ("cpu", "cuda", "auto") computes bf16 natively."""
    from models.network import native_bf16 as computes_bf16
    from models.network import resolve_device

    return computes_bf16(resolve_device(device))


@functools.lru_cache(maxsize=2)
def _cached_keypoint_file(path: str, size: int, mtime_ns: int) -> KeypointIndex:
    return load_keypoint_file(path)


def keypoint_index(path: str) -> KeypointIndex:
    """load_keypoint_file, cached per process while the file is unchanged (shards share it)."""
    stat = Path(path).stat()
    return _cached_keypoint_file(str(path), stat.st_size, stat.st_mtime_ns)


class MaskSettings:
    """Parameters GenerateMasks and MaskShard share (a mixin of luigi tasks; luigi finds parameters by dir())."""

    input_dir = luigi.Parameter(description="folder of photos (searched recursively)")
    output_dir = luigi.Parameter(description="where masks, manifests and summary.json go")
    model = luigi.Parameter(
        default=SHIPPED_NAME,
        description=f"{SHIPPED_NAME} (the model inside the package) | unet-coco | unet-voc | path to a model.pt",
    )
    keypoints = luigi.Parameter(
        default="",
        description="COCO annotations/results JSON; empty = photo.json "
        "beside each photo, else the built-in pose estimator",
    )
    method = luigi.ChoiceParameter(
        choices=list(METHODS),
        default=POSEMASK,
        description="posemask, or a whole-photo peer to compare with (models.people.peers)",
    )
    crf = luigi.BoolParameter(default=False, description="refine masks with the dense CRF")
    grabcut = luigi.BoolParameter(
        default=False,
        description="refine each network mask by GrabCut in the person's box (off: over 306 photos "
        "of four sets, 0.702 mean IoU with it, 0.733 without, at 0.74x the speed; it helps where "
        "people are small or occluded: coco128train +0.027, OCHuman +0.019)",
    )
    flip = luigi.BoolParameter(
        default=True,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="test-time flip of the network (as [PredictMasks] flip)",
    )
    bf16 = luigi.BoolParameter(
        default=True,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="the network in bf16 where the hardware computes it natively (CPUs with AMX / "
        "AVX512-BF16, CUDA; float32 elsewhere): x1.9 forward on this CPU, masks IoU 0.999 to float32's",
    )
    max_pixels = with_range(
        luigi.IntParameter(
            default=64_000_000,
            description="images with more pixels are refused from their header (decompression bombs)",
        ),
        1,
    )
    min_keypoints = with_range(
        luigi.IntParameter(default=4, description="people with fewer keypoints get no mask"), 0, 17
    )
    crf_params = luigi.DictParameter(
        default={}, description="CRFParams for a model given as a path (named models use TuneCRF's crf.json)"
    )
    device = luigi.Parameter(default="cpu", significant=False, description="cpu | cuda | auto")
    people_per_batch = with_range(
        luigi.IntParameter(
            default=16,
            significant=False,
            description="people segmented at once: bounds one photo's memory, whatever its number of people",
        ),
        1,
    )
    progress = luigi.BoolParameter(
        default=True,
        significant=False,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="a progress bar over each shard's photos",
    )

    def model_requirement(self) -> dict[str, luigi.Task]:
        """The tasks that make the model (and the CRF parameters); none for a model file or a peer."""
        if self.model not in MODELS or self.method != POSEMASK:
            return {}
        required: dict[str, luigi.Task] = {"model": MODELS[self.model]()}
        if self.crf:
            required["crf"] = TuneCRF(model=self.model)
        return required

    def crf_identity(self) -> object:
        """What the CRF parameters come from: TuneCRF (named models), the shipped crf.json, or crf_params."""
        if self.model in MODELS:
            return TuneCRF(model=self.model).signature()
        if self.model == SHIPPED_NAME:
            return file_hash(require(SHIPPED_CRF))
        return dict(self.crf_params)

    def quality_calibration(self) -> QualityModel | None:
        """The model's quality calibration: the shipped model's quality.json, or the quality.json
        beside a model file; None (the raw quality) for a peer and the DAG's named models."""
        if self.method != POSEMASK or self.model in MODELS:
            return None
        return model_calibration(SHIPPED_MODEL if self.model == SHIPPED_NAME else self.model)

    def model_id(self) -> str:
        """Identity of everything that shapes a mask: weights, CRF, GrabCut, crop config, threshold;
        and of how it is scored: the quality calibration and rule (models.evaluation.QUALITY_RULE)."""
        if self.method != POSEMASK:
            return f"peer:{self.method}/{short_hash({'threshold': config.evaluation().threshold}, 8)}"
        if self.model in MODELS:
            base = f"{self.model}:{MODELS[self.model]().signature()}"
        elif self.model == SHIPPED_NAME:
            base = f"{SHIPPED_NAME}:{file_hash(require(SHIPPED_MODEL))[:12]}"
        else:
            path = Path(self.model)
            if not path.is_file():
                raise FileNotFoundError(f"model {self.model!r} is neither {list(MODELS)} nor a model file")
            base = f"file:{file_hash(path)[:12]}"
        if self.crf:
            base += f"+crf:{short_hash(self.crf_identity(), 8)}"
        if self.grabcut:
            base += "+grabcut"
        if self.flip:
            base += "+flip"
        if self.bf16:  # the setting, not whether this machine applies it: shards stay machine-independent
            base += "+bf16"
        if (calibration := self.quality_calibration()) is not None:  # it changes each result's score
            base += f"+quality:{short_hash(calibration.to_dict(), 8)}"
        settings = {
            "crop": config.crop().to_crop_config().to_dict(),
            "threshold": config.evaluation().threshold,
            "min_keypoints": self.min_keypoints,
            "quality_rule": QUALITY_RULE,  # as the calibration: it changes each result's quality and score
        }
        return f"{base}/{short_hash(settings, 8)}"

    def shared_params(self) -> dict:
        names = (
            "input_dir",
            "output_dir",
            "model",
            "method",
            "keypoints",
            "crf",
            "grabcut",
            "flip",
            "bf16",
            "max_pixels",
            "min_keypoints",
            "crf_params",
            "device",
            "people_per_batch",
            "progress",
        )
        return {name: getattr(self, name) for name in names}
