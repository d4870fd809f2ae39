"""Predictions: the network (PredictMasks), classical baselines (Baselines), dense CRF (TuneCRF, RefineCRF).

Every prediction task writes ``pred.h5``: ``prob`` (N,S,S) float16 foreground probability in the
cache's sample order, ``instance_id`` (N,), attrs ``method``, ``ms_per_image`` and ``device``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import h5py
import luigi
import numpy as np
from tqdm import tqdm

from models import baselines as classical
from models.crf import DEFAULT_COARSE_GRID, DEFAULT_REFINE_FACTOR, CRFParams, grid_search, mean_iou, refine
from models.train import iter_predictions, load_model, resolve_device
from pipeline import config
from pipeline.cachebuild import bounded_imap
from pipeline.core import PoseMaskTask, atomic_path, write_json
from pipeline.data import BuildCache
from pipeline.train import FineTune, TrainModel

# Network methods -> the task that trains them. "unet-coco-paper" is the paper's tanh/MSE head,
# trained with [TrainModel]'s other settings, so the report can say which head wins.
MODELS: dict[str, Callable[[], PoseMaskTask]] = {
    "unet-coco": TrainModel,
    "unet-coco-paper": lambda: TrainModel(head="paper"),
    "unet-voc": FineTune,
}
BASELINES = ("prior", "grabcut", "slic_grabcut", "posefree")


def write_predictions(target: Path, probs: Iterable[np.ndarray], instance_ids: np.ndarray, crop_size: int,
                      attrs: dict) -> None:  # fmt: skip
    """Stream (S,S) probabilities into pred.h5 atomically (one sample per chunk; an empty split is fine)."""
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as h5:
        chunks = (1, crop_size, crop_size) if len(instance_ids) else None  # HDF5 refuses chunks of an empty set
        ds = h5.create_dataset("prob", (len(instance_ids), crop_size, crop_size), np.float16, chunks=chunks)
        written = 0
        for i, prob in enumerate(probs):
            ds[i] = prob
            written = i + 1
        if written != len(instance_ids):
            raise RuntimeError(f"{written} predictions for {len(instance_ids)} samples")
        h5.create_dataset("instance_id", data=np.asarray(instance_ids, np.int64))
        for key, value in attrs.items():
            h5.attrs[key] = value


def prediction_attrs(path: str | Path) -> dict:
    """The attributes of a pred.h5 (method, ms_per_image, device, ...)."""
    with h5py.File(path, "r") as h5:
        return dict(h5.attrs)


def stream_predictions(path: str | Path, stop: int | None = None) -> Iterator[np.ndarray]:
    """(S,S) float32 probabilities of a pred.h5, one sample at a time (memory stays flat)."""
    with h5py.File(path, "r") as h5:
        prob = h5["prob"]
        for i in range(prob.shape[0] if stop is None else min(stop, prob.shape[0])):
            yield prob[i].astype(np.float32)


def cache_samples(path: str | Path, names: tuple[str, ...]) -> Iterator[dict[str, np.ndarray]]:
    """Stream samples of a cache.h5 (only the datasets in `names`)."""
    with h5py.File(path, "r") as h5:
        for i in range(h5["image"].shape[0]):
            yield {name: h5[name][i] for name in names}


def cache_ids(path: str | Path) -> tuple[np.ndarray, int]:
    """Instance ids (N,) of a cache.h5 and its crop size S."""
    with h5py.File(path, "r") as h5:
        return h5["instance_id"][:], int(h5["image"].shape[1])


class PredictMasks(PoseMaskTask):
    """Network probabilities for every sample of a cache -> pred.h5 (batched, no grad)."""

    model = luigi.ChoiceParameter(choices=list(MODELS), default="unet-coco")
    dataset = luigi.Parameter(default="coco")
    split = luigi.Parameter(default="val")
    batch_size = luigi.IntParameter(default=16, significant=False)
    device = luigi.Parameter(default="auto", significant=False)

    def requires(self) -> dict[str, luigi.Task]:
        return {"model": MODELS[self.model](), "cache": BuildCache(dataset=self.dataset, split=self.split)}

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"pred": self.target("pred.h5")}

    def run(self) -> None:
        device = resolve_device(self.device)
        net, _, meta = load_model(self.input()["model"]["model"].path, device)
        cache_path = self.input()["cache"]["cache"].path
        ids, size = cache_ids(cache_path)
        start = time.perf_counter()

        attrs = {"method": self.model, "device": str(device)}

        def probabilities() -> Iterator[np.ndarray]:
            done = 0
            for _, batch in tqdm(iter_predictions(net, [cache_path], self.batch_size, device),
                                 desc=f"predict {self.model}"):  # fmt: skip
                yield from batch
                done += len(batch)
                self.report_progress(done / max(len(ids), 1), f"{done}/{len(ids)} predicted")
            # write_predictions stores attrs after the last sample, so the timing lands in the file
            attrs["ms_per_image"] = 1000 * (time.perf_counter() - start) / max(len(ids), 1)

        write_predictions(Path(self.output()["pred"].path), probabilities(), ids, size, attrs)


def _baseline_one(sample: dict[str, np.ndarray], method: str, params: dict) -> np.ndarray:
    """Pool worker: one cached sample -> (S,S) float32 probability of a classical method."""
    if method == "prior":
        return classical.prior_baseline(sample["prior"].astype(np.float32) / 255.0, **params)
    if method == "grabcut":
        return classical.grabcut_baseline(sample["image"], sample["joints"], **params)
    if method == "posefree":
        from models.posefree import posefree_baseline  # mediapipe loads only where it is used

        return posefree_baseline(sample["image"], **params)
    return classical.slic_grabcut_baseline(sample["image"], sample["joints"], **params)


def pooled_map(fn: Callable, items: Iterable, processes: int, window: int, total: int,
               progress: Callable[[int, int], None], desc: str) -> Iterator:  # fmt: skip
    """Ordered map over a fork pool with at most `window` items in flight, a tqdm bar and a progress callback."""
    with mp.get_context("fork").Pool(processes) as pool, tqdm(total=total, desc=desc) as bar:
        for done, result in enumerate(bounded_imap(pool, fn, items, window), start=1):
            yield result
            bar.update(1)
            if done % 8 == 0 or done == total:
                progress(done, total)


def timed(items: Iterable[np.ndarray], attrs: dict, count: int, base_ms: float = 0.0) -> Iterator[np.ndarray]:
    """Pass items through; when exhausted, set attrs["ms_per_image"] (write_predictions stores attrs last)."""
    start = time.perf_counter()
    yield from items
    attrs["ms_per_image"] = base_ms + 1000 * (time.perf_counter() - start) / max(count, 1)


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


class TuneCRF(PoseMaskTask):
    """Coarse-to-fine grid search of the dense-CRF parameters on validation predictions -> crf.json.

    The grid always includes "no refinement", so the chosen parameters never score below the raw
    network on the samples they were tuned on.
    """

    model = luigi.ChoiceParameter(choices=list(MODELS), default="unet-coco")
    dataset = luigi.Parameter(default="coco")
    split = luigi.Parameter(default="val")
    grid = luigi.DictParameter(default=DEFAULT_COARSE_GRID, description="coarse grid: CRFParams field -> values")
    refine_factor = luigi.FloatParameter(default=DEFAULT_REFINE_FACTOR)
    max_samples = luigi.IntParameter(default=64, description="validation samples the search runs on")
    configs = (config.evaluation,)

    def requires(self) -> dict[str, luigi.Task]:
        return {"pred": PredictMasks(model=self.model, dataset=self.dataset, split=self.split),
                "cache": BuildCache(dataset=self.dataset, split=self.split)}  # fmt: skip

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"crf": self.target("crf.json")}

    def run(self) -> None:
        probs = list(stream_predictions(self.input()["pred"]["pred"].path, stop=self.max_samples))
        n = len(probs)
        with h5py.File(self.input()["cache"]["cache"].path, "r") as h5:
            images, masks = h5["image"][:n], h5["mask"][:n]
        if n == 0:  # nothing to tune on: refinement stays off
            write_json(self.output()["crf"].path, {"params": CRFParams(enabled=False).to_dict(), "score": None,
                                                   "raw_score": None, "samples": 0, "table": []})  # fmt: skip
            return
        grid = {k: list(v) for k, v in self.grid.items()}
        tried: list[tuple[dict, float]] = []

        def seen(params: CRFParams, score: float) -> None:
            tried.append((params.to_dict(), score))
            self.report_progress(min(len(tried) / 40, 0.99), f"{len(tried)} CRF settings tried")

        metric = partial(mean_iou, threshold=config.evaluation().threshold)
        best, table = grid_search(list(images), probs, list(masks), grid, self.refine_factor, metric=metric,
                                  on_candidate=seen)  # fmt: skip
        raw = next(score for p, score in table if not p.enabled)
        write_json(self.output()["crf"].path, {
            "params": best.to_dict(), "score": max(s for _, s in table), "raw_score": raw, "samples": n,
            "tuned_on": f"{self.model} {self.dataset}/{self.split}",
            "table": [{"params": p.to_dict(), "mean_iou": s} for p, s in table],
        })  # fmt: skip


def _refine_one(item: tuple[np.ndarray, np.ndarray], params: dict) -> np.ndarray:
    image, prob = item
    return refine(image, prob, CRFParams.from_dict(params))


class RefineCRF(PoseMaskTask):
    """Dense-CRF refinement of a network's predictions with TuneCRF's parameters -> pred.h5."""

    model = luigi.ChoiceParameter(choices=list(MODELS), default="unet-coco")
    dataset = luigi.Parameter(default="coco")
    split = luigi.Parameter(default="val")

    def requires(self) -> dict[str, luigi.Task]:
        return {"pred": PredictMasks(model=self.model, dataset=self.dataset, split=self.split),
                "cache": BuildCache(dataset=self.dataset, split=self.split),
                "crf": TuneCRF(model=self.model)}  # fmt: skip

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"pred": self.target("pred.h5")}

    def run(self) -> None:
        params = json.loads(Path(self.input()["crf"]["crf"].path).read_text())["params"]
        pred_path = self.input()["pred"]["pred"].path
        upstream = prediction_attrs(pred_path)
        cache_path = self.input()["cache"]["cache"].path
        ids, size = cache_ids(cache_path)
        images = (s["image"] for s in cache_samples(cache_path, ("image",)))
        settings = config.cache()
        pairs = zip(images, stream_predictions(pred_path), strict=True)
        refined = pooled_map(partial(_refine_one, params=params), pairs,
                             settings.processes, settings.window, len(ids),
                             lambda d, n: self.report_progress(d / max(n, 1), f"{d}/{n} refined"),
                             f"crf {self.model} {self.dataset}/{self.split}")  # fmt: skip
        attrs = {"method": f"{self.model}+crf", "device": upstream.get("device", "cpu"),
                 "crf_params": json.dumps(params)}
        # ms per image = the network's forward pass plus the refinement
        write_predictions(Path(self.output()["pred"].path),
                          timed(refined, attrs, len(ids), float(upstream.get("ms_per_image", 0.0))), ids, size, attrs)


def prediction_task(method: str, dataset: str, split: str) -> PoseMaskTask:
    """The task whose pred.h5 holds `method`'s probabilities (e.g. "grabcut", "unet-coco+crf")."""
    if method in BASELINES:
        return Baselines(dataset=dataset, split=split, method=method)
    if method.endswith("+crf") and method[: -len("+crf")] in MODELS:
        return RefineCRF(model=method[: -len("+crf")], dataset=dataset, split=split)
    if method in MODELS:
        return PredictMasks(model=method, dataset=dataset, split=split)
    raise ValueError(f"unknown method {method!r}")
