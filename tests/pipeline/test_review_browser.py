"""The review page of a real night in a real browser: headless Chromium (Debian's `chromium`, which
`make test` installs where it is missing) driven by Playwright, the page opened from the file
system as a user opens it. Checks what a reviewer relies on: no console error, one card per photo,
worst first, and a filter that changes the shown cards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipeline.lib.review import REVIEW_DIR
from tests.pipeline.test_generate import manifest_rows
from tests.pipeline.test_review import night

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# `make test` sets this: there the browser test must run, never skip
REQUIRED = os.environ.get("POSEMASK_BROWSER_TEST") == "required"


def browser_or_skip() -> str:
    if CHROMIUM is None:
        message = "no chromium on PATH (apt-get install chromium; `make test` does)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("playwright.sync_api", reason="playwright is a test extra: pip install '.[test]'")
    return CHROMIUM


def test_the_review_page_of_a_night_works_in_headless_chromium(tmp_path, luigi_config, tiny_model):
    from playwright.sync_api import sync_playwright

    executable = browser_or_skip()
    _, out, _ = night(tmp_path, tiny_model)
    rows = manifest_rows(out)
    page_path = out / REVIEW_DIR / "index.html"
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            cards = page.locator(".card")
            assert cards.count() == len(rows) == 6
            assert page.locator("#shown").inner_text() == "6"
            # worst first: the skipped photo, the photo with nobody, then rising quality
            flags = [cards.nth(k).get_attribute("data-flags") for k in range(cards.count())]
            assert "skipped" in flags[0] and "nobody" in flags[1]
            qualities = [float(cards.nth(k).get_attribute("data-quality")) for k in range(2, cards.count())]
            assert qualities == sorted(qualities)
            # every thumbnail the page shows has loaded (a broken picture has no natural width)
            widths = page.eval_on_selector_all(".card img", "imgs => imgs.map(i => i.naturalWidth)")
            assert len(widths) == 5 and all(w > 0 for w in widths)  # all but the unreadable photo
            # a filter changes the shown cards; clearing it shows them all again
            page.check('.filters input[value="skipped"]')
            assert page.locator(".card:not([hidden])").count() == 1
            assert page.locator("#shown").inner_text() == "1"
            assert "corrupt.jpg" in page.locator(".card:not([hidden])").inner_text()
            page.uncheck('.filters input[value="skipped"]')
            page.check('.filters input[value="nobody"]')
            assert page.locator(".card:not([hidden])").count() == 1
            page.uncheck('.filters input[value="nobody"]')
            assert page.locator(".card:not([hidden])").count() == 6
            # a click on a thumbnail opens the full-size overlay
            page.locator(".card:not(.skipped):not(.nobody) a").first.click()
            page.wait_for_load_state("load")
            assert page.url.endswith(".jpg") and "/full/" in page.url
            page.screenshot(path=str(tmp_path / "overlay.png"))
            assert Path(tmp_path / "overlay.png").stat().st_size > 0
        finally:
            browser.close()
    assert errors == []
