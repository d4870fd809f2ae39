"""posemask's Luigi tasks. ``luigi --module pipeline <Task>`` finds every task here."""

from pipeline.settings import install_defaults

install_defaults()  # the packaged defaults.cfg under every luigi.cfg, before any section is read

# ruff: noqa: E402 - the tasks import after the defaults are in place

from pipeline.baselines import Baselines
from pipeline.cache import BuildCache, CacheShard
from pipeline.crf import RefineCRF, TuneCRF
from pipeline.download import DownloadCOCO, DownloadVOC
from pipeline.evaluate import Evaluate, EvaluateAll
from pipeline.generate import GenerateMasks, MaskShard
from pipeline.persons import COCOPersons, VOCPersons
from pipeline.predict import PredictMasks
from pipeline.track import TrackKeypoints
from pipeline.train import FineTune, TrainModel

__all__ = [
    "DownloadCOCO",
    "DownloadVOC",
    "COCOPersons",
    "VOCPersons",
    "BuildCache",
    "CacheShard",
    "TrainModel",
    "FineTune",
    "PredictMasks",
    "Baselines",
    "TuneCRF",
    "RefineCRF",
    "Evaluate",
    "EvaluateAll",
    "GenerateMasks",
    "MaskShard",
    "TrackKeypoints",
]
