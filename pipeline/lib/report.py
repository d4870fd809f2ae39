"""The evaluation report: report.md, report.html, iou.csv, IoU box plots and overlay grids.

Plain functions over finished files: EvaluateAll resolves its Evaluate tasks into a
`ReportInputs` (paths and values only) and calls `write_report`.
"""

from __future__ import annotations

import csv
import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.evaluation import grid, overlay
from pipeline.lib.cachefile import cache_samples, cache_size
from pipeline.lib.predictions import predictions_at
from pipeline.lib.scoring import SCORE_FIELDS

COLUMNS = (
    "method",
    "instances",
    "mean IoU (crop)",
    "median IoU (crop)",
    "mean IoU (full)",
    "median IoU (full)",
    "boundary F",
    "mask AP",
    "AP50",
    "ms / image",
)
OVERLAY_ROWS = 6


@dataclass
class MethodFiles:
    """One finished Evaluate: its summary.json, scores.csv and the pred.h5 it scored."""

    summary: str
    scores: str
    prediction: str


@dataclass
class SetFiles:
    """One evaluation set: its cache.h5, the persons and cache summaries, and every method's files."""

    cache: str
    persons_summary: str
    cache_summary: str
    methods: dict[str, MethodFiles] = field(default_factory=dict)


@dataclass
class Network:
    """One trained network of the report: name, task family, head, train_summary.json, curves, model.pt."""

    name: str
    family: str
    head: str
    summary: str
    curves: str
    model: str


@dataclass
class ReportInputs:
    """Everything write_report reads, keyed "coco/val" -> SetFiles; networks in report order."""

    sets: dict[str, SetFiles]
    networks: list[Network]
    threshold: float
    config_text: str


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def table_rows(summaries: dict[str, dict]) -> list[list[str]]:
    rows = []
    for method, s in summaries.items():
        rows.append(
            [
                method,
                str(s["instances"]),
                _fmt(s["iou_crop"]["mean"]),
                _fmt(s["iou_crop"]["median"]),
                _fmt(s["iou_full"]["mean"]),
                _fmt(s["iou_full"]["median"]),
                _fmt(s["boundary_f"]["mean"]),
                _fmt(s["mask_ap"]["AP"]),
                _fmt(s["mask_ap"]["AP50"]),
                _fmt(s["ms_per_image"], 1),
            ]
        )
    return rows


@dataclass
class Block:
    """One piece of the report, rendered to both Markdown and HTML: kind is h1, h2, p, pre, img or table.

    text: the heading, paragraph, preformatted text or image alt text; src: an image file;
    header / rows: a table.
    """

    kind: str
    text: str = ""
    src: str = ""
    header: tuple[str, ...] = ()
    rows: list[list[str]] = field(default_factory=list)


def to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2"):
            lines.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            lines.append(b.text)
        elif b.kind == "pre":
            lines += ["```", b.text, "```"]
        elif b.kind == "img":
            lines.append(f"![{b.text}]({b.src})")
        elif b.kind == "table":
            lines += ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(r) + " |" for r in b.rows]
        lines.append("")
    return "\n".join(lines)


def to_html(blocks: list[Block]) -> str:
    parts: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2"):
            parts.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "pre":
            parts.append(f"<pre>{html.escape(b.text)}</pre>")
        elif b.kind == "img":
            parts.append(f'<p><img src="{html.escape(b.src)}" alt="{html.escape(b.text)}"></p>')
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(c)}</th>" for c in b.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in b.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    style = (
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}</style>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>posemask report</title>{style}</head>"
        f"<body>{''.join(parts)}</body></html>"
    )


def pyplot():  # noqa: ANN201 - the matplotlib.pyplot module
    """matplotlib.pyplot on the Agg backend, imported when a plot is drawn (not with the tasks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def box_plot(scores: dict[str, list[float]], title: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(scores)), 4))
    ax.boxplot(list(scores.values()), showmeans=True)
    ax.set_xticks(range(1, len(scores) + 1), list(scores), rotation=30, ha="right")
    ax.set_ylabel("IoU (full image)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay_grid(
    cache_path: str,
    predictions: dict[str, str],
    path: Path,
    threshold: float,
    rows: int,
    ms_per_person: dict[str, float] | None = None,
) -> None:
    """Rows of instances; columns: image, ground truth, then each method's mask, labelled with its
    name and (when given) its milliseconds per person."""
    ms_per_person = ms_per_person or {}
    tiles, labels = [], []
    n = cache_size(cache_path)
    picks = [int(i) for i in np.linspace(0, n - 1, min(rows, n)).round()] if n else []
    probs = {method: predictions_at(pred_path, picks) for method, pred_path in predictions.items()}
    for i, sample in zip(
        picks, cache_samples(cache_path, ("image", "mask", "joints", "instance_id"), picks), strict=True
    ):
        image = sample["image"]
        tiles += [image, overlay(image, sample["mask"], sample["joints"], color=(0, 255, 0))]
        labels += [f"#{int(sample['instance_id'])}", "ground truth"]
        for method in predictions:
            tiles.append(overlay(image, probs[method][i] >= threshold))
            ms = ms_per_person.get(method)
            labels.append(method if ms is None or not np.isfinite(ms) else f"{method} {ms:.0f}ms")
    picture = grid([cv2.resize(t, (160, 160)) for t in tiles], 2 + len(predictions), labels)
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))


TRAINING_COLUMNS = (
    "network",
    "task",
    "trained on",
    "validated on",
    "epochs",
    "device",
    "head",
    "last val IoU",
    "best val IoU (epoch)",
    "model",
)
COUNT_COLUMNS = ("set", "persons kept", "skipped (records)", "cached", "skipped (images)")
NOTES = (
    "Each network's training and validation sets are in the Training table (model.pt keeps the "
    "weights chosen by `select`: the last epoch by default, so the validation set does not pick the "
    "weights unless `select = best`); the VOC model is fine-tuned on the VOC train list. The CRF is "
    "tuned on [TuneCRF] dataset/split (default coco/train, the network's own training people), never "
    "on an evaluation set unless a configuration says so.",
    "IoU (crop) is measured on the 256x256 crop, IoU (full) after pasting the crop's prediction back "
    "onto the original image. Mask AP is COCOeval (segm) over the evaluated person instances, each "
    "prediction scored by its quality (the IoU it is expected to have, from its probability map and its "
    "agreement with the pose prior, lowered by its overlap with a better mask of the same image; iou.csv "
    "lists it per instance beside the mean probability). "
    "ms / image is wall time of the method's stage divided "
    "by its instances (network: forward pass; +crf: forward pass plus refinement); the overlay grids "
    "label each method with it.",
    "deeplab is DeepLab-v3 (MobileNetV2, PASCAL VOC person class) on each 256x256 crop, without "
    "keypoints, as the paper's DeepLab comparison (the paper used DeepLab-v1, and JPP-Net, whose "
    "weights do not exist offline: JPP-Net is not in this report). posefree is MediaPipe's selfie "
    "segmenter on the crop; unet-coco-posefree is the same U-Net and recipe with the pose map zeroed "
    "and a flat prior. coopcut is the cooperative cut (Jegelka & Bilmes 2011) over the GMM graph cut. "
    "unet-coco is the paper's network, trained from scratch; unet-coco-pretrained the same pose-guided "
    "network (pose map, limb prior, correction) on the MobileNetV2 encoder of the DeepLab-v3 file, "
    "starting from its weights (ImageNet, COCO, VOC).",
)


def training_section(networks: list[Network], out: Path) -> list[Block]:
    """Each trained network (copying its loss/IoU curves into `out`)."""
    rows = []
    for net in networks:
        summary = _load(net.summary)
        if Path(net.curves).exists():
            shutil.copy(net.curves, out / f"history_{net.name}.png")
        rows.append(
            [
                net.name,
                net.family,
                ", ".join(summary.get("train_on", [])),
                ", ".join(summary.get("validate_on", [])),
                str(summary["epochs_completed"]) + (" (early stop)" if summary.get("stopped_early") else ""),
                summary["device"],
                net.head,
                _fmt(summary["last_val_iou"]),
                f"{_fmt(summary['best_val_iou'])} ({summary['best_epoch']})",
                f"`{net.model}`",
            ]
        )
    blocks = [Block("h2", "Training"), Block("table", header=TRAINING_COLUMNS, rows=rows)]
    for net in networks:
        if (out / f"history_{net.name}.png").exists():
            blocks.append(Block("img", f"{net.name} training curves", f"history_{net.name}.png"))
    return blocks


# (question, first method, second method, first's name, second's name): a sentence each in the report
VERDICTS = (
    ("Which head wins", "unet-coco", "unet-coco-paper", "logit", "paper"),
    ("Pretrained encoder or from scratch", "unet-coco-pretrained", "unet-coco", "pretrained", "from scratch"),
)


def pair_verdict(per_set: dict[str, dict[str, dict]], question: str, first: str, second: str, names: tuple) -> str:
    """One sentence comparing two methods by mean IoU (full) on every set that has both ("" if none)."""
    parts = []
    for eval_set, summaries in per_set.items():
        if first in summaries and second in summaries:
            a, b = (summaries[m]["iou_full"]["mean"] for m in (first, second))
            winner = names[0] if a >= b else names[1]
            parts.append(f"{eval_set}: {winner} ({names[0]} {a:.3f}, {names[1]} {b:.3f})")
    return (f"{question}, by mean IoU (full): " + "; ".join(parts) + ".") if parts else ""


def verdicts(per_set: dict[str, dict[str, dict]]) -> list[str]:
    """The report's sentences of VERDICTS whose two methods it holds."""
    found = (pair_verdict(per_set, q, a, b, (na, nb)) for q, a, b, na, nb in VERDICTS)
    return [v for v in found if v]


def set_section(eval_set: str, files: SetFiles, out: Path, threshold: float, csv_rows: list[dict]) -> tuple:
    """One evaluation set: its table, IoU box plot and overlay grid -> (blocks, summaries, counts row).

    Appends the set's per-instance rows (with set and method) to `csv_rows`.
    """
    methods = list(files.methods)
    summaries = {m: _load(files.methods[m].summary) for m in methods}
    scores: dict[str, list[float]] = {}
    for m in methods:
        with open(files.methods[m].scores, newline="") as f:
            for row in csv.DictReader(f):
                csv_rows.append({"set": eval_set, "method": m, **row})
                scores.setdefault(m, []).append(float(row["iou_full"]))
    slug = eval_set.replace("/", "_")
    box_plot(scores, f"IoU per instance, {eval_set}", out / f"iou_{slug}.png")
    predictions = {m: files.methods[m].prediction for m in methods}
    ms = {m: summaries[m]["ms_per_image"] for m in methods if summaries[m].get("ms_per_image") is not None}
    overlay_grid(files.cache, predictions, out / f"overlays_{slug}.png", threshold, OVERLAY_ROWS, ms)
    persons, cached = _load(files.persons_summary), _load(files.cache_summary)
    counts = [
        eval_set,
        str(persons["kept"]),
        str(persons["skipped_total"]),
        str(cached["cached"]),
        str(cached["skipped_total"]),
    ]
    blocks = [
        Block("h2", eval_set),
        Block("table", header=COLUMNS, rows=table_rows(summaries)),
        Block("img", "IoU distribution", f"iou_{slug}.png"),
        Block("img", "overlays", f"overlays_{slug}.png"),
    ]
    return blocks, summaries, counts


def write_report(out: Path, inputs: ReportInputs) -> None:
    """Write every report file into the folder `out` (report.md, report.html, iou.csv, plots)."""
    blocks, csv_rows, counts = [Block("h1", "posemask evaluation report")], [], []
    per_set: dict[str, dict[str, dict]] = {}
    for eval_set, files in inputs.sets.items():
        set_blocks, per_set[eval_set], set_counts = set_section(eval_set, files, out, inputs.threshold, csv_rows)
        blocks += set_blocks
        counts.append(set_counts)
    blocks += [Block("p", verdict) for verdict in verdicts(per_set)]
    blocks += training_section(inputs.networks, out)
    blocks += [Block("h2", "Dataset counts"), Block("table", header=COUNT_COLUMNS, rows=counts)]
    blocks += [Block("p", note) for note in NOTES]
    blocks += [Block("h2", "Configuration"), Block("pre", inputs.config_text)]
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "report.html").write_text(to_html(blocks))
    with open(out / "iou.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["set", "method", *SCORE_FIELDS])
        writer.writeheader()
        writer.writerows(csv_rows)
