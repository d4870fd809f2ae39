"""Person records: COCOPersons (COCO 2017, OCHuman) and VOCPersons -> persons.jsonl + summary.json.

COCOPersons (dataset coco) requires DownloadCOCO and VOCPersons requires DownloadVOC on the same
root: an existing copy whose layout checks out is used as it is, otherwise it is downloaded. The
record format is pipeline/lib/records.py's; the readers of each source are in pipeline/lib/annotations.py
(COCO) and pipeline/lib/estimated_poses.py (VOC, and COCO-format datasets with estimated keypoints).
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path

import luigi
from luigi.configuration import get_config
from tqdm import tqdm

from pipeline import config
from pipeline.core import PoseMaskTask, config_values
from pipeline.download import DownloadCOCO, DownloadVOC
from pipeline.lib.annotations import PersonFilter, Tally, coco_person_records
from pipeline.lib.estimated_poses import voc_person_records, with_estimated_keypoints
from pipeline.lib.files import write_json, write_jsonl

# A named COCO-format dataset is a config section [dataset.NAME] (see COCOSource).
DATASET_SECTION = "dataset."
DATASET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
KEYPOINT_MODES = ("given", "estimate")


@dataclass(frozen=True)
class COCOSource:
    """Where a COCO-format dataset lives, as a [dataset.NAME] section (or [coco] / [ochuman]) says.

    root: the dataset folder; annotations, images: the annotation file and the image folder under
    it, ``{split}`` replaced by the split; keypoints: "given" (the file's COCO keypoints) or
    "estimate" (none in the file: the built-in estimator runs on each instance's box and the pose
    is kept when its joints fall on that instance's mask, [voc_pose]'s rule; once, in COCOPersons).
    """

    root: str
    annotations: str
    images: str
    keypoints: str = "given"

    def __post_init__(self) -> None:
        if self.keypoints not in KEYPOINT_MODES:
            raise ValueError(f"keypoints must be one of {KEYPOINT_MODES}, got {self.keypoints!r}")

    def layout(self, split: str, root: str = "") -> tuple[Path, str, str]:
        """(root, annotation file, image folder) of `split`; `root` overrides the configured one."""
        return Path(root or self.root), self.annotations.format(split=split), self.images.format(split=split)


def configured_source(section: str) -> COCOSource:
    """The COCOSource of a [dataset.NAME] section; ValueError names the section and what is wrong."""
    parser = get_config()
    known = {f.name for f in fields(COCOSource)}
    given = dict(parser.items(section))
    unknown = sorted(set(given) - known - set(parser.defaults()))
    missing = sorted({"root", "annotations", "images"} - set(given))
    if unknown or missing:
        raise ValueError(f"[{section}]: unknown keys {unknown}, missing keys {missing} (keys: {sorted(known)})")
    try:
        return COCOSource(**{k: v for k, v in given.items() if k in known})
    except ValueError as e:
        raise ValueError(f"[{section}]: {e}") from None


def coco_sources() -> dict[str, COCOSource]:
    """Every COCO-format dataset by name: coco and ochuman ([coco], [ochuman]) and each [dataset.NAME]."""
    sources = {
        "coco": COCOSource(config.coco().root, config.coco().annotations, config.coco().images),
        "ochuman": COCOSource(config.ochuman().root, config.ochuman().annotations, config.ochuman().images),
    }
    for section in get_config().sections():
        if not section.startswith(DATASET_SECTION):
            continue
        name = section.removeprefix(DATASET_SECTION)
        if not DATASET_NAME.fullmatch(name) or name in (*sources, "voc"):
            raise ValueError(f"[{section}]: a dataset name is a-z, 0-9, - and _, and not coco, ochuman or voc")
        sources[name] = configured_source(section)
    return sources


def dataset_names() -> list[str]:
    """Every dataset a task can name: the COCO-format ones and voc."""
    return [*coco_sources(), "voc"]


def coco_source(name: str) -> COCOSource:
    sources = coco_sources()
    if name not in sources:
        raise ValueError(f"unknown dataset {name!r}; known: {dataset_names()} (add one as a [dataset.{name}] section)")
    return sources[name]


class COCOPersons(PoseMaskTask):
    """Person instances of a COCO-format dataset (coco, ochuman or a [dataset.NAME]) -> persons.jsonl + summary.json.

    A dataset with ``keypoints = estimate`` gets them here, once, from the built-in estimator
    ([pose]) on each instance's box, kept by [voc_pose]'s rule; every later stage reads them from
    persons.jsonl. summary.json counts every skip by reason.
    """

    dataset = luigi.Parameter(default="coco", description="coco | ochuman | a [dataset.NAME] section")
    split = luigi.Parameter(default="val", description="{split} in the dataset's paths: train | val | ...")
    root = luigi.Parameter(default="", description="dataset root; empty = the dataset's configured root")
    configs = (config.coco, config.ochuman, config.persons)

    def source(self) -> COCOSource:
        return coco_source(self.dataset)

    def layout(self) -> tuple[Path, str, str]:
        return self.source().layout(self.split, self.root)

    def signature_settings(self) -> dict:
        """A named dataset's section, and the estimator's settings when it estimates keypoints."""
        if self.dataset in ("coco", "ochuman"):
            return {}
        source = self.source()
        settings: dict = {"source": {f.name: getattr(source, f.name) for f in fields(source)}}
        if source.keypoints == "estimate":
            settings["pose"] = config.pose().params()
            settings["voc_pose"] = config_values(config.voc_pose)
        return settings

    def requires(self) -> DownloadCOCO | list:
        """COCO 2017 comes from DownloadCOCO (an existing valid copy is used as is); others have no download."""
        return DownloadCOCO(root=str(self.layout()[0])) if self.dataset == "coco" else []

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"records": self.target("persons.jsonl"), "summary": self.target("summary.json")}

    def run(self) -> None:
        root, annotations, images = self.layout()
        source = self.source()
        tally = Tally()
        self.report_progress(0.0, f"reading {root / annotations}")
        filt = config.persons().filter()
        estimating = source.keypoints == "estimate"
        # Estimated poses are checked against [voc_pose] min_joints instead of the file's keypoint count.
        read_filter = PersonFilter(0, filt.min_area, filt.single_person_only) if estimating else filt
        records = coco_person_records(root, annotations, images, self.dataset, self.split, read_filter, tally)
        label = f"persons {self.dataset}/{self.split}" + (" (estimating keypoints)" if estimating else "")
        with config.pose().estimator() if estimating else nullcontext() as est:
            if estimating:
                records = with_estimated_keypoints(
                    records, root, lambda image, box: est.estimate(image, box), config.voc_pose().check(), tally
                )
            write_jsonl(Path(self.output()["records"].path), tqdm(records, desc=label, unit="person"))
        summary = {
            "dataset": self.dataset,
            "split": self.split,
            "root": str(root),
            "keypoints": source.keypoints,
            **tally.to_dict(),
        }
        write_json(self.output()["summary"].path, summary)
        self.report_progress(1.0, f"{tally.kept} persons kept, {sum(tally.skipped.values())} skipped")


class VOCPersons(PoseMaskTask):
    """Person instances of VOC 2012 with keypoints estimated by the built-in pose estimator."""

    split = luigi.Parameter(default="train", description="an ImageSets/Segmentation list: train | val | trainval")
    root = luigi.Parameter(default="", description="folder holding VOCdevkit/; empty = [voc] root")
    configs = (config.voc, config.persons, config.voc_pose, config.pose)

    def requires(self) -> DownloadVOC:
        return DownloadVOC(root=self.root or config.voc().root)

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"records": self.target("persons.jsonl"), "summary": self.target("summary.json")}

    def run(self) -> None:
        root = Path(self.root or config.voc().root)
        tally = Tally()
        with config.pose().estimator() as est:
            records = voc_person_records(
                root,
                self.split,
                lambda image, box: est.estimate(image, box),
                config.voc_pose().check(),
                config.persons().filter(),
                tally,
                progress=lambda i, n: self.report_progress(i / max(n, 1), f"pose {i}/{n} images"),
            )
            write_jsonl(Path(self.output()["records"].path), tqdm(records, desc=f"persons voc/{self.split}"))
        write_json(
            self.output()["summary"].path, {"dataset": "voc", "split": self.split, "root": str(root), **tally.to_dict()}
        )
        self.report_progress(1.0, f"{tally.kept} persons kept, {sum(tally.skipped.values())} skipped")


def persons_task(dataset: str, split: str) -> COCOPersons | VOCPersons:
    """The records task of a dataset name (one of dataset_names())."""
    if dataset == "voc":
        return VOCPersons(split=split)
    coco_source(dataset)  # a clear error for an unknown name
    return COCOPersons(dataset=dataset, split=split)


def dataset_root(dataset: str) -> Path:
    return Path(config.voc().root if dataset == "voc" else coco_source(dataset).root)


def parse_dataset_split(entry: str, default_split: str = "train") -> tuple[str, str]:
    """ "coco/val" -> ("coco", "val"); "pennfudan" -> ("pennfudan", default_split)."""
    dataset, _, split = entry.partition("/")
    if not dataset or "/" in split:
        raise ValueError(f"a dataset is written NAME or NAME/SPLIT, got {entry!r}")
    return dataset, split or default_split
