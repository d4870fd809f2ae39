"""PredictMasks: the network's probabilities for every sample of a cache -> pred.h5 (lib/predictions.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import luigi
import numpy as np
from tqdm import tqdm

from pipeline import config
from pipeline.cache import BuildCache
from pipeline.core import PoseMaskTask
from pipeline.lib.cachefile import cache_ids
from pipeline.lib.predictions import write_predictions
from pipeline.train import MODELS


class PredictMasks(PoseMaskTask):
    """Network probabilities for every sample of a cache -> pred.h5 (batched, no grad)."""

    model = luigi.ChoiceParameter(choices=list(MODELS), default="unet-coco")
    dataset = luigi.Parameter(default="coco")
    split = luigi.Parameter(default="val")
    flip = luigi.BoolParameter(
        default=True,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="test-time flip: the mean of the photo's and its mirror's probability (2x the time)",
    )
    batch_size = luigi.IntParameter(default=16, significant=False)
    device = luigi.Parameter(default="auto", significant=False)

    def requires(self) -> dict[str, luigi.Task]:
        return {"model": MODELS[self.model](), "cache": BuildCache(dataset=self.dataset, split=self.split)}

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"pred": self.target("pred.h5")}

    def run(self) -> None:
        from models.network import iter_predictions, load_model, resolve_device  # torch loads here, not on import

        config.use_torch_threads()
        device = resolve_device(self.device)
        net, _, meta = load_model(self.input()["model"]["model"].path, device)
        net.inference_flip = self.flip
        cache_path = self.input()["cache"]["cache"].path
        ids, size = cache_ids(cache_path)
        start = time.perf_counter()

        attrs = {"method": self.model, "device": str(device), "flip": int(self.flip)}

        def probabilities() -> Iterator[np.ndarray]:
            done = 0
            for _, batch in tqdm(
                iter_predictions(net, [cache_path], self.batch_size, device), desc=f"predict {self.model}"
            ):
                yield from batch
                done += len(batch)
                self.report_progress(done / max(len(ids), 1), f"{done}/{len(ids)} predicted")
            # write_predictions stores attrs after the last sample, so the timing lands in the file
            attrs["ms_per_image"] = 1000 * (time.perf_counter() - start) / max(len(ids), 1)

        write_predictions(Path(self.output()["pred"].path), probabilities(), ids, size, attrs)
