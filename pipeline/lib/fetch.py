"""Dataset downloads and archive extraction: resumable, verified, safe. Pure functions, no luigi.

* :func:`download` streams one URL to ``dest`` through ``dest.part``, resumes an interrupted
  ``.part`` with an HTTP ``Range`` request, retries transient failures with exponential backoff,
  and renames ``.part`` to ``dest`` only after the size and checksum match. A file that fails
  the check is moved aside to ``dest.bad`` (kept for inspection, never used, never deleted).
* :func:`safe_extract` unpacks a zip or tar archive into a temporary folder beside the target and
  moves it into place only when every member was checked and written, so that a failure leaves
  no partial target. Links, devices, fifos, absolute names and ``..`` are refused.
* :func:`check_coco_layout` / :func:`check_voc_layout` say whether a folder already holds a
  usable copy (so that an existing copy is used as is, read-only), :func:`write_manifest` records
  what a downloaded dataset folder holds in a ``.complete`` JSON file, and :func:`prepare_dataset`
  strings them together for the Luigi tasks in ``pipeline.download``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from tqdm import tqdm

logger = logging.getLogger(__name__)

MANIFEST_NAME = ".complete"
EXISTING_COPY = "existing copy, not downloaded"
DOWNLOADED = "downloaded"
USER_AGENT = "posemask-fetch/0.1 (+python urllib)"
# HTTP statuses worth retrying: request timeout, rate limiting, and every server-side error.
RETRYABLE_HTTP_STATUSES = frozenset({408, 429})

ProgressCallback = Callable[[int, int | None], None]
"""``on_progress(done, total)``: bytes (downloads) or members (extraction); total None if unknown."""


class DownloadError(RuntimeError):
    """A download failed for good (client error, retries exhausted, size or checksum mismatch)."""


class ChecksumMismatchError(DownloadError):
    """The downloaded file's size or checksum differs from the expected one; it was moved to ``bad_path``."""

    def __init__(self, message: str, bad_path: Path) -> None:
        super().__init__(message)
        self.bad_path = bad_path


class ArchiveError(RuntimeError):
    """An archive is corrupt, of an unknown kind, or would not fit where it is extracted."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would escape its target or is a link / device / fifo; names the member."""


class LayoutError(RuntimeError):
    """A dataset folder does not have the expected layout (after extraction)."""


class _RetryableError(Exception):
    """Internal: a transient failure (connection, timeout, short read, 5xx) worth another attempt."""


# --------------------------------------------------------------------------------------------
# Checksums and small helpers
# --------------------------------------------------------------------------------------------


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


def apply_mirror(url: str, mirror: str) -> str:
    """Replace a URL's scheme and host by ``mirror`` (which may carry a path prefix); keep the path.

    ``apply_mirror("http://images.cocodataset.org/zips/val2017.zip", "http://m.example/data")``
    gives ``"http://m.example/data/zips/val2017.zip"``. An empty mirror returns the URL unchanged.
    """
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    mirror_parts = urllib.parse.urlsplit(mirror)
    if mirror_parts.scheme not in ("http", "https") or not mirror_parts.netloc:
        raise ValueError(f"mirror {mirror!r} is not an http(s) base URL like 'http://host[:port][/prefix]'")
    path = mirror_parts.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((mirror_parts.scheme, mirror_parts.netloc, path, parts.query, ""))


def archive_name(url: str) -> str:
    """The file name an archive URL downloads to (last path component), e.g. ``val2017.zip``."""
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name
    if not name or name in (".", ".."):
        raise ValueError(f"cannot derive a file name from URL {url!r}")
    return name


def _aside_path(path: Path, suffix: str = ".bad") -> Path:
    """First free ``<name><suffix>``, ``<name><suffix>.1``, ... beside ``path`` (nothing is overwritten)."""
    candidate = path.with_name(path.name + suffix)
    index = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{suffix}.{index}")
        index += 1
    return candidate


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadOptions:
    """Tunables of :func:`download` (defaults suit multi-GB archives over a normal connection).

    Attributes:
        retries: extra attempts for transient failures in a row that add no bytes.
        backoff_s: wait before the first retry; doubled on every further retry.
        max_backoff_s: upper bound on one wait.
        timeout_s: socket timeout for connecting and for each read.
        chunk_bytes: bytes read (and written, hashed) per step.
        progress: show a tqdm bar in bytes.
    """

    retries: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    timeout_s: float = 60.0
    chunk_bytes: int = 1 << 20
    progress: bool = True


class _PartFile:
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


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``"bytes 100-199/1000"`` -> (100, 1000); ``"bytes */1000"`` -> (None, 1000); junk -> (None, None)."""
    if not value:
        return None, None
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value)
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _check_expected(url: str, reported_total: int | None, expected_size: int | None) -> None:
    if expected_size is not None and reported_total is not None and reported_total != expected_size:
        raise DownloadError(
            f"{url}: server reports {reported_total} bytes, expected {expected_size} "
            "(wrong URL or mirror, or a wrong size in the config)"
        )


def _fetch_once(
    url: str,
    part: _PartFile,
    expected_size: int | None,
    timeout_s: float,
    chunk_bytes: int,
    bar: tqdm,
    on_progress: ProgressCallback | None,
) -> None:
    """One HTTP attempt: resume or restart ``part`` and stream the body into it.

    Returns when the body is complete; raises :class:`_RetryableError` for transient failures
    and :class:`DownloadError` for final ones.
    """
    part.sync_with_disk()
    offset = part.size
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        error.close()  # headers stay readable; frees the connection
        if error.code == 416 and offset > 0:
            # Range past the end: the part may already be whole (killed before the rename).
            _, total = _parse_content_range(error.headers.get("Content-Range"))
            if total is not None and total == offset:
                return
            logger.warning("%s: server refused Range bytes=%d- (416); starting over", url, offset)
            part.restart()
            raise _RetryableError(f"HTTP 416 for Range bytes={offset}-") from error
        if error.code >= 500 or error.code in RETRYABLE_HTTP_STATUSES:
            raise _RetryableError(f"HTTP {error.code} {error.reason}") from error
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason} (not retried)") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _RetryableError(f"{type(error).__name__}: {error}") from error

    with response:
        status = response.status
        content_length = response.headers.get("Content-Length")
        length = int(content_length) if content_length and content_length.isdigit() else None
        if status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            _check_expected(url, total, expected_size)
            if start != offset:
                logger.warning("%s: server answered from byte %s instead of %d; starting over", url, start, offset)
                part.restart()
                raise _RetryableError(f"206 from byte {start}, asked for {offset}")
        elif status == 200:
            _check_expected(url, length, expected_size)
            if offset > 0:
                logger.warning("%s: server ignored Range (200, not 206); starting over from byte 0", url)
                part.restart()
                offset = 0
        else:
            raise DownloadError(f"{url}: unexpected HTTP status {status}")
        end = offset + length if length is not None else expected_size
        bar.reset(total=end)
        bar.update(offset)
        try:
            with part.appender() as append:
                while chunk := response.read(chunk_bytes):
                    append(chunk)
                    bar.update(len(chunk))
                    if on_progress is not None:
                        on_progress(part.size, end)
        except (OSError, http.client.HTTPException) as error:
            raise _RetryableError(f"connection lost at byte {part.size}: {type(error).__name__}: {error}") from error
    if end is not None and part.size < end:
        raise _RetryableError(f"short read: got {part.size} of {end} bytes")


def _verify(
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
        bad = _aside_path(path.with_name(path.name.removesuffix(".part")))
        os.replace(path, bad)
        raise ChecksumMismatchError(f"{url}: {'; '.join(problems)}; the file was moved aside to {bad}", bad)


def _already_valid(dest: Path, expected_size: int | None, expected: dict[str, str], url: str) -> bool:
    """Whether an existing `dest` passes verification (a failing one is moved aside by _verify)."""
    try:
        _verify(dest, expected_size, expected, None, url)
    except ChecksumMismatchError as error:
        logger.warning("existing %s failed verification (%s); downloading again", dest, error)
        return False
    logger.info("%s already present and verified", dest)
    return True


def _resumable_part(
    dest: Path, url: str, expected_size: int | None, expected: dict[str, str], chunk_bytes: int
) -> _PartFile:
    """dest.part to resume (restarted when it is larger than expected); DownloadError when the disk
    cannot hold the rest."""
    part = _PartFile(dest.with_name(dest.name + ".part"), tuple(expected), chunk_bytes)
    if expected_size is not None and part.path.exists() and part.path.stat().st_size > expected_size:
        logger.warning("%s is larger than the expected %d bytes; starting over", part.path, expected_size)
        part.restart()
    if expected_size is not None:
        have = part.path.stat().st_size if part.path.exists() else 0
        free = shutil.disk_usage(dest.parent).free
        if free < expected_size - have:
            raise DownloadError(f"{url}: needs {expected_size - have} more bytes in {dest.parent}, only {free} free")
    return part


def _fetch_with_retries(
    url: str,
    part: _PartFile,
    expected_size: int | None,
    timeout_s: float,
    chunk_bytes: int,
    bar: tqdm,
    on_progress: ProgressCallback | None,
    retries: int,
    backoff_s: float,
    max_backoff_s: float,
) -> None:
    """_fetch_once until the body is complete, with exponential backoff between transient failures."""
    attempts = 0
    failures_in_a_row = 0
    while not (expected_size is not None and part.path.exists() and part.path.stat().st_size == expected_size):
        size_before = part.size
        attempts += 1
        try:
            _fetch_once(url, part, expected_size, timeout_s, chunk_bytes, bar, on_progress)
            return
        except _RetryableError as error:
            # `retries` bounds failures in a row without progress: a long download over a
            # flaky line may drop many times, and each attempt that added bytes resets the count.
            failures_in_a_row = 0 if part.size > size_before else failures_in_a_row + 1
            if failures_in_a_row > retries:
                raise DownloadError(
                    f"{url}: giving up after {attempts} attempts; last error: {error}"
                    f" (partial data kept in {part.path}, a rerun resumes it)"
                ) from error
            wait_s = min(backoff_s * 2 ** max(failures_in_a_row - 1, 0), max_backoff_s)
            logger.warning("%s: %s; retry %d/%d in %.1f s", url, error, failures_in_a_row, retries, wait_s)
            time.sleep(wait_s)


def download(
    url: str,
    dest: Path,
    expected_size: int | None = None,
    md5: str | None = None,
    *,
    sha256: str | None = None,
    retries: int = 5,
    backoff_s: float = 2.0,
    max_backoff_s: float = 60.0,
    timeout_s: float = 60.0,
    chunk_bytes: int = 1 << 20,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, retried, verified, atomic) and return ``dest``.

    Bytes go to ``dest.part``. An existing ``.part`` is resumed with ``Range: bytes=N-``; a server
    that answers 200 instead of 206 makes the download start over from byte 0. Connection errors,
    timeouts, short reads, 408/429 and 5xx are retried up to ``retries`` times in a row without
    progress (an attempt that added bytes resets the count), waiting ``backoff_s * 2**k`` (at most
    ``max_backoff_s``); other 4xx fail at once. When the body is
    complete its size and checksum(s) are compared with the expected ones; a mismatch moves the
    file to ``dest.bad`` (or ``dest.bad.1``, ...) and raises :class:`ChecksumMismatchError`.
    Only a verified file is renamed (atomically) to ``dest``.

    An existing ``dest`` is verified the same way and returned without any request when it
    passes (it is moved aside to ``.bad`` and downloaded again when it does not).

    Args:
        url: http(s) URL.
        dest: final path; its folder is created.
        expected_size: size in bytes, or None to skip the size check.
        md5: expected hex MD5, or None.
        sha256: expected hex SHA-256, or None.
        retries: extra attempts for transient failures in a row without progress (5).
        backoff_s: first wait between attempts in seconds (2.0), doubled each time.
        max_backoff_s: longest wait (60.0).
        timeout_s: socket timeout in seconds for the connection and each read (60.0).
        chunk_bytes: bytes per read/write (1 MiB).
        progress: show a tqdm progress bar in bytes.
        on_progress: optional ``callback(bytes_done, bytes_total_or_None)`` after every chunk.

    Raises:
        DownloadError: 4xx, retries exhausted, unexpected server size, unwritable disk.
        ChecksumMismatchError: size or checksum mismatch after the body was complete.
    """
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http and https URLs are supported, not {scheme!r}")
    expected = {name: value for name, value in (("md5", md5), ("sha256", sha256)) if value}
    dest.parent.mkdir(parents=True, exist_ok=True)

    if dest.exists() and _already_valid(dest, expected_size, expected, url):
        return dest
    part = _resumable_part(dest, url, expected_size, expected, chunk_bytes)
    with tqdm(
        total=expected_size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=dest.name,
        disable=not progress,
        leave=False,
    ) as bar:
        _fetch_with_retries(
            url, part, expected_size, timeout_s, chunk_bytes, bar, on_progress, retries, backoff_s, max_backoff_s
        )
    part.sync_with_disk()
    _verify(part.path, expected_size, expected, part.digests(), url)
    os.replace(part.path, dest)
    logger.info("downloaded %s (%d bytes)", dest, dest.stat().st_size)
    return dest


# --------------------------------------------------------------------------------------------
# Safe extraction
# --------------------------------------------------------------------------------------------

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _member_relpath(name: str, archive: Path) -> PurePosixPath | None:
    """Checked relative path of an archive member; None for the archive root (``.`` / ``./``).

    Refuses empty names, NUL bytes, absolute paths (``/x``, ``C:\\x``, ``\\\\host\\x``) and any ``..``
    component (even one that would stay inside: simpler to reason about, and no real dataset
    archive needs it). Backslashes count as separators for this check.
    """
    if "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a NUL byte in its name")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a '..' component (would escape the target)")
    if not parts:
        return None
    return PurePosixPath(*parts)


def _inside(root: Path, relpath: PurePosixPath, archive: Path, name: str) -> Path:
    """``root / relpath`` after checking that it resolves inside ``root`` (second line of defence)."""
    dest = root.joinpath(*relpath.parts)
    resolved = dest.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves outside the target ({resolved})")
    return dest


def _check_zip_member(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath | None:
    """Refuse links and special files (Unix mode in the high 16 bits of ``external_attr``) and bad names."""
    mode = info.external_attr >> 16
    if mode:
        kinds = (
            (stat.S_ISLNK, "a symlink"),
            (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"),
            (stat.S_ISFIFO, "a fifo"),
            (stat.S_ISSOCK, "a socket"),
        )
        for is_kind, label in kinds:
            if is_kind(mode):
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is {label}; refused")
    return _member_relpath(info.filename, archive)


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> PurePosixPath | None:
    """Only regular files and folders pass: every symlink and hardlink is refused (dataset archives
    have none, and refusing them all is simpler to trust than resolving them), as are devices,
    fifos and anything else."""
    if member.issym():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a symlink to {member.linkname!r}; refused")
    if member.islnk():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a hardlink to {member.linkname!r}; refused")
    if member.ischr() or member.isblk():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device file; refused")
    if member.isfifo():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a fifo; refused")
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} has unsupported type {member.type!r}")
    return _member_relpath(member.name, archive)


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise ArchiveError(f"{archive}: neither a zip nor a tar archive")


def _check_free_space(archive: Path, folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ArchiveError(f"{archive}: extracting needs {needed} bytes in {folder}, only {free} free")


def _copy_stream(source: BinaryIO, dest: Path, chunk_bytes: int) -> None:
    with open(dest, "wb") as handle:
        shutil.copyfileobj(source, handle, chunk_bytes)


def _extract_zip(
    archive: Path, tmp: Path, progress: bool, on_progress: ProgressCallback | None, chunk_bytes: int
) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        checked = [(info, _check_zip_member(info, archive)) for info in infos]
        _check_free_space(archive, tmp, sum(info.file_size for info in infos))
        with tqdm(
            total=len(checked), unit="file", desc=f"extract {archive.name}", disable=not progress, leave=False
        ) as bar:
            for done, (info, relpath) in enumerate(checked, start=1):
                if relpath is not None:
                    dest = _inside(tmp, relpath, archive, info.filename)
                    if info.is_dir():
                        dest.mkdir(parents=True, exist_ok=True)
                    else:
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(info) as source:
                            _copy_stream(source, dest, chunk_bytes)
                bar.update(1)
                if on_progress is not None:
                    on_progress(done, len(checked))


def _extract_tar(archive: Path, tmp: Path, progress: bool, on_progress: ProgressCallback | None) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()  # uncompressed tars: a quick seek through the headers
        checked = [(member, _check_tar_member(member, archive)) for member in members]
        _check_free_space(archive, tmp, sum(member.size for member in members if member.isreg()))
        with tqdm(
            total=len(checked), unit="file", desc=f"extract {archive.name}", disable=not progress, leave=False
        ) as bar:
            for done, (member, relpath) in enumerate(checked, start=1):
                if relpath is not None:
                    _inside(tmp, relpath, archive, member.name)
                    try:
                        # tarfile's own "data" filter is the second line of defence (Python >= 3.11.4).
                        tf.extract(member, tmp, filter="data")
                    except tarfile.FilterError as error:
                        raise UnsafeArchiveError(
                            f"{archive}: member {member.name!r} refused by tarfile's data filter: {error}"
                        ) from error
                bar.update(1)
                if on_progress is not None:
                    on_progress(done, len(checked))


def safe_extract(
    archive: Path,
    target: Path,
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    chunk_bytes: int = 1 << 20,
) -> list[Path]:
    """Extract a zip or tar (``.tar``, ``.tar.gz``, ...) archive into ``target``; all or nothing.

    Every member is checked before anything is written: absolute names, ``..`` components,
    links (all tar symlinks and hardlinks; zip symlinks), device files, fifos and sockets raise
    :class:`UnsafeArchiveError` naming the member; each destination is also resolved and must stay
    inside the temporary folder, and tar members additionally go through tarfile's ``data``
    filter. Members are written to ``target.parent / f".{target.name}.tmp-<pid>"``; then, if
    ``target`` does not exist, that folder is renamed to ``target`` (atomic); if it exists (several
    archives into one dataset folder), each top-level entry is renamed into it, after checking
    that none of them exists there already (FileExistsError otherwise, nothing moved). On any
    failure the temporary folder is removed, so the target never holds a half-extracted archive.

    Args:
        archive: the zip or tar file.
        target: folder the archive's top-level entries end up in.
        progress: show a tqdm bar over members.
        on_progress: optional ``callback(members_done, members_total)``.
        chunk_bytes: copy buffer for zip members (1 MiB).

    Returns:
        The top-level paths created inside ``target``, sorted.
    """
    archive = Path(archive)
    target = Path(target)
    kind = _archive_kind(archive)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    stale = sorted(path for path in target.parent.glob(f".{target.name}.tmp-*") if path != tmp)
    if stale:
        logger.warning("stale extraction folders from killed runs (safe to delete): %s", stale)
    if tmp.exists():
        shutil.rmtree(tmp)  # ours (same pid): left by an earlier failure in this process
    tmp.mkdir(parents=True)
    try:
        try:
            if kind == "zip":
                _extract_zip(archive, tmp, progress, on_progress, chunk_bytes)
            else:
                _extract_tar(archive, tmp, progress, on_progress)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
            raise ArchiveError(f"{archive}: corrupt or truncated archive: {error}") from error
        entries = sorted(tmp.iterdir())
        if not target.exists():
            os.rename(tmp, target)
        else:
            clashes = [str(target / entry.name) for entry in entries if (target / entry.name).exists()]
            if clashes:
                raise FileExistsError(
                    f"{archive}: would overwrite {clashes}; move them away (or remove them) and run again"
                )
            for entry in entries:
                os.rename(entry, target / entry.name)
            tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [target / entry.name for entry in entries]


# --------------------------------------------------------------------------------------------
# Layout checks and manifest
# --------------------------------------------------------------------------------------------


def _nonempty_dir(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is not None


def check_coco_layout(root: Path, splits: Sequence[str] = ("train", "val"), year: str = "2017") -> list[str]:
    """Problems that keep ``root`` from being a usable COCO copy; empty list = usable as is.

    Needs, per split: ``annotations/person_keypoints_<split><year>.json`` (a non-empty file) and a
    non-empty ``<split><year>/`` image folder.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: no such folder"]
    problems = []
    for split in splits:
        annotation = root / "annotations" / f"person_keypoints_{split}{year}.json"
        if not annotation.is_file() or annotation.stat().st_size == 0:
            problems.append(f"{annotation}: missing or empty keypoint annotation file")
        images = root / f"{split}{year}"
        if not _nonempty_dir(images):
            problems.append(f"{images}: missing or empty image folder")
    return problems


def check_voc_layout(root: Path, split_files: Sequence[str] = ("train.txt", "val.txt")) -> list[str]:
    """Problems that keep ``root`` from being a usable VOC 2012 copy; empty list = usable as is.

    ``root`` is the folder that holds ``VOCdevkit/``; needs non-empty ``VOCdevkit/VOC2012/``
    ``JPEGImages``, ``SegmentationObject``, ``SegmentationClass`` and ``ImageSets/Segmentation``
    holding ``split_files``.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: no such folder"]
    voc = root / "VOCdevkit" / "VOC2012"
    problems = []
    for sub in ("JPEGImages", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        if not _nonempty_dir(voc / sub):
            problems.append(f"{voc / sub}: missing or empty folder")
    for name in split_files:
        if not (voc / "ImageSets" / "Segmentation" / name).is_file():
            problems.append(f"{voc / 'ImageSets' / 'Segmentation' / name}: missing split file")
    if problems and root.name in ("VOC2012", "VOCdevkit"):
        holder = root.parent if root.name == "VOCdevkit" else root.parent.parent
        problems.append(f"{root}: pass the folder that holds VOCdevkit/ (here {holder}), not {root.name}/ itself")
    return problems


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


# --------------------------------------------------------------------------------------------
# Whole dataset: download, extract, check, manifest
# --------------------------------------------------------------------------------------------


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
    root.mkdir(parents=True, exist_ok=True)
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
