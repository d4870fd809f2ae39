"""Start-up costs of the installed command: `posemask --help`, and a no-op night over finished photos.

    python bench/startup.py [--photos 1000] [--repeat 3]

Makes a folder of `--photos` small photos (64x64, nobody in them: the first night is quick), runs
`posemask masks IN OUT --quiet` once to finish it, then times, as a user would (a fresh process
each time, medians of --repeat): `posemask --help`, and the same night again, which has nothing to
do. Also the import of the pipeline alone, for the ratio. Appends one JSON line to
bench/results/startup.jsonl. Targets (issue 14): --help under 0.5 s, the no-op night over 1,000
photos under 2 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit  # noqa: E402

RESULTS = REPO / "bench" / "results" / "startup.jsonl"
POSEMASK = Path(sys.executable).with_name("posemask")


def require_posemask() -> Path:
    """The `posemask` command of this environment, or exit saying how to install it."""
    if not POSEMASK.exists():
        sys.exit(f"{POSEMASK} not found: install posemask into this environment (pip install .)")
    return POSEMASK


def timed(command: list[str], repeat: int, cwd: Path) -> float:
    """Median wall seconds of `command` in a fresh process, `repeat` times (each must exit 0)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    require_posemask()
    root = Path(tempfile.mkdtemp(prefix="posemask-startup-"))
    try:
        photos, masks = root / "photos", root / "masks"
        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.photos):  # distinct content, so each photo is its own hash
            image = np.full((64, 64, 3), 120, np.uint8)
            image[0, :3] = rng.integers(0, 255, 3)
            cv2.imwrite(str(photos / f"photo_{i:05d}.jpg"), image)
        started = time.perf_counter()
        subprocess.run([str(POSEMASK), "masks", str(photos), str(masks), "--quiet"], cwd=root, check=True)
        first_night = time.perf_counter() - started
        env_python = [sys.executable, "-c"]
        figures = {
            "help_s": timed([str(POSEMASK), "--help"], args.repeat, root),
            "import_pipeline_s": timed([*env_python, "import pipeline"], args.repeat, root),
            "noop_night_s": timed([str(POSEMASK), "masks", str(photos), str(masks), "--quiet"], args.repeat, root),
            "first_night_s": first_night,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    line = {
        "bench": "startup",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "photos": args.photos,
        "repeat": args.repeat,
        "figures": figures,
    }
    for name, seconds in figures.items():
        print(f"{name:20s} {seconds:7.3f} s")
    print(f"no-op night / import of the pipeline: {figures['noop_night_s'] / figures['import_pipeline_s']:.2f}x")
    append_result(args.results, line)


if __name__ == "__main__":
    main()
