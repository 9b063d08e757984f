"""Keeping the shards tidy, under store.writer(): merging a night's small per-batch shards,
updating the ANN indexes, and deleting the files a crashed commit left behind.

Files that rows stop naming (merged shards, replaced indexes) are *retired*, not deleted:
a query may have listed them a moment ago and be about to open them. They are deleted
when no query holds the readers' lock (wm.memory.locks), at once in the usual case, or
at a later maintenance pass."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from wm.base.config import Settings
from wm.memory import ann
from wm.memory.retired import reap_retired, retire
from wm.memory.shards import SHARD_KINDS, clip_keys_of, write_shard
from wm.memory.store import Store


def maintain(settings: Settings, store: Store, should_stop: Callable[[], bool]) -> None:
    """Index every version whose vectors changed, then merge small shards. Both may be
    skipped or cut short safely: queries scan unindexed shards exactly."""
    mem = settings.memory
    for v in store.versions():
        for kind in SHARD_KINDS:
            if should_stop():
                return
            ann.sync_index(store, v, kind, mem.ann_min_rows, mem.ann_nprobe, settings.learn.seed)
    compact(store)


def _shard_rels(store: Store, shard) -> list[str]:
    return [str(p.relative_to(store.paths.embeddings)) for p in store.shard_path(shard)]


def compact(store: Store, version: str | None = None) -> int:
    """Merge each (version, day, kind)'s small per-batch shards into one, dropping stale
    rows already out of any index. Returns how many shards were merged away."""
    groups = store.conn.execute(
        "SELECT version, date, kind, indexed FROM memory_shards"
        + (" WHERE version = ?" if version else "")
        + " GROUP BY version, date, kind, indexed HAVING COUNT(*) > 1 OR MAX(stale) = 1",
        (version,) if version else ()).fetchall()
    merged = 0
    for v, date, kind, indexed in groups:
        parts = [s for s in store.shards(v, kind, date, date) if s.indexed == bool(indexed)]
        live = store.live_keys(v, date)
        vecs, keys = [], []
        for s in parts:
            x, k = store.load(s)
            m = np.isin(clip_keys_of(k, kind), live)
            vecs.append(np.asarray(x)[m])
            keys.append(np.asarray(k)[m])
        allk = np.concatenate(keys)
        with store.transaction() as c:
            if len(allk):
                rel, rows, dim = write_shard(store.paths.embeddings, v, date, kind, allk,
                                             np.concatenate(vecs))
                store.insert_shard(v, date, kind, rel, rows, dim, indexed=bool(indexed))
            c.executemany("DELETE FROM memory_shards WHERE id = ?", [(s.id,) for s in parts])
            retire(c, [r for s in parts for r in _shard_rels(store, s)])
        merged += len(parts) - (1 if len(allk) else 0)
    reap_retired(store)
    return merged


def sweep_orphans(store: Store) -> list[Path]:
    """Delete files under embeddings/ that no row names: what a crashed commit left.
    Retired files are named by their own rows and go through reap_retired."""
    root = store.paths.embeddings
    if not root.exists():
        return []
    known = set()
    for (rel,) in store.conn.execute("SELECT file FROM memory_shards"):
        known.update(store.shard_path(rel))
    known.update(root / r for (r,) in store.conn.execute("SELECT file FROM memory_indexes"))
    known.update(root / r for (r,) in store.conn.execute("SELECT file FROM memory_retired"))
    removed = []
    for p in root.rglob("*"):
        if p.is_file() and p != store.paths.memory_writer_lock and p not in known:
            p.unlink()
            removed.append(p)
    reap_retired(store)
    return removed
