"""Dataset preparation: an existing copy used as is, or the archives downloaded, extracted and recorded.

    prepare_dataset(root, archives, archive_dir, check_layout, *, dataset, options, keep_archives,
                    on_status) -> manifest record          what the Luigi tasks in pipeline/download.py call
    ArchiveSpec(url, size, md5)                             one archive of a dataset
    manifest_record(folder, files, *, source, known_md5, extra) / write_manifest(...)
                                                            what a dataset folder holds: ``.complete`` JSON
    LayoutError                                             the layout is still wrong after extraction
    MANIFEST_NAME, EXISTING_COPY, DOWNLOADED                the manifest's file name and sources
    StatusCallback                                          ``on_status(percent, message)``

The work is done by the modules below it: pipeline/lib/transfer.py (HTTP with resume),
pipeline/lib/checksums.py (verification), pipeline/lib/archives.py (safe extraction) and
pipeline/lib/dataset_layouts.py (whether a folder is a usable copy).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.lib.archives import safe_extract
from pipeline.lib.checksums import file_digest
from pipeline.lib.transfer import DownloadOptions, ProgressCallback, archive_name, download

logger = logging.getLogger(__name__)

MANIFEST_NAME = ".complete"
EXISTING_COPY = "existing copy, not downloaded"
DOWNLOADED = "downloaded"


class LayoutError(RuntimeError):
    """A dataset folder does not have the expected layout (after extraction)."""


def manifest_record(
    folder: Path,
    files: Sequence[Path],
    *,
    source: str = DOWNLOADED,
    known_md5: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    chunk_bytes: int = 1 << 20,
) -> dict[str, Any]:
    """What :func:`write_manifest` writes: dataset ``root``, ``source``, ``created`` and the ``files``.

    Each file is listed with its name, resolved path, size and MD5 (from ``known_md5[file name]``
    when given, else computed). Nothing is written.
    """
    known_md5 = dict(known_md5 or {})
    listed = []
    for path in files:
        path = Path(path)
        md5 = known_md5.get(path.name) or file_digest(path, "md5", chunk_bytes)
        listed.append({"name": path.name, "path": str(path.resolve()), "size": path.stat().st_size, "md5": md5.lower()})
    return {
        "root": str(Path(folder).resolve()),
        "source": source,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": listed,
        **dict(extra or {}),
    }


def write_manifest(
    folder: Path,
    files: Sequence[Path],
    *,
    source: str = DOWNLOADED,
    known_md5: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    name: str = MANIFEST_NAME,
    chunk_bytes: int = 1 << 20,
) -> Path:
    """Write ``folder/<name>`` (``.complete``): JSON with the dataset root, source and archive files.

    Each file is listed with its name, size and MD5; the MD5 comes from ``known_md5[file name]``
    when given (already verified during the download), otherwise it is computed. The JSON is
    written to a temporary file beside it, fsynced and renamed, so a reader never sees half of it.

    Returns:
        Path of the manifest.
    """
    folder = Path(folder)
    manifest = manifest_record(folder, files, source=source, known_md5=known_md5, extra=extra, chunk_bytes=chunk_bytes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = folder / f"{name}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    """JSON for luigi's frozen containers and paths."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | list | set | frozenset):
        return list(value)
    return str(value)


@dataclass(frozen=True)
class ArchiveSpec:
    """One archive of a dataset: where it comes from and what it must be."""

    url: str
    size: int | None = None
    md5: str | None = None

    @property
    def name(self) -> str:
        return archive_name(self.url)


StatusCallback = Callable[[float, str], None]
"""``on_status(percent 0..100, message)``: overall progress of :func:`prepare_dataset`."""


class _Progress:
    """Turns per-archive byte / member counts into one overall percentage; reports on change only.

    Each archive weighs its size (1 if unknown) twice: once for the download, once for extraction.
    """

    def __init__(self, specs: Sequence[ArchiveSpec], on_status: StatusCallback | None) -> None:
        self.weights = [spec.size or 1 for spec in specs]
        self.total = 2 * sum(self.weights)
        self.on_status = on_status
        self.last: tuple[int, str] | None = None

    def report(self, phase: int, index: int, fraction: float, message: str) -> None:
        if self.on_status is None:
            return
        done = phase * sum(self.weights) + sum(self.weights[:index]) + fraction * self.weights[index]
        percent = 100.0 * done / self.total
        key = (int(percent), message)
        if key != self.last:
            self.last = key
            self.on_status(percent, message)

    def callback(self, phase: int, index: int, message: str) -> ProgressCallback:
        def on_progress(done: int, total: int | None) -> None:
            self.report(phase, index, min(done / total, 1.0) if total else 0.0, message)

        return on_progress


def prepare_dataset(
    root: Path,
    archives: Sequence[ArchiveSpec],
    archive_dir: Path,
    check_layout: Callable[[Path], list[str]],
    *,
    dataset: str,
    options: DownloadOptions = DownloadOptions(),  # noqa: B008 (frozen dataclass: immutable default)
    keep_archives: bool = True,
    on_status: StatusCallback | None = None,
) -> dict[str, Any]:
    """Make ``root`` a complete dataset copy; return its manifest record (see :func:`manifest_record`).

    If ``check_layout(root)`` finds nothing wrong, the copy is used as is: source "existing copy,
    not downloaded", no network access and nothing written (the folder may be read-only or shared).
    Otherwise every archive is downloaded into ``archive_dir`` (resumed / skipped when already there
    and verified), extracted safely into ``root`` (an ``.extracted-<archive>.json`` marker per archive
    lets a rerun skip those already done), the layout is checked again (:class:`LayoutError` listing
    the problems) and ``root/.complete`` records the archives' sizes and MD5s; the returned record
    is that manifest plus its path under ``"manifest"``. ``keep_archives=False`` deletes the archives
    afterwards.
    """
    root = Path(root)
    archive_dir = Path(archive_dir)
    problems = check_layout(root)
    if not problems:
        logger.info("%s: valid %s layout found; using the existing copy", root, dataset)
        return manifest_record(root, [], source=EXISTING_COPY, extra={"dataset": dataset})
    logger.info("%s: %s needed: %s", root, "download", "; ".join(problems))

    progress = _Progress(archives, on_status)
    paths = _download_archives(archives, archive_dir, dataset, options, progress)
    root.mkdir(parents=True, exist_ok=True)
    _extract_archives(root, archives, paths, dataset, options, progress)
    problems = check_layout(root)
    if problems:
        raise LayoutError(
            f"{root}: {dataset} archives extracted, but the layout is still wrong: " + "; ".join(problems)
        )
    known_md5 = {spec.name: spec.md5 for spec in archives if spec.md5}
    manifest_path = write_manifest(
        root,
        paths,
        source=DOWNLOADED,
        known_md5=known_md5,
        extra={"dataset": dataset, "urls": [spec.url for spec in archives]},
        chunk_bytes=options.chunk_bytes,
    )
    manifest = {**json.loads(manifest_path.read_text(encoding="utf-8")), "manifest": str(manifest_path)}
    if not keep_archives:
        for path in paths:
            path.unlink()
            logger.info("deleted %s (keep_archives is off)", path)
    progress.report(1, len(archives) - 1, 1.0, f"{dataset}: complete")
    return manifest


def _download_archives(
    archives: Sequence[ArchiveSpec], archive_dir: Path, dataset: str, options: DownloadOptions, progress: _Progress
) -> list[Path]:
    """Every archive downloaded (or found verified) into `archive_dir`; their paths, in order."""
    paths = []
    for index, spec in enumerate(archives):
        message = f"{dataset}: downloading {spec.name} ({index + 1}/{len(archives)})"
        progress.report(0, index, 0.0, message)
        paths.append(
            download(
                spec.url,
                archive_dir / spec.name,
                spec.size,
                spec.md5,
                **asdict(options),
                on_progress=progress.callback(0, index, message),
            )
        )
    return paths


def _extract_archives(
    root: Path,
    archives: Sequence[ArchiveSpec],
    paths: Sequence[Path],
    dataset: str,
    options: DownloadOptions,
    progress: _Progress,
) -> None:
    """Each archive extracted safely into `root`, unless its ``.extracted-<archive>.json`` marker says
    an earlier run did it; the marker lists the entries it created."""
    for index, (spec, path) in enumerate(zip(archives, paths, strict=True)):
        marker = root / f".extracted-{spec.name}.json"
        if marker.exists():
            logger.info("%s: already extracted (%s)", path, marker)
            continue
        message = f"{dataset}: extracting {spec.name} ({index + 1}/{len(archives)})"
        progress.report(1, index, 0.0, message)
        created = safe_extract(
            path,
            root,
            progress=options.progress,
            on_progress=progress.callback(1, index, message),
            chunk_bytes=options.chunk_bytes,
        )
        write_manifest(
            root,
            [],
            source=str(path),
            name=marker.name,
            extra={"archive": spec.name, "created_entries": [entry.name for entry in created]},
        )
