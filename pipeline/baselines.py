"""Baselines: masks without the network (models/classical/: baselines.py, graphcut.py, coopcut.py;
models/people/posefree.py) -> pred.h5."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import luigi
import numpy as np
from tqdm import tqdm

from models.classical import baselines as classical
from models.classical import coopcut, graphcut
from pipeline import config
from pipeline.cache import BuildCache
from pipeline.core import PoseMaskTask
from pipeline.lib.cachefile import cache_ids, cache_samples
from pipeline.lib.pools import pooled_map
from pipeline.lib.predictions import timed, write_predictions


def _deeplab(sample: dict[str, np.ndarray], **params: object) -> np.ndarray:
    from models.people import deeplab_baseline  # onnxruntime loads only where it is used

    return deeplab_baseline(sample["image"], **params)


def _posefree(sample: dict[str, np.ndarray], **params: object) -> np.ndarray:
    from models.people import posefree_baseline  # mediapipe loads only where it is used

    return posefree_baseline(sample["image"], **params)


# Classical method -> f(cached sample, **[baselines] keyword arguments) -> (S,S) float32 mask.
BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "prior": lambda sample, **p: classical.prior_baseline(sample["prior"].astype(np.float32) / 255.0, **p),
    "grabcut": lambda sample, **p: classical.grabcut_baseline(sample["image"], sample["joints"], **p),
    "slic_grabcut": lambda sample, **p: classical.slic_grabcut_baseline(sample["image"], sample["joints"], **p),
    "posefree": _posefree,
    "gmm_graphcut": lambda sample, **p: graphcut.gmm_graphcut_baseline(sample["image"], sample["joints"], **p),
    "slic_gmm_graphcut": lambda sample, **p: graphcut.slic_gmm_graphcut_baseline(
        sample["image"], sample["joints"], **p
    ),
    "coopcut": lambda sample, **p: coopcut.coopcut_baseline(sample["image"], sample["joints"], **p),
    "deeplab": _deeplab,
}


def _baseline_one(sample: dict[str, np.ndarray], method: str, params: dict) -> np.ndarray:
    """Pool worker: one cached sample -> (S,S) float32 probability of a classical method."""
    return BASELINES[method](sample, **params)


class Baselines(PoseMaskTask):
    """Masks without the network: prior thresholded, GrabCut, SLIC + GrabCut (all seeded by the pose),
    and a pose-free segmenter (MediaPipe selfie segmentation) -> pred.h5."""

    dataset = luigi.Parameter(default="coco")
    split = luigi.Parameter(default="val")
    method = luigi.ChoiceParameter(choices=list(BASELINES), default="grabcut")
    configs = (config.baselines,)

    def requires(self) -> BuildCache:
        return BuildCache(dataset=self.dataset, split=self.split)

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"pred": self.target("pred.h5")}

    def run(self) -> None:
        cache_path = self.input()["cache"].path
        ids, size = cache_ids(cache_path)
        params = dict(getattr(config.baselines(), self.method))
        settings = config.cache()
        fn = partial(_baseline_one, method=self.method, params=params)
        samples = cache_samples(cache_path, ("image", "joints", "prior"))
        desc = f"{self.method} {self.dataset}/{self.split}"
        progress = lambda d, n: self.report_progress(d / max(n, 1), f"{d}/{n} {self.method}")  # noqa: E731
        if self.method == "posefree":
            # MediaPipe runs its own threads: a forked child of a process that already used it
            # (VOCPersons in the same worker) can deadlock, so the segmenter runs in-process.
            probs = (fn(sample) for sample in tqdm(samples, total=len(ids), desc=desc))
        else:
            probs = pooled_map(fn, samples, settings.processes, settings.window, len(ids), progress, desc)
        # Wall time over the pool: per-image cost as a user running the stage sees it.
        attrs = {"method": self.method, "device": "cpu"}
        write_predictions(Path(self.output()["pred"].path), timed(probs, attrs, len(ids)), ids, size, attrs)
