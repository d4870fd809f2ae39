"""What every posemask task shares: where outputs live, atomic writes, progress reporting.

One rule derives every output path (as gokart does): ``<work root>/<TaskFamily>/<name>-<hash>``
where the hash covers the task's significant parameters, the luigi.Config sections it declares
in ``configs`` and, recursively, the hashes of everything it requires. Two configurations never
share a folder, and a changed parameter changes the folders of exactly the tasks downstream of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import luigi
from luigi.task import flatten


class work(luigi.Config):  # noqa: N801 - luigi.cfg section name
    """[work] root: where every derived output goes."""

    root = luigi.Parameter(default="data/work", description="folder of every derived output")


def config_values(config_cls: type[luigi.Config]) -> dict[str, str]:
    """A luigi.Config's significant parameter values as strings."""
    return config_cls().to_str_params(only_significant=True)


class PoseMaskTask(luigi.Task):
    """Base task: output folder derived from parameters, configs and upstream tasks."""

    configs: ClassVar[tuple[type[luigi.Config], ...]] = ()

    def signature(self) -> str:
        """Short stable hash of everything that determines this task's output."""
        parts = {
            "family": self.task_family,
            "params": self.to_str_params(only_significant=True),
            "configs": {c.__name__: config_values(c) for c in self.configs},
            "requires": sorted(t.signature() for t in flatten(self.requires()) if isinstance(t, PoseMaskTask)),
        }
        return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]

    def work_dir(self) -> Path:
        """``<work root>/<TaskFamily>/<readable params>-<signature>``."""
        params = self.to_str_params(only_significant=True)
        readable = "-".join(re.sub(r"[^A-Za-z0-9.]+", "_", v)[-24:] for v in params.values() if v)[:80]
        name = f"{readable}-{self.signature()}" if readable else self.signature()
        return Path(work().root) / self.task_family / name

    def target(self, filename: str) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.work_dir() / filename))

    def report_progress(self, fraction: float, message: str) -> None:
        """Progress for the Luigi scheduler UI (percent + status line); a no-op outside a worker."""
        if self.set_progress_percentage is None or self.set_status_message is None:
            return
        self.set_progress_percentage(round(100.0 * max(0.0, min(1.0, fraction)), 1))
        self.set_status_message(message)


def temp_path_for(target: Path) -> Path:
    """A temporary name beside `target` that keeps its extension (h5py, cv2 guess from it)."""
    return target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temp path beside `target`; rename it onto `target` only when the block succeeds.

    A killed or failed run leaves no file at `target` (and removes its temp file on errors).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
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


def resolve_inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing paths that leave `root` (``..``, absolute paths, symlinks out)."""
    root_resolved = root.resolve()
    candidate = (root_resolved / relative).resolve()
    if not candidate.is_relative_to(root_resolved) or Path(relative).is_absolute():
        raise ValueError(f"path {relative!r} escapes its root {root}")
    return candidate
