"""Forgetting a memory whose media is already gone: its manifest, thumbnail, rows and
vectors. Retention does this to the oldest ones only while memories use more than their
share of retention.max_gb (wm.memory.retention_rules).

Order: the files first, then the rows in one transaction. A crash in between leaves a
row whose thumbnail is gone (shown as "media deleted", and forgotten again by the next
run), never a manifest without a row that a rescan would queue again. The clip's vector
rows become dead rows of their shards, which are marked stale; compaction (run right
after by retention) rewrites them without."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from wm.base import log
from wm.base.paths import Paths
from wm.memory.clips import ClipRecord
from wm.memory.store import Store
from wm.memory.usage import file_bytes

_PAGE = 500
_log = log.get("wm.memory.retention")

# Clips whose media is gone, which are not the example of a taught word, nor waiting for
# retention to finish deleting their media, nor the newest row (SQLite may hand a deleted
# largest row number out again, and keys are made from it).
_FORGETTABLE = ("media_gone IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM memory_labels l WHERE l.clip_id = memory_clips.clip_id)"
                " AND NOT EXISTS (SELECT 1 FROM memory_purge_pending p"
                " WHERE p.clip_id = memory_clips.clip_id)"
                " AND n < (SELECT MAX(n) FROM memory_clips)")


def record_files(paths: Paths, clip: ClipRecord) -> list[Path]:
    return [paths.data / clip.manifest, paths.thumbnail(clip.date, clip.clip_id)]


def forgettable(store: Store, per_clip: int) -> Iterator[tuple[ClipRecord, int]]:
    """(clip, bytes its memory holds: `per_clip`, an average) oldest first, read only as
    far as the caller goes."""
    return ((c, per_clip) for c in store.clips_in_order(_FORGETTABLE))


def forget(store: Store, clips: list[ClipRecord]) -> tuple[int, int]:
    """Forget these clips; (how many, bytes of files freed). A clip whose manifest or
    thumbnail cannot be deleted now stays, to be forgotten at a later run."""
    done, freed = [], 0
    for clip in clips:
        try:
            for f in record_files(store.paths, clip):
                size = file_bytes([f])
                f.unlink(missing_ok=True)
                freed += size
        except OSError as e:
            _log.warning("memory_not_forgotten", clip=clip.clip_id, error=str(e),
                         note="tried again at the next retention")
            continue
        done.append(clip)
    for i in range(0, len(done), _PAGE):
        _drop_rows(store, done[i:i + _PAGE])
    return len(done), freed


def _drop_rows(store: Store, clips: list[ClipRecord]) -> None:
    ids = [(c.clip_id,) for c in clips]
    with store.transaction() as c:
        for table in ("memory_clips", "memory_labels", "memory_purge_pending", "queue"):
            c.executemany(f"DELETE FROM {table} WHERE clip_id = ?", ids)
        c.executemany("UPDATE memory_shards SET stale = 1 WHERE date = ?",
                      [(d,) for d in {cl.date for cl in clips}])
