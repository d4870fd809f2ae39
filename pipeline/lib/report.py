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
import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from models.visualize import grid, overlay  # noqa: E402
from pipeline.lib.scoring import SCORE_FIELDS  # noqa: E402

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


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def box_plot(scores: dict[str, list[float]], title: str, path: Path) -> None:
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


def overlay_grid(cache_path: str, predictions: dict[str, str], path: Path, threshold: float, rows: int) -> None:
    """Rows of instances; columns: image, ground truth, then each method's mask."""
    tiles, labels = [], []
    with h5py.File(cache_path, "r") as h5:
        n = h5["image"].shape[0]
        picks = np.linspace(0, n - 1, min(rows, n)).round().astype(int) if n else []
        probs = {}
        for method, pred_path in predictions.items():
            with h5py.File(pred_path, "r") as p:
                probs[method] = {int(i): p["prob"][int(i)].astype(np.float32) for i in picks}
        for i in picks:
            image, mask, joints = h5["image"][i], h5["mask"][i], h5["joints"][i]
            tiles += [image, overlay(image, mask, joints, color=(0, 255, 0))]
            labels += [f"#{int(h5['instance_id'][i])}", "ground truth"]
            for method in predictions:
                tiles.append(overlay(image, probs[method][int(i)] >= threshold))
                labels.append(method)
    picture = grid([cv2.resize(t, (160, 160)) for t in tiles], 2 + len(predictions), labels)
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))


def training_section(networks: list[Network], out: Path) -> tuple[list[str], list[str]]:
    """Markdown and HTML lines describing each trained network (and its loss/IoU curves)."""
    md, body = ["## Training", ""], ["<h2>Training</h2>"]
    md += [
        "| network | task | epochs | device | head | last val IoU | best val IoU (epoch) | model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for net in networks:
        summary = _load(net.summary)
        if Path(net.curves).exists():
            shutil.copy(net.curves, out / f"history_{net.name}.png")
        md.append(
            f"| {net.name} | {net.family} | {summary['epochs_completed']} | {summary['device']} | "
            f"{net.head} | {_fmt(summary['last_val_iou'])} | {_fmt(summary['best_val_iou'])} "
            f"({summary['best_epoch']}) | `{net.model}` |"
        )
    md.append("")
    curves = [n.name for n in networks if (out / f"history_{n.name}.png").exists()]
    md += [f"![{name} training curves](history_{name}.png)" for name in curves]
    body += ["<pre>" + html.escape("\n".join(md[2:])) + "</pre>"]
    body += [f'<p><img src="history_{name}.png"></p>' for name in curves]
    return md + [""], body


def head_verdict(per_set: dict[str, dict[str, dict]]) -> str:
    """One sentence on the paper head (tanh, MSE) against the logit head (sigmoid, BCE + Dice)."""
    parts = []
    for eval_set, summaries in per_set.items():
        if "unet-coco" in summaries and "unet-coco-paper" in summaries:
            logit = summaries["unet-coco"]["iou_full"]["mean"]
            paper = summaries["unet-coco-paper"]["iou_full"]["mean"]
            winner = "logit" if logit >= paper else "paper"
            parts.append(f"{eval_set}: {winner} head (logit {logit:.3f}, paper {paper:.3f})")
    return ("Which head wins, by mean IoU (full): " + "; ".join(parts) + ".") if parts else ""


def write_report(out: Path, inputs: ReportInputs) -> None:
    """Write every report file into the folder `out` (report.md, report.html, iou.csv, plots)."""
    threshold = inputs.threshold
    md = ["# posemask evaluation report", ""]
    body = ["<h1>posemask evaluation report</h1>"]
    counts_md = ["| set | persons kept | skipped (records) | cached | skipped (images) |", "|---|---|---|---|---|"]
    all_rows = []
    per_set: dict[str, dict[str, dict]] = {}
    for eval_set, set_files in inputs.sets.items():
        methods = list(set_files.methods)
        summaries = {m: _load(set_files.methods[m].summary) for m in methods}
        per_set[eval_set] = summaries
        scores: dict[str, list[float]] = {}
        for m in methods:
            with open(set_files.methods[m].scores, newline="") as f:
                for row in csv.DictReader(f):
                    all_rows.append({"set": eval_set, "method": m, **row})
                    scores.setdefault(m, []).append(float(row["iou_full"]))
        rows = table_rows(summaries)
        slug = eval_set.replace("/", "_")
        box_plot(scores, f"IoU per instance, {eval_set}", out / f"iou_{slug}.png")
        overlay_grid(
            set_files.cache,
            {m: set_files.methods[m].prediction for m in methods},
            out / f"overlays_{slug}.png",
            threshold,
            OVERLAY_ROWS,
        )
        persons = _load(set_files.persons_summary)
        cached = _load(set_files.cache_summary)
        counts_md.append(
            f"| {eval_set} | {persons['kept']} | {persons['skipped_total']} | {cached['cached']} | "
            f"{cached['skipped_total']} |"
        )
        md += [
            f"## {eval_set}",
            "",
            markdown_table(rows),
            "",
            f"![IoU distribution](iou_{slug}.png)",
            "",
            f"![overlays](overlays_{slug}.png)",
            "",
        ]
        body += [
            f"<h2>{html.escape(eval_set)}</h2>",
            html_table(rows),
            f'<p><img src="iou_{slug}.png"></p><p><img src="overlays_{slug}.png"></p>',
        ]
    verdict = head_verdict(per_set)
    if verdict:
        md += [verdict, ""]
        body += [f"<p>{html.escape(verdict)}</p>"]
    train_md, train_body = training_section(inputs.networks, out)
    md += train_md
    body += train_body
    md += ["## Dataset counts", "", *counts_md, ""]
    md += [
        "Networks train on COCO train2017 and validate on val2017 (model.pt keeps the weights chosen by",
        "`select`: the last epoch by default, so val2017 does not pick the weights); the VOC model is",
        "fine-tuned on the VOC train list. The CRF is tuned on val2017 predictions, so the +crf rows on",
        "coco/val are optimistic; ochuman/val and voc/val are never used for training or tuning.",
        "",
        "IoU (crop) is measured on the 256x256 crop, IoU (full) after pasting the crop's prediction back",
        "onto the original image. Mask AP is COCOeval (segm) over the evaluated person instances, each",
        "prediction scored by its mean probability. ms / image is wall time of the method's stage divided",
        "by its instances (network: forward pass; +crf: forward pass plus refinement).",
        "",
    ]
    md += ["## Configuration", "", "```ini", inputs.config_text, "```", ""]
    body += [
        "<h2>Dataset counts</h2>",
        "<pre>" + html.escape("\n".join(counts_md)) + "</pre>",
        "<h2>Configuration</h2>",
        "<pre>" + html.escape(inputs.config_text) + "</pre>",
    ]
    (out / "report.md").write_text("\n".join(md))
    style = (
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}</style>"
    )
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>posemask report</title>"
        f"{style}</head><body>{''.join(body)}</body></html>"
    )
    with open(out / "iou.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["set", "method", *SCORE_FIELDS])
        writer.writeheader()
        writer.writerows(all_rows)
