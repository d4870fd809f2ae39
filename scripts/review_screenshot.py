"""The review page's screenshot in docs/: a night over the sample photos, shot in headless Chromium.

    python scripts/review_screenshot.py [--out docs/review.jpg]

Runs `posemask masks data/sample/photos <tmp>` (the shipped model, no keypoints given), opens
<tmp>/review/index.html in Debian's chromium through Playwright (a test extra) and saves a
screenshot of its first screen.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "review.jpg")
    parser.add_argument("--photos", type=Path, default=REPO / "data" / "sample" / "photos")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH: apt-get install chromium (make browser)")
    posemask = Path(sys.executable).with_name("posemask")
    with tempfile.TemporaryDirectory(prefix="posemask-shot-") as tmp:
        out = Path(tmp) / "masks"
        subprocess.run([str(posemask), "masks", str(args.photos), str(out), "--quiet"], check=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto((out / "review" / "index.html").as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(args.out), quality=85 if args.out.suffix == ".jpg" else None)
            browser.close()
    print(f"screenshot -> {args.out}")


if __name__ == "__main__":
    main()
