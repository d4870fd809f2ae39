"""What every benchmark records with its figures, in one place (bench/results/<name>.jsonl).

git_commit()                   HEAD's short hash ("unknown" where there is no git)
tree_dirty(tracked_only=False) whether the working tree differs from HEAD (None: no git)
append_result(path, line)      one JSON line appended to `path` (its folder made); path printed
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)


def git_commit() -> str:
    """HEAD's short hash, or "unknown"."""
    try:
        out = _git("rev-parse", "--short", "HEAD")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def tree_dirty(tracked_only: bool = False) -> bool | None:
    """Whether files differ from HEAD (untracked files count unless `tracked_only`); None: no git."""
    try:
        if tracked_only:
            return _git("diff", "--quiet", "HEAD").returncode == 1
        out = _git("status", "--porcelain")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def append_result(path: Path | str, line: dict) -> None:
    """Append `line` as one JSON line to `path` and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    print(f"appended to {path}")
