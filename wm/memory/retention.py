"""Retention: delete the media of clips older than retention.raw_days, and of the oldest
clips while all clip media together exceeds retention.max_gb. Only clips already in the
memory are touched (a queued clip has no other record yet). Each purged clip keeps its
vectors, its manifest and one small thumbnail, so it is still found and says its media is
gone; its queue state becomes purged.

Order per batch: thumbnails, then the database says "gone", then the files go. A crash
in between leaves files of clips marked gone; the next run deletes them."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from wm.base import log
from wm.base.config import Settings
from wm.base.paths import Paths
from wm.base.queue import PURGED, Queue
from wm.memory.clips import ClipRecord
from wm.memory.sheet import make_thumbnail
from wm.memory.store import Store

BATCH = 500
_log = log.get("wm.memory.retention")


@dataclass
class RetentionResult:
    purged: int               # clips whose media was deleted in this run
    freed_bytes: int
    media_bytes: int          # clip media left on disk
    over_limit: bool = False  # still above max_gb (what is left is not in memory yet)


def media_files(paths: Paths, clip: ClipRecord) -> list[Path]:
    rel = [clip.video, clip.audio, *clip.frames]
    return [paths.data / r for r in rel if r]


def _size(files: list[Path]) -> int:
    total = 0
    for f in files:
        try:
            total += f.stat().st_size
        except FileNotFoundError:
            pass
    return total


def media_bytes(paths: Paths) -> int:
    """All clip media on disk (manifests and thumbnails are records, not media)."""
    total = 0
    for folder in (paths.data / "clips", paths.data / "frames", paths.data / "audio"):
        if folder.exists():
            total += sum(f.stat().st_size for f in folder.rglob("*")
                         if f.is_file() and f.suffix != ".json")
    return total


def select_purge(clips: Iterable[tuple[ClipRecord, int]], total: int, now: float,
                 raw_days: float, max_bytes: int) -> list[ClipRecord]:
    """From (clip, media bytes) oldest first: every clip older than raw_days, then more
    while the media left would exceed max_bytes. Stops reading at the first clip kept."""
    cutoff = now - raw_days * 86400
    out = []
    for clip, size in clips:
        if datetime.fromisoformat(clip.start).timestamp() < cutoff or total > max_bytes:
            out.append(clip)
            total -= size
        else:
            break
    return out


def _delete(files: list[Path]) -> int:
    freed = 0
    for f in files:
        try:
            freed += f.stat().st_size
            f.unlink()
        except FileNotFoundError:
            pass
    return freed


def apply_retention(settings: Settings, paths: Paths, now: float | None = None) -> RetentionResult:
    now = time.time() if now is None else now
    r = settings.retention
    max_bytes = int(r.max_gb * 1e9)
    if not paths.memory_db.exists():
        total = media_bytes(paths)
        return RetentionResult(0, 0, total, total > max_bytes)
    freed, purged = 0, 0
    with Store(paths) as store:
        queue = Queue(paths.memory_db)
        try:
            for clip in store.media_gone():  # finish a run that stopped half-way
                freed += _delete(media_files(paths, clip))
            total = media_bytes(paths)
            # Sizes are only needed when over the limit; otherwise only old clips are read.
            before = None if total > max_bytes else datetime.fromtimestamp(
                now - r.raw_days * 86400, timezone.utc).isoformat()
            present = ((c, _size(media_files(paths, c))) for c in store.media_present(before))
            doomed = select_purge(present, total, now, r.raw_days, max_bytes)
            for i in range(0, len(doomed), BATCH):
                batch = doomed[i:i + BATCH]
                for clip in batch:
                    make_thumbnail(paths, clip)
                ids = [c.clip_id for c in batch]
                store.mark_media_gone(ids, now)
                queue.mark(ids, PURGED)
                for clip in batch:
                    freed += _delete(media_files(paths, clip))
                purged += len(batch)
        finally:
            queue.close()
    left = media_bytes(paths)
    result = RetentionResult(purged, freed, left, left > max_bytes)
    _log.info("retention", purged=purged, freed_mb=round(freed / 1e6, 1),
              media_mb=round(left / 1e6, 1), raw_days=r.raw_days, max_gb=r.max_gb)
    if result.over_limit:
        _log.warning("retention_over_limit", media_mb=round(left / 1e6, 1), max_gb=r.max_gb,
                     reason="the rest is not committed to memory yet")
    return result
