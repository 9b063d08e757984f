"""Keeping the shards tidy, under store.writer(): merging a night's small per-batch shards,
and deleting the files a crashed commit left behind."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wm.memory.shards import write_shard
from wm.memory.store import Store


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
            m = np.isin(k, live)
            vecs.append(np.asarray(x)[m])
            keys.append(np.asarray(k)[m])
        allk = np.concatenate(keys)
        with store.transaction() as c:
            if len(allk):
                rel, rows, dim = write_shard(store.paths.embeddings, v, date, kind, allk,
                                             np.concatenate(vecs))
                store.insert_shard(v, date, kind, rel, rows, dim, indexed=bool(indexed))
            c.executemany("DELETE FROM memory_shards WHERE id = ?", [(s.id,) for s in parts])
        for s in parts:
            for p in store.shard_path(s):
                p.unlink(missing_ok=True)
        merged += len(parts) - (1 if len(allk) else 0)
    return merged


def sweep_orphans(store: Store) -> list[Path]:
    """Delete files under embeddings/ that no row names: what a crashed commit left."""
    root = store.paths.embeddings
    if not root.exists():
        return []
    known = set()
    for (rel,) in store.conn.execute("SELECT file FROM memory_shards"):
        known.update(store.shard_path(rel))
    known.update(root / r for (r,) in store.conn.execute("SELECT file FROM memory_indexes"))
    removed = []
    for p in root.rglob("*"):
        if p.is_file() and p.name != ".writer.lock" and p not in known:
            p.unlink()
            removed.append(p)
    return removed
