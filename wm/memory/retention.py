"""Retention: keep what wm holds on disk within retention.max_gb and clip media within
retention.raw_days, by the rules in wm.memory.retention_rules (checkpoints, memories of
purged clips, ingested raw recordings, clip media, in that order). Only clips already in
the memory lose media (a queued clip has no other record yet). Each purged clip keeps its
vectors, its manifest and one small thumbnail, so it is still found and says its media is
gone; its queue state becomes purged.

Order per batch of media: thumbnails, then the database says "gone" (and that files are
pending deletion), then the files go. A crash in between, or a file that cannot be
deleted now, leaves the clip pending; the next run finishes it. A clip whose still cannot
be read now (an I/O error) keeps its media until it can: its thumbnail would be lost.

`retention_due` tells the daemon, cheaply, when retention should run outside a sleep
cycle."""
from __future__ import annotations

import time
import wave
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from wm.base import log
from wm.base.config import Settings
from wm.base.paths import Paths
from wm.base.queue import PURGED, Queue
from wm.memory import reading
from wm.memory.checkpoint_files import delete_checkpoints, kept_checkpoints, night_files
from wm.memory.clips import ClipRecord
from wm.memory.forget import forget, forgettable
from wm.memory.maintenance import maintain
from wm.memory.raw_files import IngestIndex, delete_raw, raw_files
from wm.memory.retention_due import retention_due  # noqa: F401  (this module's API)
from wm.memory.retention_rules import (  # noqa: F401  (select_purge: this module's API)
    select_checkpoints,
    select_forget,
    select_purge,
    select_raw,
)
from wm.memory.sheet import make_thumbnail
from wm.memory.store import Store
from wm.memory.usage import Usage, file_bytes, measure

BATCH = 500
RECENT_S = 6 * 3600   # checkpoint files younger than this belong to a night in progress
_log = log.get("wm.memory.retention")


@dataclass
class RetentionResult:
    purged: int                  # clips whose media was deleted in this run
    freed_bytes: int
    media_bytes: int             # clip media left on disk
    over_limit: bool = False     # still above max_gb (what is left is not in memory yet)
    total_bytes: int = 0         # everything counted against max_gb, after this run
    forgotten: int = 0           # memories of purged clips forgotten (their share was full)
    raw_deleted: int = 0         # ingested raw recordings deleted
    checkpoints_deleted: int = 0  # checkpoint files deleted
    deferred: int = 0            # clips left for a later run: a file unreadable or undeletable now


def media_files(paths: Paths, clip: ClipRecord) -> list[Path]:
    rel = [clip.video, clip.audio, *clip.frames]
    return [paths.data / r for r in rel if r]


def media_bytes(paths: Paths) -> int:
    """All clip media on disk (manifests and thumbnails are records, not media)."""
    return measure(paths).media


def _delete(files: list[Path]) -> tuple[int, bool]:
    """(bytes freed, every file gone)."""
    freed, clean = 0, True
    for f in files:
        try:
            size = f.stat().st_size
            f.unlink()
            freed += size
        except FileNotFoundError:
            pass
        except OSError as e:
            clean = False
            _log.warning("media_not_deleted", file=str(f), error=str(e),
                         note="tried again at the next retention")
    return freed, clean


def _unreadable_now(paths: Paths, clip: ClipRecord) -> str | None:
    """An I/O error (not absence, not damage) on the file its thumbnail is made from."""
    rel = clip.frames[len(clip.frames) // 2] if clip.frames else clip.audio
    if not rel:
        return None
    try:
        reading.read_file(paths.data / rel)
    except FileNotFoundError:
        return None
    except OSError as e:
        return str(e)
    return None


def _finish_pending(store: Store) -> tuple[int, int]:
    """Delete what earlier runs marked gone but did not finish; (bytes freed, clips left)."""
    freed, left, after = 0, 0, ""
    while page := store.purge_pending(BATCH, after):
        done = []
        for clip in page:
            n, clean = _delete(media_files(store.paths, clip))
            freed += n
            if clean:
                done.append(clip.clip_id)
        store.purge_done(done)
        left += len(page) - len(done)
        after = page[-1].clip_id
    return freed, left


def _checkpoints(settings: Settings, paths: Paths, store: Store, now: float,
                 result: RetentionResult) -> None:
    files = night_files(paths)
    if not files:
        return
    doomed = select_checkpoints(files, settings.retention.checkpoint_nights,
                                kept_checkpoints(paths, store.conn))
    # A file written in the last hours belongs to a night still training (`wm sleep
    # --date` of an older day): never pulled from under it.
    doomed = [p for p in doomed if _mtime(p) < now - RECENT_S]
    n, freed, problems = delete_checkpoints(paths, doomed)
    result.checkpoints_deleted += n
    result.freed_bytes += freed
    if problems:
        _log.warning("checkpoints_not_deleted", files=len(problems), first=problems[0])


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return float("inf")   # unreadable now: left alone


def _forget(settings: Settings, store: Store, usage: Usage, max_bytes: int,
            result: RetentionResult) -> bool:
    """Forget the oldest memories of purged clips while memories exceed their share."""
    r = settings.retention
    if usage.records <= r.memories_share * max_bytes:
        return False
    per_clip = usage.records // max(1, store.count())
    doomed = select_forget(forgettable(store, per_clip), usage.records, max_bytes,
                           r.memories_share)
    n, freed = forget(store, doomed)
    result.forgotten += n
    result.freed_bytes += freed
    if n:
        with store.writer():   # their vectors go now, not at the next night's commit
            maintain(settings, store, lambda: False)
    return n > 0


def _raw(settings: Settings, paths: Paths, now: float, over: int,
         result: RetentionResult) -> int:
    """Delete ingested raw recordings by age, then by size; returns the bytes freed."""
    r = settings.retention
    index = IngestIndex.read(paths)
    files = raw_files(paths, index)
    if over > 0 or any(not f.ingested and f.arrived < now - r.raw_days * 86400 for f in files):
        files = raw_files(paths, index, content_too=True)   # a copy under another name
    n, freed, problems = delete_raw(paths, select_raw(files, now, r.raw_days, over))
    result.raw_deleted += n
    result.freed_bytes += freed
    if problems:
        _log.warning("raw_not_deleted", files=len(problems), first=problems[0],
                     note="tried again at the next retention")
    return freed


def _thumbnail(paths: Paths, clip: ClipRecord) -> None:
    try:
        make_thumbnail(paths, clip)
    except (OSError, ValueError, EOFError, wave.Error) as e:
        # A damaged still or sound, or no room to write (a full disk is when retention
        # matters most): the media goes anyway and the memory shows no picture.
        _log.warning("thumbnail_not_made", clip=clip.clip_id, error=str(e))


def _purge_batch(store: Store, queue: Queue, batch: list[ClipRecord], now: float,
                 result: RetentionResult) -> None:
    keep = []
    for clip in batch:
        why = _unreadable_now(store.paths, clip)
        if why is not None:
            _log.warning("purge_deferred", clip=clip.clip_id, error=why,
                         note="its media stays until its still can be read for a thumbnail")
            result.deferred += 1
            continue
        _thumbnail(store.paths, clip)
        keep.append(clip)
    ids = [c.clip_id for c in keep]
    store.mark_media_gone(ids, now, pending=True)
    queue.mark(ids, PURGED)
    done = []
    for clip in keep:
        freed, clean = _delete(media_files(store.paths, clip))
        result.freed_bytes += freed
        if clean:
            done.append(clip.clip_id)
    store.purge_done(done)
    result.purged += len(keep)
    result.deferred += len(keep) - len(done)


def _purge_media(settings: Settings, store: Store, queue: Queue, total: int, now: float,
                 max_bytes: int, result: RetentionResult) -> None:
    r = settings.retention
    # Sizes are only needed when over the limit; otherwise only old clips are read.
    before = None if total > max_bytes else datetime.fromtimestamp(
        now - r.raw_days * 86400, timezone.utc).isoformat()
    present = ((c, file_bytes(media_files(store.paths, c))) for c in store.media_present(before))
    doomed = select_purge(present, total, now, r.raw_days, max_bytes)
    for i in range(0, len(doomed), BATCH):
        _purge_batch(store, queue, doomed[i:i + BATCH], now, result)


def apply_retention(settings: Settings, paths: Paths, now: float | None = None) -> RetentionResult:
    now = time.time() if now is None else now
    max_bytes = int(settings.retention.max_gb * 1e9)
    if not paths.memory_db.exists():
        u = measure(paths)
        return RetentionResult(0, 0, u.media, u.total > max_bytes, u.total)
    result = RetentionResult(0, 0, 0)
    with Store(paths) as store:
        queue = Queue(paths.memory_db)
        try:
            freed, _ = _finish_pending(store)
            result.freed_bytes += freed
            _checkpoints(settings, paths, store, now, result)
            usage = measure(paths, store.conn)
            if _forget(settings, store, usage, max_bytes, result):
                usage = measure(paths, store.conn)
            total = usage.total - _raw(settings, paths, now, usage.total - max_bytes, result)
            _purge_media(settings, store, queue, total, now, max_bytes, result)
            left = measure(paths, store.conn)
        finally:
            queue.close()
    result.media_bytes, result.total_bytes = left.media, left.total
    result.over_limit = left.total > max_bytes
    _report(settings, result, left)
    return result


def _report(settings: Settings, result: RetentionResult, left: Usage) -> None:
    r = settings.retention
    _log.info("retention", purged=result.purged, freed_mb=round(result.freed_bytes / 1e6, 1),
              media_mb=round(left.media / 1e6, 1), memories_mb=round(left.records / 1e6, 1),
              raw_mb=round(left.raw / 1e6, 1), checkpoints_mb=round(left.checkpoints / 1e6, 1),
              forgotten=result.forgotten, raw_deleted=result.raw_deleted,
              checkpoints_deleted=result.checkpoints_deleted, deferred=result.deferred,
              raw_days=r.raw_days, max_gb=r.max_gb)
    if result.over_limit:
        _log.warning("retention_over_limit", total_mb=round(left.total / 1e6, 1), max_gb=r.max_gb,
                     reason="the rest is not committed to memory or ingested yet")
