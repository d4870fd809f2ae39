"""Copy the model trained with the shipped recipe into the package, with its CRF and a model card.

    make shipped-model      # = python bench/accuracy.py --config configs/shipped.cfg (trains, measures)
                            #   then python scripts/ship_model.py --config configs/shipped.cfg

Builds TuneCRF(model=<[shipped] network>) with the settings of --config over the packaged defaults (a model
bench/accuracy.py trained with the same settings is reused, not retrained), copies its model.pt and
crf.json into models/weights/posemask_unet/ and writes MODEL_CARD.md there: the training data by
source with counts and terms, the recipe, the commit, the command, and the figures of the latest
bench/results/accuracy.jsonl line of this very model (none: the card says so). Two CPU runs of the
same commit and settings follow the same recipe but need not give the same bytes (float reductions
depend on threading).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import luigi  # noqa: E402

from bench.record import git_commit  # noqa: E402
from models.evaluation import QUALITY_FILE  # noqa: E402
from models.utils import SHIPPED_CRF, SHIPPED_DIR, SHIPPED_MODEL  # noqa: E402

ACCURACY_RESULTS = REPO / "bench" / "results" / "accuracy.jsonl"
MAX_BYTES = 20 * 1024 * 1024
# Terms of each data source the recipe may train on (a source not listed: "see its own terms").
TERMS = {
    "coco": "COCO 2017 (the repository's sample): annotations CC BY 4.0 (COCO Consortium); images under "
    "their Flickr licences, per image in `data/sample/PROVENANCE.md`",
    "pennfudan": "Penn-Fudan Pedestrian (Wang et al., ACCV 2007): no licence stated, research use with "
    "citation; images may not be reposted, so they never enter this repository",
    "ccp": "Clothing Co-Parsing (Yang et al., CVPR 2014): repository Apache-2.0, photos of unclear "
    "copyright, research use; images never enter this repository",
    "coco128train": "COCO 2017 train panoptic person segments (coco128): COCO terms as above",
}


def quality_row() -> str:
    """The card's row on quality.json, the calibration of each mask's quality (models/evaluation/quality.py)."""
    path = SHIPPED_DIR / QUALITY_FILE
    if not path.is_file():
        return "| quality calibration | none yet: `bench/quality.py --fit-calibration` writes `quality.json` |"
    fitted_on = json.loads(path.read_text()).get("fitted_on", "?")
    return (
        f"| quality calibration | `quality.json` (sha256 `{sha256(path)}`): fitted on {fitted_on} by "
        "`bench/quality.py --fit-calibration` over a `bench/nightly_quality.py --dump` of this model |"
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def accuracy_line(model_path: str) -> dict | None:
    """The latest bench/accuracy.py result of the model at `model_path`, or None."""
    if not ACCURACY_RESULTS.is_file():
        return None
    lines = [json.loads(line) for line in ACCURACY_RESULTS.read_text().splitlines() if line.strip()]
    mine = [line for line in lines if line.get("training", {}).get("model") == model_path and not line["overrides"]]
    return mine[-1] if mine else None


def data_rows(train_task: luigi.Task) -> list[str]:
    """One table row per training set: source, people cached, persons skipped by reason, terms."""
    rows = []
    for cache in train_task.requires()["train"]:
        persons = json.loads(Path(cache.input()["summary"].path).read_text())
        cached = json.loads(Path(cache.output()["summary"].path).read_text())
        skipped = dict(persons.get("skipped", {}))
        for reason, count in cached.get("skipped", {}).items():
            skipped[reason] = skipped.get(reason, 0) + count
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"
        rows.append(
            f"| {cache.dataset}/{cache.split} | {cached['cached']} | {persons.get('keypoints', 'given')} | {reasons} "
            f"| {TERMS.get(cache.dataset, 'see its own terms')} |"
        )
    return rows


def metrics_section(line: dict | None) -> list[str]:
    if line is None:
        return ["No bench/accuracy.py run of this model is recorded: run `make shipped-model`."]
    out = [
        f"`bench/accuracy.py` at commit `{line['commit']}` ({line['date']}), ground-truth keypoints, "
        "mean IoU on the full image:",
        "",
    ]
    methods = [m for m in next(iter(line["sets"].values())) if m not in ("best_baseline", "margins", "network")]
    out += ["| set | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for eval_set, figures in line["sets"].items():
        out.append(f"| {eval_set} | " + " | ".join(f"{figures[m]['mean_iou']:.3f}" for m in methods) + " |")
    nightly = line.get("nightly")
    if nightly:
        out += ["", "Through the nightly path (no keypoints given: YOLOX-nano -> MediaPipe Pose -> this model):", ""]
        out += ["| photos | method | mean IoU | recall | precision |", "|---|---|---|---|---|"]
        for dataset, by_method in nightly.items():
            for method in ("posemask", "posemask+crf", "posemask+grabcut"):
                f = by_method.get(method)
                if f:
                    out.append(
                        f"| {dataset} | {method} | {f.get('mean_iou', float('nan')):.3f} | "
                        f"{f.get('recall', float('nan')):.3f} | {f.get('precision', float('nan')):.3f} |"
                    )
    return out


def licence_row(model_cfg: dict) -> str:
    """The weights' licence: the project's, and for a pretrained encoder where its weights come from."""
    row = "| licence | the weights are this project's (MIT, as the package); the data's terms below"
    if model_cfg.get("encoder") == "mobilenet_v2":
        row += (
            "; the encoder's (and DeepLab head's) weights derive from the DeepLab-v3 MobileNetV2 file of "
            "`models/weights/deeplabv3_mnv2/` (TensorFlow / MediaPipe authors, Apache-2.0: its `LICENSE` and "
            "`NOTICE` there apply to them)"
        )
    return row + " |"


def model_card(
    model: Path,
    crf: Path,
    train_task: luigi.Task,
    summary: dict,
    model_cfg: dict,
    config: Path,
    line: dict | None,
    network: str,
) -> str:
    from pipeline.settings import config_text

    crf_info = json.loads(crf.read_text())
    shown_config = config.relative_to(REPO) if config.is_relative_to(REPO) else config
    recipe = [row for row in config_text().split("\n\n") if row.startswith("[TrainModel]")]
    lines = [
        "# posemask_unet: the model inside the package",
        "",
        "The default model of `posemask masks` (`--model shipped`, `[GenerateMasks] model`): a PoseUNet that",
        "corrects a skeleton prior, loaded with `torch.load(weights_only=True)`. Written by",
        "`scripts/ship_model.py`; do not edit by hand.",
        "",
        "| | |",
        "| --- | --- |",
        f"| files | `model.pt` ({model.stat().st_size:,} B, sha256 `{sha256(model)}`), "
        f"`crf.json` (sha256 `{sha256(crf)}`) |",
        f"| network | `{network}`: PoseUNet {json.dumps(model_cfg)} |",
        f"| trained on | {', '.join(summary['train_on'])}: {summary['epochs_completed']} epochs"
        f"{' (early stop)' if summary.get('stopped_early') else ''}, weights of epoch {summary['best_epoch']} "
        f"({summary['selected']}) |",
        f"| validated on | {', '.join(summary['validate_on'])} (best validation IoU {summary['best_val_iou']:.3f}) |",
        f"| CRF tuned on | {crf_info.get('tuned_on', '?')} ({crf_info.get('samples')} people) |",
        quality_row(),
        "| never trained or tuned on | COCO val2017, OCHuman, VOC val (the evaluation sets) |",
        f"| trained at | commit `{line['commit'] if line else git_commit()}`, config `{shown_config}` |",
        "| reproduce | `make shipped-model` (point the `[dataset.*]` roots of the config at your copies) |",
        licence_row(model_cfg),
        "",
        "## Training data",
        "",
        "| source | people | keypoints | skipped (reason count) | terms |",
        "|---|---|---|---|---|",
        *data_rows(train_task),
        "",
        "## Recipe",
        "",
        "```ini",
        *(recipe[0].splitlines() if recipe else ["(no [TrainModel] section)"]),
        "```",
        "",
        "## Metrics",
        "",
        *metrics_section(line),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "shipped.cfg")
    args = parser.parse_args()

    from pipeline import TuneCRF
    from pipeline.settings import load_settings
    from pipeline.train import MODELS, shipped

    load_settings(args.config)
    network = shipped().network
    tune = TuneCRF(model=network)
    if not luigi.build([tune], local_scheduler=True, log_level="WARNING"):
        print("ship_model: training or CRF tuning failed", file=sys.stderr)
        return 1
    train_task = MODELS[network]()
    model = Path(train_task.output()["model"].path)
    if model.stat().st_size > MAX_BYTES:
        print(f"ship_model: {model} is {model.stat().st_size:,} B, over the 20 MB the package allows", file=sys.stderr)
        return 1
    summary = json.loads(Path(train_task.output()["summary"].path).read_text())
    crf = Path(tune.output()["crf"].path)
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    for source, target in ((model, SHIPPED_MODEL), (crf, SHIPPED_CRF)):
        shutil.copyfile(source, target)
        print(f"{target.relative_to(REPO)}  sha256 {sha256(target)}  from {source}")
    import torch

    model_cfg = torch.load(SHIPPED_MODEL, map_location="cpu", weights_only=True)["model_config"]
    card = model_card(
        SHIPPED_MODEL,
        SHIPPED_CRF,
        train_task,
        summary,
        model_cfg,
        args.config.resolve(),
        accuracy_line(str(model)),
        network,
    )
    (SHIPPED_DIR / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    print(f"{(SHIPPED_DIR / 'MODEL_CARD.md').relative_to(REPO)} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
