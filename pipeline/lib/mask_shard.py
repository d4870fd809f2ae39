"""One MaskShard's work, as plain code: every photo of the shard processed (or its earlier row reused).

    make_shard(masker, items, earlier, folder, name, label, show_progress, progress, read_ahead)

Layout under the output folder (documented for users in docs/generate.md)::

    <rel>.person<k>.png      person k's mask, 0/255          <rel>.labels.png   instance labels
    shards/<tag>-<i>of<n>-<digest>/journal.jsonl   rows appended while the shard runs (resume point)
                                  /manifest.jsonl  one row per photo, renamed into place last
                                  /results.json    COCO results of the shard
                                  /shard.json      timing

The parts: lib/shard_folders.py (names, earlier rows, intact shards), lib/photo_masker.py (one
photo -> its masks, row and records), lib/mask_outputs.py (the PNGs and COCO records).
Invariant: every row with outcome "done" lists mask files that exist, and a photo with another
outcome has no mask files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from pipeline.lib.files import jsonl_line, write_json, write_jsonl
from pipeline.lib.photo_masker import PhotoMasker, PreparedPhoto
from pipeline.lib.shard_folders import Earlier


def make_shard(
    masker: PhotoMasker,
    items: Sequence[Sequence],
    earlier: dict[str, Earlier],
    folder: Path,
    name: str,
    label: str,
    show_progress: bool,
    progress: Callable[[int, int, int], None],
    read_ahead: int = 1,
) -> None:
    """Process (or reuse) every item [rel, size, content hash, keypoints id] into folder's files.

    Every processed photo is appended to journal.jsonl after its masks are in place, so a killed
    shard resumes where it stopped; manifest.jsonl is renamed into place last.
    progress(done, total, processed) is called after each photo.
    read_ahead: this many photos to process are prepared (read, decoded, their people found by the
    detector and pose estimator) in a second thread while the current one's network and files are
    made: the two halves release the GIL in OpenCV, MediaPipe and torch, so they overlap on two
    cores (0: one thing at a time). The journal and the rows keep the items' order.
    """
    started_at, started = time.time(), time.perf_counter()
    rows, results, processed = [], [], 0
    journal_path = folder / "journal.jsonl"
    _end_journal_line(journal_path)
    reuse = [masker.reusable(earlier.get(item[0]), item[2], item[3]) for item in items]
    repairs = _repairs(masker, items, earlier, reuse)
    with (
        _ReadAhead(masker, items, reuse, read_ahead) as ahead,
        open(journal_path, "a", encoding="utf-8") as journal,
        tqdm(items, desc=f"masks {label}", unit="image", disable=not show_progress) as bar,
    ):
        ahead.fill()
        for n, (rel, _, _, keypoints_id) in enumerate(bar):
            if reuse[n]:
                before = earlier[rel]
                row, records = dict(before.row, run="reused"), before.results
            else:
                row, records = masker.finish(ahead.take(n))
                row.update(keypoints_id=keypoints_id, run="processed")
                if n in repairs:
                    row["repaired"] = True  # done before; its masks or records were lost since
                processed += 1
                if row["outcome"] == "skipped":
                    tqdm.write(f"skipped {rel}: {row['reason']} ({row['detail']})")
                journal.write(jsonl_line({**row, "results": records}))
                journal.flush()
            rows.append(row)
            results += records
            progress(n + 1, len(items), processed)
    _write_shard_files(folder, name, rows, results, processed, started_at, time.perf_counter() - started)
    journal_path.unlink(missing_ok=True)


def _end_journal_line(journal_path: Path) -> None:
    """End a journal's last line: a killed writer's partial last line stays unparseable on its own."""
    if journal_path.is_file() and not journal_path.read_bytes().endswith(b"\n"):
        with open(journal_path, "a", encoding="utf-8") as j:
            j.write("\n")


def _repairs(
    masker: PhotoMasker, items: Sequence[Sequence], earlier: dict[str, Earlier], reuse: list[bool]
) -> set[int]:
    """The photos redone because what their earlier row promised is gone (seen before they are redone)."""
    return {
        n
        for n, item in enumerate(items)
        if not reuse[n]
        and (before := earlier.get(item[0])) is not None
        and masker.same_photo(before, item[2], item[3])
        and masker.lost_outputs(before)
    }


class _ReadAhead:
    """The photos to process, prepared up to `depth` ahead in a second thread (depth 0: none; each is
    prepared when its turn comes). fill() starts what the depth allows; take(n) waits for photo n."""

    def __init__(self, masker: PhotoMasker, items: Sequence[Sequence], reuse: list[bool], depth: int) -> None:
        self.masker, self.items, self.depth = masker, items, depth
        self.to_process = iter([i for i, reused in enumerate(reuse) if not reused])
        self.ahead: dict[int, Future[PreparedPhoto]] = {}
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _ReadAhead:
        if self.depth > 0:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def fill(self) -> None:
        while self.pool is not None and len(self.ahead) < self.depth and (i := next(self.to_process, None)) is not None:
            self.ahead[i] = self.pool.submit(self.masker.prepare, self.items[i][0], self.items[i][1], self.items[i][3])

    def take(self, n: int) -> PreparedPhoto:
        """Photo n prepared (by the thread, or now when it was not ahead); the next one is started."""
        rel, size, _, keypoints_id = self.items[n]
        prepared = self.ahead.pop(n).result() if n in self.ahead else self.masker.prepare(rel, size, keypoints_id)
        self.fill()
        return prepared


def _write_shard_files(
    folder: Path, name: str, rows: list[dict], results: list[dict], processed: int, started_at: float, seconds: float
) -> None:
    """results.json, shard.json, then manifest.jsonl (renamed into place last: the shard is done)."""
    write_json(folder / "results.json", results)
    write_json(
        folder / "shard.json",
        {
            "shard": name,
            "images": len(rows),
            "processed": processed,
            "seconds": round(seconds, 3),
            "started_at": started_at,
            "finished_at": time.time(),
        },
    )
    write_jsonl(folder / "manifest.jsonl", rows)
