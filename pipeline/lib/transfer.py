"""HTTP transfer with resume: one URL to one verified file, and the URL helpers of the dataset tasks.

    download(url, dest, expected_size, md5, *, sha256, retries, ...) -> dest   resumable, retried, verified
    DownloadOptions                 download()'s tunables (retries, backoff, timeout, chunk size, progress bar)
    apply_mirror(url, mirror)       the same path on a mirror host (which may carry a path prefix)
    archive_name(url)               the file name a URL downloads to, e.g. ``val2017.zip``
    ProgressCallback                ``on_progress(bytes_done, bytes_total or None)``

Bytes go to ``dest.part``. An existing ``.part`` is resumed with ``Range: bytes=N-``; a server that
answers 200 instead of 206 makes the download start over from byte 0. Connection errors, timeouts,
short reads, 408/429 and 5xx are retried up to ``retries`` times in a row without progress (an
attempt that added bytes resets the count), waiting ``backoff_s * 2**k`` (at most ``max_backoff_s``);
other 4xx fail at once. When the body is complete its size and checksum(s) are compared with the
expected ones (pipeline/lib/checksums.py); a mismatch moves the file to ``dest.bad`` (or
``dest.bad.1``, ...) and raises ChecksumMismatchError. Only a verified file is renamed (atomically)
to ``dest``. An existing ``dest`` is verified the same way and returned without any request when it
passes (it is moved aside to ``.bad`` and downloaded again when it does not).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pipeline.lib.checksums import ChecksumMismatchError, DownloadError, PartFile, verify_file

logger = logging.getLogger(__name__)

USER_AGENT = "posemask-fetch/0.1 (+python urllib)"
# HTTP statuses worth retrying: request timeout, rate limiting, and every server-side error.
RETRYABLE_HTTP_STATUSES = frozenset({408, 429})

ProgressCallback = Callable[[int, int | None], None]
"""``on_progress(done, total)``: bytes downloaded so far and the file's size (None if unknown)."""


class _RetryableError(Exception):
    """Internal: a transient failure (connection, timeout, short read, 5xx) worth another attempt."""


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


def _open(url: str, part: PartFile, offset: int, timeout_s: float) -> http.client.HTTPResponse | None:
    """The response to a GET from byte `offset` (a Range request when > 0), or None when a 416 says
    the part is whole already (killed before the rename). Raises :class:`_RetryableError` for
    transient failures and :class:`DownloadError` for final ones."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        error.close()  # headers stay readable; frees the connection
        if error.code == 416 and offset > 0:
            # Range past the end: the part may already be whole (killed before the rename).
            _, total = _parse_content_range(error.headers.get("Content-Range"))
            if total is not None and total == offset:
                return None
            logger.warning("%s: server refused Range bytes=%d- (416); starting over", url, offset)
            part.restart()
            raise _RetryableError(f"HTTP 416 for Range bytes={offset}-") from error
        if error.code >= 500 or error.code in RETRYABLE_HTTP_STATUSES:
            raise _RetryableError(f"HTTP {error.code} {error.reason}") from error
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason} (not retried)") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _RetryableError(f"{type(error).__name__}: {error}") from error


def _body_range(
    url: str, response: http.client.HTTPResponse, part: PartFile, offset: int, expected_size: int | None
) -> tuple[int, int | None]:
    """(first byte, end or None) of the body a response carries: a 206 must start at `offset`, a 200
    (Range ignored) restarts the part from byte 0; the size the server reports must be the expected one."""
    content_length = response.headers.get("Content-Length")
    length = int(content_length) if content_length and content_length.isdigit() else None
    if response.status == 206:
        start, total = _parse_content_range(response.headers.get("Content-Range"))
        _check_expected(url, total, expected_size)
        if start != offset:
            logger.warning("%s: server answered from byte %s instead of %d; starting over", url, start, offset)
            part.restart()
            raise _RetryableError(f"206 from byte {start}, asked for {offset}")
    elif response.status == 200:
        _check_expected(url, length, expected_size)
        if offset > 0:
            logger.warning("%s: server ignored Range (200, not 206); starting over from byte 0", url)
            part.restart()
            offset = 0
    else:
        raise DownloadError(f"{url}: unexpected HTTP status {response.status}")
    return offset, offset + length if length is not None else expected_size


def _fetch_once(
    url: str,
    part: PartFile,
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
    response = _open(url, part, part.size, timeout_s)
    if response is None:
        return
    with response:
        offset, end = _body_range(url, response, part, part.size, expected_size)
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


def _already_valid(dest: Path, expected_size: int | None, expected: dict[str, str], url: str) -> bool:
    """Whether an existing `dest` passes verification (a failing one is moved aside by _verify)."""
    try:
        verify_file(dest, expected_size, expected, None, url)
    except ChecksumMismatchError as error:
        logger.warning("existing %s failed verification (%s); downloading again", dest, error)
        return False
    logger.info("%s already present and verified", dest)
    return True


def _resumable_part(
    dest: Path, url: str, expected_size: int | None, expected: dict[str, str], chunk_bytes: int
) -> PartFile:
    """dest.part to resume (restarted when it is larger than expected); DownloadError when the disk
    cannot hold the rest."""
    part = PartFile(dest.with_name(dest.name + ".part"), tuple(expected), chunk_bytes)
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
    part: PartFile,
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


def _byte_bar(name: str, total: int | None, show: bool) -> tqdm:
    """A progress bar in bytes for one download (disabled unless `show`)."""
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not show, leave=False)


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

    Through ``dest.part``, resumed with a Range request; transient failures retried with backoff;
    renamed to ``dest`` only once its size and checksums match (the module docstring says how).
    An existing ``dest`` that passes the check is returned without any request.

    Args:
        url: http(s) URL.
        dest: final path; its folder is created.
        expected_size: size in bytes, or None to skip the size check.
        md5: expected hex MD5, or None.
        sha256: expected hex SHA-256, or None.
        retries, backoff_s, max_backoff_s, timeout_s, chunk_bytes: as in :class:`DownloadOptions` (5 retries
            in a row without progress; waits from 2.0 s, doubled, at most 60.0 s; 60.0 s socket timeout; 1 MiB).
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
    with _byte_bar(dest.name, expected_size, progress) as bar:
        _fetch_with_retries(
            url, part, expected_size, timeout_s, chunk_bytes, bar, on_progress, retries, backoff_s, max_backoff_s
        )
    part.sync_with_disk()
    verify_file(part.path, expected_size, expected, part.digests(), url)
    os.replace(part.path, dest)
    logger.info("downloaded %s (%d bytes)", dest, dest.stat().st_size)
    return dest
