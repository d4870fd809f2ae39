"""What the review page costs a night: its build time against the night's, and the no-op night after.

    python bench/review.py --photos DIR [DIR ...] [--repeat 3]

Copies every photo of the given folders into one input folder (posemask refuses symlinks), runs
`posemask masks IN OUT --quiet` once as a user would (the shipped model, detector and pose
estimator: no keypoints given), and reads the night's seconds (summary.json) and the review
page's (review/review.json, the time build_review took: every photo's thumbnail and overlay drawn,
every page written). Then times the same night again, which has nothing to do (median of --repeat
fresh processes). Targets (issue 23): the page in <= 10 % of the night's time; the no-op night
stays under 2 s (bench/startup.py times it over 1,000 finished photos). Appends one JSON line to
bench/results/review.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit  # noqa: E402
from bench.startup import POSEMASK, require_posemask, timed  # noqa: E402

RESULTS = REPO / "bench" / "results" / "review.jsonl"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def copy_photos(folders: list[Path], target: Path) -> int:
    """Copy the photos of `folders` into `target` (one subfolder per given folder) -> their count."""
    count = 0
    for n, folder in enumerate(folders):
        sub = target / f"{n}-{folder.name}"
        sub.mkdir(parents=True)
        for photo in sorted(folder.iterdir()):
            if photo.suffix.lower() in PHOTO_SUFFIXES:
                shutil.copyfile(photo, sub / photo.name)
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, nargs="+", required=True, help="folders of photos")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    require_posemask()
    root = Path(tempfile.mkdtemp(prefix="posemask-review-"))
    try:
        photos, masks = root / "photos", root / "masks"
        count = copy_photos(args.photos, photos)
        started = time.perf_counter()
        subprocess.run([str(POSEMASK), "masks", str(photos), str(masks), "--quiet"], cwd=root, check=True)
        wall = time.perf_counter() - started
        summary = json.loads((masks / "summary.json").read_text())
        review = json.loads((masks / "review" / "review.json").read_text())
        noop = timed([str(POSEMASK), "masks", str(photos), str(masks), "--quiet"], args.repeat, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    share = review["seconds"] / summary["seconds"]
    night = f"night {summary['seconds']:.1f} s (wall {wall:.1f} s)"
    print(f"{count} photos: {night}, review page {review['seconds']:.2f} s")
    print(f"  page share of the night: {share:.1%} (target <= 10 %), {review['pages']} page(s)")
    print(f"  no-op night after it: {noop:.2f} s (target < 2 s)")
    append_result(
        args.results,
        {
            "bench": "review",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "photos": count,
            "people": summary.get("people"),
            "night_s": summary["seconds"],
            "review_s": review["seconds"],
            "review_share": round(share, 4),
            "pages": review["pages"],
            "noop_night_s": round(noop, 3),
        },
    )


if __name__ == "__main__":
    main()
