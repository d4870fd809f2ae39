"""Train and evaluate in one run: mean IoU of every method with ground-truth keypoints, and of the
trained model through the nightly path (keypoints estimated), appended to bench/results/accuracy.jsonl.

    python bench/accuracy.py                                   # the shipped recipe (configs/shipped.cfg)
    python bench/accuracy.py --set TrainModel.augment=flip     # one ablation of it
    python bench/accuracy.py --config my.cfg --no-nightly      # your datasets and recipe

The recipe and the datasets come from a luigi.cfg (default configs/shipped.cfg, read over the
packaged defaults and ./luigi.cfg, as LUIGI_CONFIG_PATH would be), single values from --set
SECTION.KEY=VALUE. The run is the DAG itself: EvaluateAll with the methods below on the
evaluation sets (TrainModel, PredictMasks, TuneCRF, RefineCRF, Evaluate as dependencies; a stage
already done is reused, a killed run continues). Then bench/nightly_quality.py runs the trained
model and its crf.json on photos without keypoints. Figures: mean (and median) full-size IoU per
method and set; the best baseline (prior, grabcut, slic_grabcut, posefree) per set and the
network's margins over it; training time, epochs, validation IoU; the nightly figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit, tree_dirty  # noqa: E402

RESULTS = REPO / "bench" / "results" / "accuracy.jsonl"
DEFAULT_CONFIG = REPO / "configs" / "shipped.cfg"
BASELINES = ("prior", "grabcut", "slic_grabcut", "posefree")
CRF_SUFFIX = "+crf"
EVAL_SETS = ("coco/val", "ochuman/val", "voc/val")


def apply_overrides(pairs: list[str]) -> dict[str, str]:
    """--set SECTION.KEY=VALUE (section names may hold dots: the last dot before '=' splits)."""
    import luigi.configuration

    parser = luigi.configuration.get_config()
    applied = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        section, dot, key = name.rpartition(".")
        if not (sep and dot and section and key):
            raise SystemExit(f"--set wants SECTION.KEY=VALUE, got {pair!r}")
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key, value)
        applied[name] = value
    return applied


def compared_methods(network: str) -> tuple[str, ...]:
    """The baselines, the network ([shipped] network) and the network with its CRF."""
    return (*BASELINES, network, network + CRF_SUFFIX)


def set_figures(evaluate_all: object, eval_set: str, network: str) -> dict[str, dict]:
    tasks = evaluate_all.requires()
    figures = {}
    for method in compared_methods(network):
        summary = json.loads(Path(tasks[f"{eval_set}:{method}"].output()["summary"].path).read_text())
        figures[method] = {
            "mean_iou": summary["iou_full"]["mean"],
            "median_iou": summary["iou_full"]["median"],
            "instances": summary["instances"],
            "ms_per_image": summary.get("ms_per_image"),
        }
    best = max(BASELINES, key=lambda m: figures[m]["mean_iou"])
    best_iou = figures[best]["mean_iou"]
    figures["best_baseline"] = {"method": best, "mean_iou": best_iou}
    figures["network"] = network
    figures["margins"] = {m: figures[m]["mean_iou"] - best_iou for m in (network, network + CRF_SUFFIX)}
    return figures


def training_figures(model_task: object) -> dict:
    summary = json.loads(Path(model_task.output()["summary"].path).read_text())
    history = summary["history"]
    counts = {}
    for path in summary["train_caches"]:
        import h5py

        with h5py.File(path, "r") as h5:
            counts[Path(path).parent.name] = int(h5["image"].shape[0])
    return {
        "train_on": summary.get("train_on"),
        "validate_on": summary.get("validate_on"),
        "training_people": counts,
        "epochs_completed": summary["epochs_completed"],
        "stopped_early": summary.get("stopped_early"),
        "best_epoch": summary["best_epoch"],
        "best_val_iou": summary["best_val_iou"],
        "selected": summary["selected"],
        "train_seconds": sum(row["seconds"] for row in history),
        "samples_per_s": history[-1]["samples_per_s"] if history else None,
        "model": model_task.output()["model"].path,
    }


def run_nightly(model: str, crf: str, config: Path, overrides_file: Path | None) -> dict:
    """bench/nightly_quality.py with the trained model; its figures (the line it appends to a temp file)."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "nightly.jsonl"
        command = [sys.executable, str(REPO / "bench" / "nightly_quality.py"), "--model", model, "--crf", crf]
        command += ["--config", str(overrides_file or config), "--results", str(results)]
        subprocess.run(command, cwd=REPO, check=True)
        return json.loads(results.read_text().splitlines()[-1])["figures"]


def print_table(results: Path) -> None:
    """Every run of the results file, one markdown row each: what changed, validation and test IoU."""
    lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    sets = list(dict.fromkeys(s for line in lines for s in line["sets"]))
    header = ["run", "commit", "changed", "epochs", "min", "val IoU"]
    header += [f"{s} {m}" for s in sets for m in ("unet", "+crf")]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for line in lines:
        training = line["training"]
        cells = [
            line.get("label") or "-",
            line["commit"],
            ", ".join(f"{k}={v}" for k, v in line["overrides"].items() if "num_threads" not in k) or "(config)",
            str(training["epochs_completed"]),
            f"{training['train_seconds'] / 60:.0f}",
            f"{training['best_val_iou']:.3f}",
        ]
        for eval_set in sets:
            figures = line["sets"].get(eval_set)
            network = (figures or {}).get("network", "unet-coco")  # runs before the [shipped] network were unet-coco
            cells += [f"{figures[m]['mean_iou']:.3f}" if figures else "-" for m in (network, network + CRF_SUFFIX)]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="luigi.cfg with datasets and recipe")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one value")
    parser.add_argument("--eval-sets", nargs="+", default=list(EVAL_SETS))
    parser.add_argument("--no-nightly", action="store_true", help="skip the nightly-path figures")
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the results file as a markdown table and stop")
    args = parser.parse_args()
    if args.table:
        print_table(args.results)
        return
    if not args.config.is_file():
        raise SystemExit(f"config file {args.config} does not exist")

    import luigi
    import torch

    from pipeline import EvaluateAll
    from pipeline.crf import TuneCRF
    from pipeline.settings import config_text, load_settings
    from pipeline.train import MODELS, shipped

    load_settings(args.config)
    overrides = apply_overrides(args.set)
    network = shipped().network
    methods = compared_methods(network)
    torch.set_num_threads(int(os.environ.get("POSEMASK_BENCH_THREADS", "0")) or torch.get_num_threads())

    evaluate_all = EvaluateAll(eval_sets=args.eval_sets, methods=list(methods))
    commit = git_commit() + ("-dirty" if tree_dirty() else "")  # at the start: the code that trains and measures
    started = time.perf_counter()
    if not luigi.build([evaluate_all], local_scheduler=True, workers=1, log_level="WARNING"):
        raise SystemExit("accuracy: a stage failed (see the log above)")
    wall = time.perf_counter() - started
    model_task = MODELS[network]()
    crf_path = TuneCRF(model=network).output()["crf"].path
    line: dict = {
        "bench": "accuracy",
        "label": args.label,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "config_file": str(args.config),
        "overrides": overrides,
        "network": network,
        "settings": config_text(),
        "wall_seconds": wall,
        "training": training_figures(model_task),
        "crf": json.loads(Path(crf_path).read_text()) | {"table": None},
        "sets": {eval_set: set_figures(evaluate_all, eval_set, network) for eval_set in args.eval_sets},
        "report": evaluate_all.output().path,
    }
    if not args.no_nightly:
        with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as handle:
            handle.write(config_text())  # the overrides too, for the nightly subprocess
        try:
            line["nightly"] = run_nightly(model_task.output()["model"].path, crf_path, args.config, Path(handle.name))
        finally:
            os.unlink(handle.name)

    print(f"\n{'set':12s} " + " ".join(f"{m:>14s}" for m in methods) + f" {'best base':>12s} {'+net':>7s} {'+crf':>7s}")
    for eval_set, figures in line["sets"].items():
        cells = " ".join(f"{figures[m]['mean_iou']:14.3f}" for m in methods)
        margins = figures["margins"]
        print(
            f"{eval_set:12s} {cells} {figures['best_baseline']['method']:>12s} "
            f"{margins[network]:+7.3f} {margins[network + CRF_SUFFIX]:+7.3f}"
        )
    training = line["training"]
    print(
        f"trained on {sum(training['training_people'].values())} people, {training['epochs_completed']} epochs "
        f"in {training['train_seconds'] / 60:.1f} min, best validation IoU {training['best_val_iou']:.3f} "
        f"(epoch {training['best_epoch']})"
    )
    append_result(args.results, line)
    print(f"report: {line['report']}")


if __name__ == "__main__":
    main()
