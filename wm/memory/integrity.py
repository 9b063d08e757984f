"""Is every memory file the database points at there and whole? For `wm check`: a shard
row whose .npy files are missing or hold fewer rows than the row says (a disk that lost
writes, a file deleted by hand), and an ANN index row whose file is gone."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wm.memory.shards import Shard
from wm.memory.store import Store


@dataclass(frozen=True)
class DamagedShard:
    shard: Shard
    reason: str


def _shape(path) -> tuple[int, ...]:
    """The array shape, mapped not read (a file shorter than its header says fails)."""
    return np.load(path, mmap_mode="r").shape


def damaged_shards(store: Store) -> list[DamagedShard]:
    out = []
    for shard in store.all_shards():
        vec, keys = store.shard_path(shard)
        try:
            vshape, kshape = _shape(vec), _shape(keys)
        except FileNotFoundError as e:
            out.append(DamagedShard(shard, f"{e.filename} is missing"))
            continue
        except (OSError, ValueError) as e:
            out.append(DamagedShard(shard, f"unreadable: {e}"))
            continue
        if vshape != (shard.rows, shard.dim) or kshape != (shard.rows,):
            out.append(DamagedShard(shard, f"holds {vshape} vectors and {kshape} keys,"
                                           f" the database says {shard.rows} x {shard.dim}"))
    return out


def drop_shard(store: Store, shard: Shard) -> None:
    """Forget a damaged shard's row (its clips keep their other vectors and their media,
    and are embedded again by the next version); the queries that failed on it work again."""
    with store.transaction() as c:
        c.execute("DELETE FROM memory_shards WHERE id = ?", (shard.id,))
        _unindex(c, shard.version, shard.kind)


def missing_indexes(store: Store) -> list[tuple[str, str, str]]:
    """(version, kind, file) of ANN index rows whose file is gone (rebuilt by the next
    maintenance once the row is dropped; exact search answers meanwhile)."""
    rows = store.conn.execute("SELECT version, kind, file FROM memory_indexes").fetchall()
    return [(v, k, f) for v, k, f in rows if not (store.paths.embeddings / f).exists()]


def drop_index(store: Store, version: str, kind: str) -> None:
    with store.transaction() as c:
        _unindex(c, version, kind)


def _unindex(c, version: str, kind: str) -> None:
    """Without its index, a version's shards are searched exactly until it is rebuilt."""
    c.execute("DELETE FROM memory_indexes WHERE version = ? AND kind = ?", (version, kind))
    c.execute("UPDATE memory_shards SET indexed = 0 WHERE version = ? AND kind = ?", (version, kind))
