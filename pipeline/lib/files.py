"""Files written so that a crash never leaves a half-written output, and the small helpers every
stage shares: JSON and JSON-lines, short stable hashes, paths that stay inside their root.

    atomic_path(target)       temp path beside target (same extension), renamed onto it on success;
                              temps of the same target left by killed writers are removed first
    write_json / write_text   atomic JSON (indented, sorted keys) / text
    write_jsonl / read_jsonl  atomic JSON lines / rows of a JSON-lines file (a torn last line skipped)
    exclusive_lock(path, wait)  an flock held for a block (dies with its process)
    short_hash(obj, n)        first n hex digits of sha1(json.dumps(obj, sort_keys=True))
    resolve_inside(root, rel) root / rel, refusing paths that escape root
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from models.utils import atomic_path, remove_stale_temps, temp_path_for

__all__ = ["atomic_path", "remove_stale_temps", "temp_path_for"]  # re-exported: the one rule, in models/utils/atomic.py


@contextlib.contextmanager
def exclusive_lock(path: Path | str, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing), waiting for any other holder
    (`wait` False: BlockingIOError at once when another process holds it).

    The lock dies with its process, so a killed holder never leaves it stuck. flock is reliable on
    local disks; on NFS it depends on the mount (see docs/generate.md).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_json(target: Path | str, obj: object) -> None:
    """Write JSON atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_text(target: Path | str, text: str) -> None:
    """Write text atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def jsonl_line(row: object) -> str:
    """One compact JSON line (with its newline)."""
    return json.dumps(row, separators=(",", ":")) + "\n"


def write_jsonl(target: Path | str, rows: Iterable[object]) -> None:
    """Write rows as JSON lines atomically (streamed: rows may be a generator)."""
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(jsonl_line(row))


def read_jsonl(path: Path | str) -> Iterator[dict]:
    """Rows of a JSON-lines file; a truncated or unparseable line (a killed writer's last) is skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    yield row
    except FileNotFoundError:
        return


def short_hash(obj: object, n: int = 12) -> str:
    """First `n` hex digits of the sha1 of `obj` as sorted-key JSON (non-JSON values as str)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def resolve_inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing paths that leave `root` (``..``, absolute paths, symlinks out)."""
    root_resolved = root.resolve()
    candidate = (root_resolved / relative).resolve()
    if not candidate.is_relative_to(root_resolved) or Path(relative).is_absolute():
        raise ValueError(f"path {relative!r} escapes its root {root}")
    return candidate
