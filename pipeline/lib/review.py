"""The review page of a night: OUTPUT/review/index.html, every photo as a card, worst first.

build_review(out, summary, rows, results, input_dir, page_size) -> pages written
    one card per manifest row: a thumbnail with each person's mask outline, skeleton and expected
    IoU (results.json's `quality`; "on k" and a sentence where a mask lies on person k's better
    mask, `overlaps`), the photo's state and reason; sorted worst first (skipped,
    then no person found, then by the lowest expected IoU of its people); `page_size` cards per
    page (index.html, page-2.html, ...), so that a folder of 100,000 photos gives pages that load
    at once; a header with the night's counts, time, model and settings; filters for low quality,
    no person, box-only people, skipped and new tonight; a click opens the full-size overlay.
card_key(row)   the file name of a photo's pictures: its path, content and model, hashed

Thumbnails and overlays are made once per photo version (`review/thumbs/<key>.jpg`,
`review/full/<key>.jpg`): a night draws only its new or changed photos, and removes the pictures
of photos no row lists any more. Every page is written atomically; the page opens from the file
system, no server.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.lib.files import atomic_path, short_hash, write_json, write_text

REVIEW_DIR = "review"
THUMB_SIDE = 320  # px, the longer side of a card's picture
FULL_SIDE = 2048  # px, the longer side of the full overlay (a larger photo is scaled down)
LOW_QUALITY = 0.5  # expected IoU below this: the "low quality" filter
REPEAT_IOU = 0.3  # a mask this much on a better mask of the photo is named on its card
PAGE_SIZE = 200
FILTERS = (
    ("low", "low quality"),
    ("nobody", "no person found"),
    ("box", "box-only people"),
    ("skipped", "skipped"),
    ("new", "new tonight"),
)


def card_key(row: dict) -> str:
    """A photo version's pictures' name: its path, content hash and model, hashed."""
    return short_hash([row.get("path"), row.get("content_hash"), row.get("model_id")], 16)


def repeats(record: dict) -> bool:
    """Whether a person's mask covers much of a better mask of the photo (results.json's
    `overlaps`, IoU >= REPEAT_IOU): most likely drawn on that other person."""
    overlap = record.get("overlaps")
    return isinstance(overlap, dict) and float(overlap.get("iou", 0.0)) >= REPEAT_IOU


def photo_quality(records: Sequence[dict]) -> float | None:
    """The lowest quality (expected IoU) of a photo's people (None: no person has one)."""
    values = [r["quality"] for r in records if r.get("quality") is not None]
    return min(values) if values else None


def card_flags(row: dict, records: Sequence[dict]) -> list[str]:
    """The filters a photo's card answers to."""
    flags = []
    quality = photo_quality(records)
    if quality is not None and quality < LOW_QUALITY:
        flags.append("low")
    if row.get("outcome") == "no_person":
        flags.append("nobody")
    if any(r.get("mask_source") == "box" for r in records):
        flags.append("box")
    if row.get("outcome") == "skipped":
        flags.append("skipped")
    if row.get("new") and row.get("run") == "processed":
        flags.append("new")
    return flags


def worst_first(row: dict, records: Sequence[dict]) -> tuple:
    """Sort key: skipped photos, then photos where nobody was found, then by lowest expected IoU."""
    quality = photo_quality(records)
    state = {"skipped": 0, "no_person": 1}.get(row.get("outcome", ""), 2)
    return (state, quality if quality is not None else 1.0, row.get("path", ""))


def draw_pictures(image_path: Path, records: Sequence[dict], thumb: Path, full: Path) -> None:
    """The photo with each person's mask, box, skeleton and expected IoU: full size (capped at
    FULL_SIDE) and as a thumbnail (THUMB_SIDE)."""
    from pycocotools import mask as mask_utils

    from models.evaluation import overlay_people

    bgr = cv2.imread(str(image_path))
    if bgr is None:
        raise OSError(f"cannot read {image_path}")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    masks = [mask_utils.decode(r["segmentation"]).astype(bool) for r in records]
    keypoints = [np.asarray(r["keypoints"], np.float32).reshape(-1, 3) if r.get("keypoints") else None for r in records]
    keypoints = [k if k is not None and k.shape == (17, 3) else None for k in keypoints]
    labels = [
        f"{r.get('person', k)} "
        + (f"q {r['quality']:.2f}" if r.get("quality") is not None else "box")
        + (f" on {r['overlaps']['person']}" if repeats(r) else "")
        for k, r in enumerate(records)
    ]
    boxes = [r["bbox"] for r in records]
    drawn = cv2.cvtColor(overlay_people(image, masks, keypoints, boxes, labels), cv2.COLOR_RGB2BGR)
    for target, side in ((full, FULL_SIDE), (thumb, THUMB_SIDE)):
        scale = min(1.0, side / max(drawn.shape[:2]))
        picture = cv2.resize(drawn, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else drawn
        target.parent.mkdir(parents=True, exist_ok=True)
        ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise OSError(f"cannot encode {target}")
        with atomic_path(target) as tmp:
            tmp.write_bytes(encoded.tobytes())


STYLE = """
body{font-family:sans-serif;margin:1em;background:#fafafa}
header{margin-bottom:1em} header table{border-collapse:collapse} header td{padding:0 1em 0 0}
.filters label{margin-right:1em} .nav a{margin-right:.5em}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{width:330px;background:#fff;border:1px solid #ccc;padding:4px;font-size:12px}
.card img{max-width:320px;max-height:320px;display:block}
.card .flag{display:inline-block;background:#eee;margin:1px;padding:0 3px}
.card.skipped{border-color:#c00} .card.nobody{border-color:#c80}
"""

SCRIPT = """
function applyFilters() {
  const on = Array.from(document.querySelectorAll('.filters input:checked')).map(x => x.value);
  for (const card of document.querySelectorAll('.card')) {
    const flags = card.dataset.flags.split(' ');
    card.hidden = on.length > 0 && !on.some(f => flags.includes(f));
  }
  document.getElementById('shown').textContent =
    document.querySelectorAll('.card:not([hidden])').length;
}
for (const box of document.querySelectorAll('.filters input')) box.addEventListener('change', applyFilters);
applyFilters();
"""


def page_name(number: int) -> str:
    return "index.html" if number == 1 else f"page-{number}.html"


def render_card(row: dict, records: Sequence[dict], key: str | None) -> str:
    flags = card_flags(row, records)
    quality = photo_quality(records)
    state = row.get("outcome", "")
    lines = [f"<b>{html.escape(row.get('path', ''))}</b>", f"{html.escape(state)}"]
    if row.get("reason") and state != "done":
        lines.append(html.escape(f"{row['reason']}: {row.get('detail', '')}"))
    lines.append(f"{len(records)} people" + (f", lowest quality {quality:.2f}" if quality is not None else ""))
    for k, r in enumerate(records):
        if repeats(r):
            other, overlap = r["overlaps"]["person"], r["overlaps"]["iou"]
            sentence = f"person {r.get('person', k)}'s mask lies on person {other}'s (IoU {overlap:.2f})"
            lines.append(html.escape(sentence))
    picture = ""
    if key is not None:
        picture = f'<a href="full/{key}.jpg"><img loading="lazy" src="thumbs/{key}.jpg" alt=""></a>'
    tags = "".join(f'<span class="flag">{html.escape(dict(FILTERS)[f])}</span>' for f in flags)
    classes = " ".join(["card", *flags])
    quality_attr = "" if quality is None else f"{quality:.4f}"
    return (
        f'<div class="{classes}" data-flags="{" ".join(flags)}" data-quality="{quality_attr}">'
        f"{picture}{'<br>'.join(lines)}<br>{tags}</div>"
    )


def render_page(cards: list[str], number: int, pages: int, header: str) -> str:
    nav = " ".join(f"<b>{n}</b>" if n == number else f'<a href="{page_name(n)}">{n}</a>' for n in range(1, pages + 1))
    boxes = "".join(f'<label><input type="checkbox" value="{v}"> {html.escape(t)}</label>' for v, t in FILTERS)
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>posemask review</title>'
        f"<style>{STYLE}</style></head><body>{header}"
        f'<div class="nav">page {nav}</div>'
        f'<div class="filters">show only: {boxes} (<span id="shown"></span> shown)</div>'
        f'<div class="cards">{"".join(cards)}</div>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def render_header(summary: dict) -> str:
    counts = [
        ("photos", summary.get("images")),
        ("processed tonight", summary.get("processed")),
        ("repaired", summary.get("repaired", 0)),
        ("masks", summary.get("people")),
        ("no person found", summary.get("no_person")),
        ("skipped", summary.get("problems_total")),
        ("seconds", summary.get("seconds")),
        ("model", summary.get("model")),
        ("model id", summary.get("model_id")),
        ("crf / grabcut", f"{summary.get('crf')} / {summary.get('grabcut')}"),
        ("keypoints", summary.get("keypoints") or "estimated (detector + pose) or sidecars"),
    ]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in counts)
    title = html.escape(str(summary.get("output_dir", "")))
    return f"<header><h1>posemask review: {title}</h1><table>{rows}</table></header>"


def build_review(
    out: Path,
    summary: dict,
    rows: Sequence[dict],
    results: Sequence[dict],
    input_dir: Path,
    page_size: int = PAGE_SIZE,
) -> int:
    """Write OUTPUT/review (see the module docstring) -> the number of pages. Pictures of a photo
    whose file cannot be read are left out of its card (the card still says what happened)."""
    started = time.perf_counter()
    review = out / REVIEW_DIR
    by_photo: dict[str, list[dict]] = {}
    for record in results:
        by_photo.setdefault(record.get("file_name", ""), []).append(record)
    entries = []
    keys_in_use = set()
    for row in rows:
        records = sorted(by_photo.get(row.get("path", ""), []), key=lambda r: r.get("person", 0))
        key = None
        if row.get("outcome") in ("done", "no_person"):
            key = card_key(row)
            thumb, full = review / "thumbs" / f"{key}.jpg", review / "full" / f"{key}.jpg"
            if not (thumb.is_file() and full.is_file()):
                try:
                    draw_pictures(input_dir / row["path"], records, thumb, full)
                except (OSError, ValueError, KeyError, cv2.error):
                    key = None
            if key is not None:
                keys_in_use.add(key)
        entries.append((worst_first(row, records), render_card(row, records, key)))
    entries.sort(key=lambda e: e[0])
    cards = [card for _, card in entries]
    pages = max(1, -(-len(cards) // page_size))
    header = render_header(summary)
    for n in range(1, pages + 1):
        write_text(review / page_name(n), render_page(cards[(n - 1) * page_size : n * page_size], n, pages, header))
    for stale in review.glob("page-*.html"):
        if int(stale.stem.split("-")[1]) > pages:
            stale.unlink(missing_ok=True)
    for folder in ("thumbs", "full"):
        for picture in (review / folder).glob("*.jpg"):
            if picture.stem not in keys_in_use:
                picture.unlink(missing_ok=True)
    seconds = round(time.perf_counter() - started, 3)
    facts = {"pages": pages, "photos": len(cards), "page_size": page_size, "seconds": seconds}
    write_json(review / "review.json", facts)
    return pages
