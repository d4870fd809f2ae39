"""Luigi tasks that provide COCO 2017 and PASCAL VOC 2012: an existing copy, or a verified download.

``DownloadCOCO`` / ``DownloadVOC`` output a marker under the work folder,
``<[work] root>/<TaskFamily>/<root name>-<hash>/complete.json``, where the hash covers the resolved
dataset root and the layout check's settings (``coco_splits``). The marker is JSON with the dataset
``root``, ``source`` and, after a download, the archives' sizes and MD5s. Nothing is written into an
existing copy (it may be read-only or shared); a download also leaves ``<root>/.complete`` as a record.
``complete()`` re-checks the layout (cheap: a few ``stat`` calls), so a copy that lost a folder is no
longer complete. Downstream tasks read the dataset root from the marker's ``root`` key (or from the
task's ``dataset_root()``). All the work is done by :func:`pipeline.lib.fetch.prepare_dataset`; the tasks
only read ``[DownloadConfig]``, write the marker and report progress.

The folder parameter is called ``root`` (like ``COCOPersons.root``), not ``coco_root``: luigi's command
line already has global flags ``--coco-root`` / ``--voc-root`` for the ``[coco]`` / ``[voc]`` config
sections' ``root``, and a task parameter ``coco_root`` would add the same flag when the task is the
root task (argparse refuses the clash).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import luigi

from pipeline.core import work
from pipeline.lib.dataset_layouts import check_coco_layout, check_voc_layout
from pipeline.lib.fetch import ArchiveSpec, prepare_dataset
from pipeline.lib.files import write_json
from pipeline.lib.transfer import DownloadOptions, apply_mirror, archive_name

logger = logging.getLogger(__name__)

# Official archives. Sizes in bytes as served by the hosts; MD5s as published by torchvision.
COCO_URLS = (
    "http://images.cocodataset.org/zips/train2017.zip",
    "http://images.cocodataset.org/zips/val2017.zip",
    "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
)
COCO_SIZES = {
    "train2017.zip": 19_336_861_798,
    "val2017.zip": 815_585_330,
    "annotations_trainval2017.zip": 252_907_541,
}
COCO_MD5S = {
    "train2017.zip": "cced6f7f71b7629ddf16f17bbcfab6b2",
    "val2017.zip": "442b8da7639aecaf257c1dceb8ba8c80",
    "annotations_trainval2017.zip": "f4bbac642086de4f52a3fdda2de5fa2c",
}
VOC_URLS = ("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",)
VOC_SIZES = {"VOCtrainval_11-May-2012.tar": 1_999_639_040}
VOC_MD5S = {"VOCtrainval_11-May-2012.tar": "6cd6e144f989b92b3379bac3b3de84fd"}


class DownloadConfig(luigi.Config):
    """``[DownloadConfig]`` in luigi.cfg: where archives come from and how hard to try."""

    mirror = luigi.Parameter(default="", description="base URL replacing scheme+host of every URL; '' = official")
    raw_dir = luigi.Parameter(default="data/raw", description="default home of datasets (raw_dir/coco, raw_dir/voc)")
    archive_dir = luigi.Parameter(default="", description="where archives are downloaded; '' = raw_dir/archives")
    keep_archives = luigi.BoolParameter(default=True, description="keep archives after a verified extraction")
    retries = luigi.IntParameter(default=5, description="extra attempts for transient failures")
    backoff_s = luigi.FloatParameter(default=2.0, description="first wait between attempts, doubled each time")
    max_backoff_s = luigi.FloatParameter(default=60.0, description="longest wait between attempts")
    timeout_s = luigi.FloatParameter(default=60.0, description="socket timeout for connect and each read")
    chunk_bytes = luigi.IntParameter(default=1 << 20, description="bytes per read/write/hash step")
    progress = luigi.BoolParameter(default=True, description="tqdm progress bars on stderr")
    coco_urls = luigi.ListParameter(default=COCO_URLS)
    coco_sizes = luigi.DictParameter(default=COCO_SIZES, description="archive file name -> bytes")
    coco_md5s = luigi.DictParameter(default=COCO_MD5S, description="archive file name -> hex MD5")
    coco_splits = luigi.ListParameter(default=("train", "val"), description="splits the layout check requires")
    voc_urls = luigi.ListParameter(default=VOC_URLS)
    voc_sizes = luigi.DictParameter(default=VOC_SIZES, description="archive file name -> bytes")
    voc_md5s = luigi.DictParameter(default=VOC_MD5S, description="archive file name -> hex MD5")

    def options(self) -> DownloadOptions:
        return DownloadOptions(
            retries=self.retries,
            backoff_s=self.backoff_s,
            max_backoff_s=self.max_backoff_s,
            timeout_s=self.timeout_s,
            chunk_bytes=self.chunk_bytes,
            progress=self.progress,
        )

    def archive_folder(self) -> Path:
        return Path(self.archive_dir) if self.archive_dir else Path(self.raw_dir) / "archives"

    def specs(self, urls: Sequence[str], sizes: Mapping[str, int], md5s: Mapping[str, str]) -> list[ArchiveSpec]:
        """Archive specs with the mirror applied; sizes and MD5s are looked up by archive file name."""
        specs = []
        for url in urls:
            name = archive_name(url)
            if name not in md5s:
                logger.warning("no MD5 configured for %s: it will be checked by size only, if at all", name)
            size = sizes.get(name)
            specs.append(
                ArchiveSpec(apply_mirror(url, self.mirror), int(size) if size is not None else None, md5s.get(name))
            )
        return specs


class _ReportsProgress:
    """Mixin: forward ``prepare_dataset`` progress to the scheduler (callbacks exist only under a worker)."""

    def report(self, percent: float, message: str) -> None:
        set_progress = getattr(self, "set_progress_percentage", None)
        set_status = getattr(self, "set_status_message", None)
        if callable(set_progress):
            set_progress(int(percent))
        if callable(set_status):
            set_status(message)


class _DownloadTask(_ReportsProgress, luigi.Task):
    """One dataset folder: used as it is when its layout checks out, else downloaded into."""

    root = luigi.Parameter(default="", description="existing or target dataset folder; '' = raw_dir/<dataset>")
    dataset = ""  # "coco" | "voc": the default folder name and the [DownloadConfig] keys

    def dataset_root(self) -> Path:
        return Path(self.root) if self.root else Path(DownloadConfig().raw_dir) / self.dataset

    def layout_settings(self, config: DownloadConfig) -> dict[str, object]:
        """Settings of the layout check: part of the marker's identity (a change means check again)."""
        return {}

    def layout_check(self, config: DownloadConfig) -> Callable[[Path], list[str]]:
        raise NotImplementedError

    def marker_path(self) -> Path:
        """``<[work] root>/<TaskFamily>/<root name>-<sha1 of resolved root + layout settings>/complete.json``."""
        root = self.dataset_root().resolve()
        identity = {"root": str(root), "dataset": self.dataset, "layout": self.layout_settings(DownloadConfig())}
        digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        return Path(work().root) / self.task_family / f"{root.name or self.dataset}-{digest}" / "complete.json"

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.marker_path()))

    def complete(self) -> bool:
        """The marker exists and the folder still passes the layout check (a deleted folder counts)."""
        if not super().complete():
            return False
        problems = self.layout_check(DownloadConfig())(self.dataset_root())
        if problems:
            logger.warning(
                "%s: marker present but the layout is broken, run again: %s", self.dataset_root(), "; ".join(problems)
            )
        return not problems

    def run(self) -> None:
        config = DownloadConfig()
        urls, sizes, md5s = (getattr(config, f"{self.dataset}_{key}") for key in ("urls", "sizes", "md5s"))
        manifest = prepare_dataset(
            self.dataset_root(),
            config.specs(urls, sizes, md5s),
            config.archive_folder(),
            self.layout_check(config),
            dataset=self.dataset,
            options=config.options(),
            keep_archives=config.keep_archives,
            on_status=self.report,
        )
        write_json(self.marker_path(), {**manifest, "layout": self.layout_settings(config)})


class DownloadCOCO(_DownloadTask):
    """COCO 2017 images + keypoint annotations in ``root`` (``raw_dir/coco`` by default)."""

    root = luigi.Parameter(default="", description="existing or target COCO folder; '' = raw_dir/coco")
    dataset = "coco"

    def layout_settings(self, config: DownloadConfig) -> dict[str, object]:
        return {"splits": list(config.coco_splits)}

    def layout_check(self, config: DownloadConfig) -> Callable[[Path], list[str]]:
        return functools.partial(check_coco_layout, splits=tuple(config.coco_splits))


class DownloadVOC(_DownloadTask):
    """PASCAL VOC 2012 trainval in ``root`` (the folder holding ``VOCdevkit/``; ``raw_dir/voc`` by default)."""

    root = luigi.Parameter(default="", description="folder holding VOCdevkit/; '' = raw_dir/voc")
    dataset = "voc"

    def layout_check(self, config: DownloadConfig) -> Callable[[Path], list[str]]:
        return check_voc_layout
