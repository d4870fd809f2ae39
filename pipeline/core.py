"""What every posemask task shares: where outputs live and progress reporting (atomic writes: lib/files.py).

One rule derives every output path (as gokart does): ``<work root>/<TaskFamily>/<name>-<hash>``
where the hash covers the task's significant parameters, the luigi.Config sections it declares
in ``configs`` (and `signature_settings`) and, recursively, the hashes of everything it requires.
Two configurations never share a folder, and a changed parameter changes the folders of exactly
the tasks downstream of it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

import luigi
from luigi.task import flatten

from pipeline.lib.files import short_hash
from pipeline.lib.stopping import die_with_parent

# the process that imported the tasks: Luigi's worker processes (--workers N) are forked from it
_SCHEDULING_PID = os.getpid()


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
        settings = self.signature_settings()
        if settings:  # only when there are any: folders of tasks without them keep their names
            parts["settings"] = settings
        return short_hash(parts, 10)

    def signature_settings(self) -> dict:
        """Settings outside `configs` that shape the output (e.g. a [dataset.NAME] section); plain types."""
        return {}

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


@PoseMaskTask.event_handler(luigi.Event.START)
def _forked_workers_die_with_their_night(task: PoseMaskTask) -> None:
    """A task started in a worker process Luigi forked: it gets SIGTERM when the night's process
    dies (even by SIGKILL), so that no orphan keeps writing or holds the night's lock."""
    if os.getpid() != _SCHEDULING_PID and os.getppid() == _SCHEDULING_PID:
        die_with_parent(_SCHEDULING_PID)
