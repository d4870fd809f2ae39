"""Every method the report can compare, by name: a registry from name to the task whose pred.h5 holds it.

    prior, grabcut, slic_grabcut, posefree   Baselines(method=...)         (pipeline/baselines.py)
    unet-coco, unet-coco-pretrained, unet-coco-paper, unet-coco-posefree, unet-voc   PredictMasks(model=...)
    <network>+crf                            RefineCRF(model=<network>)    (pipeline/crf.py)

Add a classical method to pipeline.baselines.BASELINES, a network to pipeline.train.MODELS.
"""

from __future__ import annotations

from pipeline.baselines import BASELINES, Baselines
from pipeline.core import PoseMaskTask
from pipeline.crf import RefineCRF
from pipeline.predict import PredictMasks
from pipeline.train import MODELS

CRF_SUFFIX = "+crf"
# What EvaluateAll compares by default: every classical method, every network, the CRF on the
# logit-head networks (the paper head's CRF adds nothing the report needs).
REPORT_METHODS: tuple[str, ...] = (
    *BASELINES,
    "unet-coco",
    "unet-coco+crf",
    "unet-coco-pretrained",  # its CRF: bench/accuracy.py (the demo stays within its time)
    "unet-coco-paper",
    "unet-coco-posefree",
    "unet-voc",
    "unet-voc+crf",
)


def prediction_task(method: str, dataset: str, split: str) -> PoseMaskTask:
    """The task whose pred.h5 holds `method`'s probabilities (e.g. "grabcut", "unet-coco+crf")."""
    if method in BASELINES:
        return Baselines(dataset=dataset, split=split, method=method)
    if method.endswith(CRF_SUFFIX) and method.removesuffix(CRF_SUFFIX) in MODELS:
        return RefineCRF(model=method.removesuffix(CRF_SUFFIX), dataset=dataset, split=split)
    if method in MODELS:
        return PredictMasks(model=method, dataset=dataset, split=split)
    raise ValueError(f"unknown method {method!r}")
