"""The review page of a night (pipeline/lib/review.py): one card per photo, worst first, filters,
bounded pages, pictures drawn once per photo version (in a real browser: test_review_browser.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.lib.night import format_summary
from pipeline.lib.review import LOW_QUALITY, REVIEW_DIR, build_review, card_key
from tests.pipeline.test_generate import PHOTOS, VAL_IMAGES, copy_photos, generate, keypoints_subset, manifest_rows


def cards(page: Path) -> list[tuple[str, str, str]]:
    """(classes, flags, quality) of each card of a page, in order."""
    text = page.read_text()
    return re.findall(r'<div class="card ?([^"]*)" data-flags="([^"]*)" data-quality="([^"]*)">', text)


def night(tmp_path: Path, tiny_model: Path) -> tuple[Path, Path, dict]:
    photos = copy_photos(tmp_path / "photos", PHOTOS)
    jpeg = (VAL_IMAGES / PHOTOS[0]).read_bytes()
    (photos / "corrupt.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    import cv2

    cv2.imwrite(str(photos / "nobody.png"), np.full((64, 80, 3), 127, np.uint8))
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS)
    out = tmp_path / "masks"
    ok, summary = generate(input_dir=str(photos), output_dir=str(out), model=str(tiny_model), keypoints=str(keypoints))
    assert ok
    return photos, out, {"keypoints": str(keypoints), "model": str(tiny_model)}


def test_a_night_writes_one_card_per_photo_worst_first(tmp_path, luigi_config, tiny_model):
    _, out, _ = night(tmp_path, tiny_model)
    page = out / REVIEW_DIR / "index.html"
    summary = json.loads((out / "summary.json").read_text())  # the printed summary points at the page
    assert summary["review"] == str(page)
    low = sum(q < LOW_QUALITY for r in manifest_rows(out) for q in r.get("quality") or [] if q is not None)
    assert summary["low_quality"] == low
    assert f"to check: {low} masks of quality under {LOW_QUALITY}; worst first: {page}" in format_summary(summary)
    found = cards(page)
    rows = manifest_rows(out)
    assert len(found) == len(rows) == 6
    assert "skipped" in found[0][1] and "nobody" in found[1][1]  # the skipped photo, then nobody found
    qualities = [float(q) for _, _, q in found[2:]]
    assert qualities == sorted(qualities) and all(0 < q <= 1 for q in qualities)
    assert all("new" in flags for _, flags, _ in found[2:])
    text = page.read_text()
    for value in ("low", "nobody", "box", "skipped", "new"):
        assert f'type="checkbox" value="{value}"' in text
    assert "corrupt.jpg" in text and "corrupt_image" in text  # the reason is on its card
    done = [r for r in rows if r["outcome"] == "done"]
    results = [r for m in (out / "shards").glob("*/results.json") for r in json.loads(m.read_text())]
    assert results and all(0 < r["quality"] <= 1 for r in results)
    assert all(r["score"] == pytest.approx(r["quality"], abs=1e-4) for r in results)  # given keypoints: no detector
    for row in done:  # each photo's row lists its people's quality, in order
        mine = sorted((r for r in results if r["file_name"] == row["path"]), key=lambda r: r["person"])
        assert row["quality"] == [r["quality"] for r in mine]
    for row in done:  # each done photo's thumbnail and full overlay, linked from its card
        key = card_key(row)
        assert (out / REVIEW_DIR / "thumbs" / f"{key}.jpg").is_file()
        assert f'href="full/{key}.jpg"' in text


def test_only_new_photos_are_drawn_and_pictures_of_removed_photos_go(tmp_path, luigi_config, tiny_model):
    photos, out, params = night(tmp_path, tiny_model)
    thumbs = out / REVIEW_DIR / "thumbs"
    before = {p.name: p.stat().st_mtime_ns for p in thumbs.glob("*.jpg")}
    shutil.copy(VAL_IMAGES / "000000196141.jpg", photos / "added.jpg")  # a new photo (no keypoints: detected)
    (photos / PHOTOS[1]).unlink()
    ok, _ = generate(input_dir=str(photos), output_dir=str(out), **params)
    assert ok
    after = {p.name: p.stat().st_mtime_ns for p in thumbs.glob("*.jpg")}
    kept = set(before) & set(after)
    assert kept and all(before[name] == after[name] for name in kept)  # not drawn again
    assert len(set(before) - set(after)) == 1  # the deleted photo's picture is gone
    assert len(set(after) - set(before)) == 1  # the new photo's is there
    assert len(cards(out / REVIEW_DIR / "index.html")) == 6


def test_pages_hold_a_bounded_number_of_cards(tmp_path):
    rows = [{"path": f"p{k}.jpg", "outcome": "skipped", "reason": "not_an_image", "detail": ""} for k in range(5)]
    review = tmp_path / REVIEW_DIR
    assert build_review(tmp_path, {"images": 5}, rows, [], tmp_path, page_size=2) == 3
    assert [len(cards(review / name)) for name in ("index.html", "page-2.html", "page-3.html")] == [2, 2, 1]
    assert '<a href="page-3.html">3</a>' in (review / "index.html").read_text()
    assert build_review(tmp_path, {"images": 2}, rows[:2], [], tmp_path, page_size=2) == 1
    assert not (review / "page-2.html").exists() and not (review / "page-3.html").exists()


def test_a_card_says_whose_mask_a_repeated_mask_lies_on():
    """results.json's `overlaps` (IoU >= REPEAT_IOU) becomes a sentence on the photo's card; a small
    overlap (two people touching) says nothing."""
    from pipeline.lib.review import REPEAT_IOU, render_card

    row = {"path": "crowd.jpg", "outcome": "done"}
    records = [
        {"person": 0, "quality": 0.8},
        {"person": 1, "quality": 0.1, "overlaps": {"person": 0, "iou": 0.85}},
        {"person": 2, "quality": 0.7, "overlaps": {"person": 0, "iou": REPEAT_IOU / 2}},
    ]
    card = render_card(row, records, None)
    assert "person 1&#x27;s mask lies on person 0&#x27;s (IoU 0.85)" in card
    assert "person 2" not in card
