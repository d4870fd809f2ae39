"""Atomic files, for models/ and pipeline/ alike (pipeline/lib/files.py re-exports them).

    atomic_path(target)      temp path beside target (same extension), renamed onto it on success;
                             temps of the same target left by killed writers are removed first
    temp_path_for(target)    ``.<stem>.tmp-<pid><suffix>`` beside target
    remove_stale_temps(target)  the temps of target whose writer (pid) is gone

A killed writer leaves at most its temp file, never a half-written target, and the next write of
the same target removes that temp.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
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
