"""Files written so that a crash never leaves a half-written output, and the small helpers every
stage shares: JSON and JSON-lines, short stable hashes, paths that stay inside their root.

    atomic_path(target)       temp path beside target (same extension), renamed onto it on success;
                              temps of the same target left by killed writers are removed first
    write_json / write_text   atomic JSON (indented, sorted keys) / text
    write_jsonl / read_jsonl  atomic JSON lines / rows of a JSON-lines file (a torn last line skipped)
    exclusive_lock(path)      an flock held for a block (dies with its process)
    short_hash(obj, n)        first n hex digits of sha1(json.dumps(obj, sort_keys=True))
    resolve_inside(root, rel) root / rel, refusing paths that escape root
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path


def temp_path_for(target: Path) -> Path:
    """A temporary name beside `target` that keeps its extension (h5py, cv2 guess from it)."""
    return target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


# .<stem>.tmp-<pid><suffix>, as temp_path_for names them (the suffix is the target's last one)
_TEMP_NAME = re.compile(r"^\.(?P<stem>.*)\.tmp-(?P<pid>\d+)(?P<suffix>(\.[^.]*)?)$")
# folder -> (stem, suffix) of a target -> its stale temps: each folder is listed once per process,
# not at every write (a nightly output folder holds one PNG per person of every photo).
_STALE_TEMPS: dict[Path, dict[tuple[str, str], list[Path]]] = {}


def _stale_temps_in(folder: Path) -> dict[tuple[str, str], list[Path]]:
    if folder not in _STALE_TEMPS:
        found: dict[tuple[str, str], list[Path]] = {}
        with os.scandir(folder) as entries:
            for entry in entries:
                match = _TEMP_NAME.match(entry.name)
                if match and int(match["pid"]) != os.getpid() and not _pid_alive(int(match["pid"])):
                    found.setdefault((match["stem"], match["suffix"]), []).append(folder / entry.name)
        _STALE_TEMPS[folder] = found
    return _STALE_TEMPS[folder]


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temp files of `target` left by killed writers (their pid is gone); returns them.

    Temp names are ``.<stem>.tmp-<pid><suffix>`` (temp_path_for), so a writer that died before its
    rename leaves one behind; the next write of the same target removes it (a 34 GB cache.h5 on
    COCO train would otherwise stay on disk). The folder is listed once per process: temps of
    writers that die after that are removed by the next process.
    """
    removed = []
    for path in _stale_temps_in(target.parent).pop((target.stem, target.suffix), []):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temp path beside `target`; rename it onto `target` only when the block succeeds.

    A killed or failed run leaves no file at `target` (and removes its temp file on errors).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = temp_path_for(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive_lock(path: Path | str) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing), waiting for any other holder.

    The lock dies with its process, so a killed holder never leaves it stuck. flock is reliable on
    local disks; on NFS it depends on the mount (see docs/generate.md).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
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
