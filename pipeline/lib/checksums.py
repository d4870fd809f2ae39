"""Verification of downloaded files: digests, the hashed ``.part`` file, the size and checksum check.

    file_digest(path, algorithm="md5")      hex digest of a file's bytes, read in chunks
    PartFile(path, algorithms, chunk_bytes) a download's ``.part`` file with running hashes of exactly
                                            the bytes it holds (appender(), sync_with_disk(), restart(), digests())
    verify_file(path, expected_size, expected, got, url)
                                            ChecksumMismatchError after moving a file that fails aside
    aside_path(path, suffix=".bad")         the first free ``<name>.bad``, ``<name>.bad.1``, ... beside a path
    DownloadError / ChecksumMismatchError   a download failed for good / failed its size or checksum check

A file that fails the check is moved to ``<dest>.bad`` (kept for inspection, never used, never
deleted). Used by pipeline/lib/transfer.py (the HTTP side) and pipeline/lib/fetch.py (the manifest).
The download errors live here, below transfer.py: a failed check is one, and PartFile raises
DownloadError when the disk refuses a write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


class DownloadError(RuntimeError):
    """A download failed for good (client error, retries exhausted, size or checksum mismatch)."""


class ChecksumMismatchError(DownloadError):
    """The downloaded file's size or checksum differs from the expected one; it was moved to ``bad_path``."""

    def __init__(self, message: str, bad_path: Path) -> None:
        super().__init__(message)
        self.bad_path = bad_path


def file_digest(path: Path, algorithm: str = "md5", chunk_bytes: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in ``chunk_bytes`` pieces.

    Args:
        path: file to hash.
        algorithm: any ``hashlib`` name; ``md5`` and ``sha256`` are the ones used here.
        chunk_bytes: read size (1 MiB by default).
    """
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            hasher.update(chunk)
    return hasher.hexdigest()


def aside_path(path: Path, suffix: str = ".bad") -> Path:
    """First free ``<name><suffix>``, ``<name><suffix>.1``, ... beside ``path`` (nothing is overwritten)."""
    candidate = path.with_name(path.name + suffix)
    index = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{suffix}.{index}")
        index += 1
    return candidate


class PartFile:
    """The ``.part`` file plus running hashes of exactly the bytes it holds."""

    def __init__(self, path: Path, algorithms: Sequence[str], chunk_bytes: int) -> None:
        self.path = path
        self.algorithms = tuple(algorithms)
        self.chunk_bytes = chunk_bytes
        self.size = 0
        self.hashers: dict[str, Any] = {name: hashlib.new(name) for name in self.algorithms}

    def sync_with_disk(self) -> None:
        """Re-hash the bytes on disk when they differ from what was hashed (a resume across runs)."""
        on_disk = self.path.stat().st_size if self.path.exists() else 0
        if on_disk == self.size:
            return
        self.hashers = {name: hashlib.new(name) for name in self.algorithms}
        self.size = 0
        if on_disk:
            with open(self.path, "rb") as handle:
                while chunk := handle.read(self.chunk_bytes):
                    self._hash(chunk)

    def restart(self) -> None:
        """Forget everything: empty ``.part`` and fresh hashes (server ignored Range, or bad offset)."""
        with open(self.path, "wb"):
            pass
        self.hashers = {name: hashlib.new(name) for name in self.algorithms}
        self.size = 0

    def _hash(self, chunk: bytes) -> None:
        for hasher in self.hashers.values():
            hasher.update(chunk)
        self.size += len(chunk)

    @contextlib.contextmanager
    def appender(self) -> Iterator[Callable[[bytes], None]]:
        """Context giving ``append(chunk)``, which writes and hashes; fsyncs on a clean exit."""
        mode = "r+b" if self.path.exists() else "wb"
        with open(self.path, mode) as handle:
            handle.truncate(self.size)
            handle.seek(self.size)

            def append(chunk: bytes) -> None:
                try:
                    handle.write(chunk)
                except OSError as error:
                    raise DownloadError(f"cannot write {self.path}: {error}") from error
                self._hash(chunk)

            yield append
            handle.flush()
            os.fsync(handle.fileno())

    def digests(self) -> dict[str, str]:
        return {name: hasher.hexdigest() for name, hasher in self.hashers.items()}


def verify_file(
    path: Path, expected_size: int | None, expected: Mapping[str, str], got: Mapping[str, str] | None, url: str
) -> None:
    """Raise :class:`ChecksumMismatchError` (after moving ``path`` aside to ``.bad``) on any mismatch."""
    size = path.stat().st_size
    problems = []
    if expected_size is not None and size != expected_size:
        problems.append(f"size: expected {expected_size} bytes, got {size}")
    for name, want in expected.items():
        have = got[name] if got is not None else file_digest(path, name)
        if have.lower() != want.lower():
            problems.append(f"{name}: expected {want.lower()}, got {have}")
    if problems:
        bad = aside_path(path.with_name(path.name.removesuffix(".part")))
        os.replace(path, bad)
        raise ChecksumMismatchError(f"{url}: {'; '.join(problems)}; the file was moved aside to {bad}", bad)
