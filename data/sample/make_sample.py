"""Rebuild data/sample/ from the project's shared real-data folder (run once by a developer).

Not used at run time: the pipeline reads only data/sample/. Kept so that the sample's
arrangement is reproducible and its provenance auditable.

    python data/sample/make_sample.py ../shared/realdata

Layout produced (exactly as the official archives extract):
    coco/annotations/person_keypoints_{train,val}2017.json + coco/{train,val}2017/*.jpg
    ochuman/ochuman_coco_format_val_range_0.00_1.00.json + ochuman/images/*.jpg
    voc/VOCdevkit/VOC2012/{JPEGImages,SegmentationObject,SegmentationClass,Annotations,
                           ImageSets/Segmentation/{train,val,trainval}.txt}
    photos/: a few of the COCO val and OCHuman photos, for the GenerateMasks demo
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLITS = {"coco2017_train": ("coco", "train2017"), "coco2017_val": ("coco", "val2017"), "ochuman": ("ochuman", "val")}
VOC_TRAIN = ["2007_000063", "2011_000003"]
VOC_VAL = ["2011_000006", "2011_000025"]
PHOTOS = ["000000000785.jpg", "000000196141.jpg", "000000197388.jpg", "000000040083.jpg", "000001.jpg", "003896.jpg"]


def main(src: Path) -> None:
    full = json.loads((src / "coco/annotations/person_keypoints_sample.json").read_text())
    for dataset, (name, split) in SPLITS.items():
        images = [im for im in full["images"] if im["dataset"] == dataset]
        ids = {im["id"] for im in images}
        out = {**full, "images": images, "annotations": [a for a in full["annotations"] if a["image_id"] in ids]}
        if name == "coco":
            ann_path = HERE / name / "annotations" / f"person_keypoints_{split}.json"
            img_dir = HERE / name / split
        else:
            ann_path = HERE / name / "ochuman_coco_format_val_range_0.00_1.00.json"
            img_dir = HERE / name / "images"
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_path.write_text(json.dumps(out))
        for im in images:
            shutil.copy2(src / "coco/images" / im["file_name"], img_dir / im["file_name"])
        print(f"{dataset}: {len(images)} images, {len(out['annotations'])} annotations -> {ann_path}")
    voc = HERE / "voc/VOCdevkit/VOC2012"
    for sub in ("JPEGImages", "SegmentationObject", "SegmentationClass", "Annotations"):
        shutil.copytree(src / "voc/VOC2012" / sub, voc / sub, dirs_exist_ok=True)
    sets = voc / "ImageSets/Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (sets / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    (sets / "trainval.txt").write_text("\n".join(VOC_TRAIN + VOC_VAL) + "\n")
    photos = HERE / "photos"
    photos.mkdir(exist_ok=True)
    for name in PHOTOS:
        shutil.copy2(src / "coco/images" / name, photos / name)
    shutil.copy2(src / "README.md", HERE / "PROVENANCE.md")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
