"""Dense-CRF refinement: TuneCRF (coarse-to-fine grid search -> crf.json) and RefineCRF (-> pred.h5)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import luigi
import numpy as np

from models.classical import DEFAULT_COARSE_GRID, DEFAULT_REFINE_FACTOR, CRFParams, grid_search, mean_iou, refine
from pipeline import config
from pipeline.cache import BuildCache
from pipeline.core import PoseMaskTask
from pipeline.lib.cachefile import cache_ids, cache_samples
from pipeline.lib.files import write_json
from pipeline.lib.pools import pooled_map
from pipeline.lib.predictions import prediction_attrs, stream_predictions, timed, write_predictions
from pipeline.predict import PredictMasks
from pipeline.train import MODELS


class TuneCRF(PoseMaskTask):
    """Coarse-to-fine grid search of the dense-CRF parameters on a network's predictions -> crf.json.

    The grid always includes "no refinement", so the chosen parameters never score below the raw
    network on the samples they were tuned on. Tune on a set disjoint from every evaluation set
    (default: coco/train, the network's own training people; the shipped recipe uses a held-out
    set), or the report's "+crf" figures flatter the CRF.
    """

    model = luigi.ChoiceParameter(choices=list(MODELS), default="unet-coco")
    dataset = luigi.Parameter(default="coco")
    split = luigi.Parameter(default="train")
    grid = luigi.DictParameter(default=DEFAULT_COARSE_GRID, description="coarse grid: CRFParams field -> values")
    refine_factor = luigi.FloatParameter(default=DEFAULT_REFINE_FACTOR)
    max_samples = luigi.IntParameter(default=64, description="validation samples the search runs on")
    configs = (config.evaluation,)

    def requires(self) -> dict[str, luigi.Task]:
        return {
            "pred": PredictMasks(model=self.model, dataset=self.dataset, split=self.split),
            "cache": BuildCache(dataset=self.dataset, split=self.split),
        }

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"crf": self.target("crf.json")}

    def run(self) -> None:
        probs = list(stream_predictions(self.input()["pred"]["pred"].path, stop=self.max_samples))
        n = len(probs)
        samples = list(cache_samples(self.input()["cache"]["cache"].path, ("image", "mask"), stop=n))
        images, masks = [x["image"] for x in samples], [x["mask"] for x in samples]
        if n == 0:  # nothing to tune on: refinement stays off
            write_json(
                self.output()["crf"].path,
                {
                    "params": CRFParams(enabled=False).to_dict(),
                    "score": None,
                    "raw_score": None,
                    "samples": 0,
                    "table": [],
                },
            )
            return
        grid = {k: list(v) for k, v in self.grid.items()}
        tried: list[tuple[dict, float]] = []

        def seen(params: CRFParams, score: float) -> None:
            tried.append((params.to_dict(), score))
            self.report_progress(min(len(tried) / 40, 0.99), f"{len(tried)} CRF settings tried")

        metric = partial(mean_iou, threshold=config.evaluation().threshold)
        best, table = grid_search(images, probs, masks, grid, self.refine_factor, metric=metric, on_candidate=seen)
        raw = next(score for p, score in table if not p.enabled)
        write_json(
            self.output()["crf"].path,
            {
                "params": best.to_dict(),
                "score": max(s for _, s in table),
                "raw_score": raw,
                "samples": n,
                "tuned_on": f"{self.model} {self.dataset}/{self.split}",
                "table": [{"params": p.to_dict(), "mean_iou": s} for p, s in table],
            },
        )


def read_crf_file(path: Path | str) -> CRFParams:
    """CRFParams from a crf.json as TuneCRF writes it ({"params": {...}, "score": ..., ...})."""
    return CRFParams.from_dict(json.loads(Path(path).read_text())["params"])


def _refine_one(item: tuple[np.ndarray, np.ndarray], params: dict) -> np.ndarray:
    image, prob = item
    return refine(image, prob, CRFParams.from_dict(params))


class RefineCRF(PoseMaskTask):
    """Dense-CRF refinement of a network's predictions with TuneCRF's parameters -> pred.h5."""

    model = luigi.ChoiceParameter(choices=list(MODELS), default="unet-coco")
    dataset = luigi.Parameter(default="coco")
    split = luigi.Parameter(default="val")

    def requires(self) -> dict[str, luigi.Task]:
        return {
            "pred": PredictMasks(model=self.model, dataset=self.dataset, split=self.split),
            "cache": BuildCache(dataset=self.dataset, split=self.split),
            "crf": TuneCRF(model=self.model),
        }

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"pred": self.target("pred.h5")}

    def run(self) -> None:
        params = read_crf_file(self.input()["crf"]["crf"].path).to_dict()
        pred_path = self.input()["pred"]["pred"].path
        upstream = prediction_attrs(pred_path)
        cache_path = self.input()["cache"]["cache"].path
        ids, size = cache_ids(cache_path)
        images = (s["image"] for s in cache_samples(cache_path, ("image",)))
        settings = config.cache()
        pairs = zip(images, stream_predictions(pred_path), strict=True)
        refined = pooled_map(
            partial(_refine_one, params=params),
            pairs,
            settings.processes,
            settings.window,
            len(ids),
            lambda d, n: self.report_progress(d / max(n, 1), f"{d}/{n} refined"),
            f"crf {self.model} {self.dataset}/{self.split}",
        )
        attrs = {
            "method": f"{self.model}+crf",
            "device": upstream.get("device", "cpu"),
            "crf_params": json.dumps(params),
        }
        # ms per image = the network's forward pass plus the refinement
        write_predictions(
            Path(self.output()["pred"].path),
            timed(refined, attrs, len(ids), float(upstream.get("ms_per_image", 0.0))),
            ids,
            size,
            attrs,
        )
