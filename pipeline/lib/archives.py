"""Safe extraction of zip and tar archives: every member checked, all or nothing.

    safe_extract(archive, target, *, progress, on_progress, chunk_bytes) -> [top-level paths created]
    ArchiveError           an archive is corrupt, of an unknown kind, or would not fit where it goes
    UnsafeArchiveError     a member would escape its target or is a link / device / fifo (names it)
    ProgressCallback       ``on_progress(members_done, members_total)``

An archive is unpacked into a temporary folder beside the target and moved into place only when
every member was checked and written, so that a failure leaves no partial target. Links, devices,
fifos, absolute names and ``..`` are refused; each destination must also resolve inside the
temporary folder, and tar members go through tarfile's ``data`` filter as well.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm import tqdm

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""``on_progress(done, total)``: archive members extracted so far, and their number."""


class ArchiveError(RuntimeError):
    """An archive is corrupt, of an unknown kind, or would not fit where it is extracted."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would escape its target or is a link / device / fifo; names the member."""


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
    tmp = _fresh_extraction_folder(target)
    try:
        try:
            if kind == "zip":
                _extract_zip(archive, tmp, progress, on_progress, chunk_bytes)
            else:
                _extract_tar(archive, tmp, progress, on_progress)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
            raise ArchiveError(f"{archive}: corrupt or truncated archive: {error}") from error
        entries = _move_into_place(tmp, target, archive)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [target / entry.name for entry in entries]


def _fresh_extraction_folder(target: Path) -> Path:
    """An empty ``.<target name>.tmp-<pid>`` beside `target` (stale ones of killed runs are named in a
    warning, never deleted: another process may be using them)."""
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    stale = sorted(path for path in target.parent.glob(f".{target.name}.tmp-*") if path != tmp)
    if stale:
        logger.warning("stale extraction folders from killed runs (safe to delete): %s", stale)
    if tmp.exists():
        shutil.rmtree(tmp)  # ours (same pid): left by an earlier failure in this process
    tmp.mkdir(parents=True)
    return tmp


def _move_into_place(tmp: Path, target: Path, archive: Path) -> list[Path]:
    """Rename the extracted folder to `target`, or (target exists) each of its entries into it, after
    checking that none is there already (FileExistsError, nothing moved). Returns tmp's entries, sorted."""
    entries = sorted(tmp.iterdir())
    if not target.exists():
        os.rename(tmp, target)
        return entries
    clashes = [str(target / entry.name) for entry in entries if (target / entry.name).exists()]
    if clashes:
        raise FileExistsError(f"{archive}: would overwrite {clashes}; move them away (or remove them) and run again")
    for entry in entries:
        os.rename(entry, target / entry.name)
    tmp.rmdir()
    return entries
