"""Person records: COCOPersons (COCO 2017, OCHuman) and VOCPersons -> persons.jsonl + summary.json.

COCOPersons (dataset coco) requires DownloadCOCO and VOCPersons requires DownloadVOC on the same
root: an existing copy whose layout checks out is used as it is, otherwise it is downloaded. The
record format is pipeline/lib/records.py's; the readers of each source are in pipeline/lib/annotations.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import luigi
from tqdm import tqdm

from pipeline import config
from pipeline.core import PoseMaskTask
from pipeline.download import DownloadCOCO, DownloadVOC
from pipeline.lib.annotations import Tally, coco_person_records, voc_person_records
from pipeline.lib.files import write_json, write_jsonl

COCO_DATASETS = {"coco": config.coco, "ochuman": config.ochuman}


class COCOPersons(PoseMaskTask):
    """Person instances of a COCO-format dataset (COCO 2017 or OCHuman) -> persons.jsonl + summary.json."""

    dataset = luigi.ChoiceParameter(choices=list(COCO_DATASETS), default="coco")
    split = luigi.Parameter(default="val", description="train | val (COCO 2017), val | test (OCHuman)")
    root = luigi.Parameter(default="", description="dataset root; empty = [coco]/[ochuman] root in luigi.cfg")
    configs = (config.coco, config.ochuman, config.persons)

    def layout(self) -> tuple[Path, str, str]:
        section = COCO_DATASETS[self.dataset]()
        root = Path(self.root or section.root)
        return root, section.annotations.format(split=self.split), section.images.format(split=self.split)

    def requires(self) -> DownloadCOCO | list:
        """COCO 2017 comes from DownloadCOCO (an existing valid copy is used as is); OCHuman has no download."""
        return DownloadCOCO(root=str(self.layout()[0])) if self.dataset == "coco" else []

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"records": self.target("persons.jsonl"), "summary": self.target("summary.json")}

    def run(self) -> None:
        root, annotations, images = self.layout()
        tally = Tally()
        self.report_progress(0.0, f"reading {root / annotations}")
        records = coco_person_records(
            root, annotations, images, self.dataset, self.split, config.persons().filter(), tally
        )
        write_jsonl(Path(self.output()["records"].path), tqdm(records, desc=f"persons {self.dataset}/{self.split}"))
        summary = {"dataset": self.dataset, "split": self.split, "root": str(root), **tally.to_dict()}
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


@dataclass(frozen=True)
class Dataset:
    """A dataset by name: its config section (holding `root`) and the task that reads its persons."""

    section: type[luigi.Config]
    records: Callable[[str], COCOPersons | VOCPersons]


# The dataset catalog: name -> Dataset. Add a COCO-format dataset as a section in config.py with
# root / annotations / images, an entry in COCO_DATASETS and one here.
DATASETS: dict[str, Dataset] = {
    "coco": Dataset(config.coco, lambda split: COCOPersons(dataset="coco", split=split)),
    "ochuman": Dataset(config.ochuman, lambda split: COCOPersons(dataset="ochuman", split=split)),
    "voc": Dataset(config.voc, lambda split: VOCPersons(split=split)),
}


def persons_task(dataset: str, split: str) -> COCOPersons | VOCPersons:
    """The records task of a dataset name (one of DATASETS)."""
    return DATASETS[dataset].records(split)


def dataset_root(dataset: str) -> Path:
    return Path(DATASETS[dataset].section().root)
