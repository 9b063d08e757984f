"""The episodic memory on disk: SQLite rows (wm.memory.schema) say what exists; NumPy
shards (wm.memory.shards) hold the vectors.

Crash safety: a commit takes the database write lock, writes its arrays (fsync + rename),
then inserts every row and flips the queue state in the same transaction. A crash before
COMMIT leaves files no row names; wm.memory.maintenance.sweep_orphans deletes them at
the next commit."""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from wm.base.paths import Paths
from wm.base.queue import COMMITTED, open_queue_db, set_state
from wm.memory import locks
from wm.memory.clips import CLIP_COLS, STILL, Clip, ClipRecord, clip_key, record
from wm.memory.schema import create_schema
from wm.memory.shards import (
    KINDS,
    SHARD_COLS,
    IndexRecord,
    Shard,
    clip_keys_of,
    normalise,
    shard_files,
    still_keys,
    still_places,
    write_shard,
)

if TYPE_CHECKING:
    from wm.learn.embeddings import ClipEmbeddings, StillVectors

# Versions this memory saw before the given one.
_OLDER = ("SELECT version FROM memory_versions WHERE seq <"
          " (SELECT seq FROM memory_versions WHERE version = ?)")
_BATCH = 500   # ids per IN (...) list, under SQLite's limit on host parameters


class Store:
    def __init__(self, paths: Paths):
        self.paths = paths
        self.conn = open_queue_db(paths.memory_db)   # commit flips queue states too
        create_schema(self.conn)
        self._mapped: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.indexes: dict[str, object] = {}   # open ANN indexes by file (wm.memory.ann)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions and the single-writer lock ---------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front: nobody can commit the same clip
        between our check and our insert."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    @contextmanager
    def writer(self) -> Iterator[None]:
        """One commit/compaction/index builder at a time (orphan sweeping relies on it)."""
        with locks.writer_lock(self.paths):
            yield

    def reading(self):
        """Held by a query from listing shards to opening them (wm.memory.locks)."""
        return locks.reading(self.paths)

    # -- versions ----------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Model versions with vectors here, oldest first."""
        return [r[0] for r in self.conn.execute("SELECT version FROM memory_versions ORDER BY seq")]

    def register_version(self, version: str) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO memory_versions(version, seq, first_commit) VALUES"
            " (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM memory_versions), ?)",
            (version, time.time()))

    # -- clips -------------------------------------------------------------------------
    def _clips(self, where: str, params=()) -> list[ClipRecord]:
        return [record(r) for r in self.conn.execute(
            f"SELECT {CLIP_COLS} FROM memory_clips WHERE {where}", params)]

    def clip(self, clip_id: str) -> ClipRecord | None:
        found = self._clips("clip_id = ?", (clip_id,))
        return found[0] if found else None

    def clips_by_key(self, keys) -> dict[int, ClipRecord]:
        keys = [int(k) for k in keys]
        out: dict[int, ClipRecord] = {}
        for i in range(0, len(keys), _BATCH):
            part = keys[i:i + _BATCH]
            out.update((c.key, c) for c in self._clips(f"key IN ({','.join('?' * len(part))})", part))
        return out

    def clip_near(self, start_iso: str) -> tuple[ClipRecord | None, ClipRecord | None]:
        """The clips starting at or before and after an instant (ISO UTC)."""
        before = self._clips("start <= ? ORDER BY start DESC LIMIT 1", (start_iso,))
        after = self._clips("start > ? ORDER BY start LIMIT 1", (start_iso,))
        return (before[0] if before else None), (after[0] if after else None)

    def count(self, version: str | None = None, lo: str | None = None,
              hi: str | None = None) -> int:
        where, params = ["1"], []
        if version is not None:
            where.append("version = ?")
            params.append(version)
        if lo:
            where.append("date >= ?")
            params.append(lo)
        if hi:
            where.append("date <= ?")
            params.append(hi)
        return self.conn.execute(
            f"SELECT COUNT(*) FROM memory_clips WHERE {' AND '.join(where)}", params).fetchone()[0]

    def stale_clips(self, version: str, limit: int, before: str | None = None,
                    max_attempts: int | None = None, now: float = 0.0) -> list[ClipRecord]:
        """Clips whose newest vectors are from another version and whose media still exists,
        newest first (starting before `before`): the re-embedding worklist. With
        `max_attempts`, clips whose files failed to read are left out while they wait for
        their retry time (after `now`) and for good once they failed that many times."""
        waiting = ("" if max_attempts is None else
                   " AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.clip_id = memory_clips.clip_id"
                   " AND (q.attempts >= ? OR q.retry_after > ?))")
        extra = () if max_attempts is None else (max_attempts, now)
        return self._clips(f"version IN ({_OLDER}) AND media_gone IS NULL AND start < ?{waiting}"
                           " ORDER BY start DESC LIMIT ?", (version, before or "~", *extra, limit))

    def count_stale(self, version: str) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM memory_clips WHERE version IN ({_OLDER})"
                                 " AND media_gone IS NULL", (version,)).fetchone()[0]

    def live_keys(self, version: str, date: str) -> np.ndarray:
        """Keys of the clips whose current vectors are `version`'s, on one day."""
        rows = self.conn.execute("SELECT key FROM memory_clips WHERE date = ? AND version = ?",
                                 (date, version)).fetchall()
        return np.fromiter((r[0] for r in rows), np.int64, len(rows))

    def mark_media_gone(self, clip_ids: list[str], when: float, pending: bool = False) -> None:
        """Say these clips' media is gone; `pending`: retention is about to delete their
        files, and a run that stops half-way is finished by the next (purge_pending)."""
        with self.transaction() as c:
            c.executemany("UPDATE memory_clips SET media_gone = ? WHERE clip_id = ?",
                          [(when, cid) for cid in clip_ids])
            if pending:
                c.executemany("INSERT OR IGNORE INTO memory_purge_pending(clip_id) VALUES (?)",
                              [(cid,) for cid in clip_ids])

    def media_present(self, before: str | None = None) -> Iterator[ClipRecord]:
        """Clips in memory whose media has not been deleted, oldest first (only those
        starting before `before`, an ISO UTC time, if given)."""
        return self.clips_in_order("media_gone IS NULL AND start < ?", (before or "~",))

    def clips_in_order(self, where: str, params=()) -> Iterator[ClipRecord]:
        """Clips matching `where`, oldest first, read a page at a time: a year of clips
        need not all be in memory, and a caller that stops early reads no further."""
        last, key = "", -1
        while True:
            page = self._clips(f"{where} AND (start > ? OR (start = ? AND key > ?))"
                               " ORDER BY start, key LIMIT ?", (*params, last, last, key, _BATCH))
            yield from page
            if len(page) < _BATCH:
                return
            last, key = page[-1].start, page[-1].key

    def purge_pending(self, limit: int, after: str = "") -> list[ClipRecord]:
        """Clips marked media-gone whose files retention has not finished deleting, by
        clip id (the page after `after`)."""
        return self._clips("clip_id IN (SELECT clip_id FROM memory_purge_pending WHERE"
                           " clip_id > ? ORDER BY clip_id LIMIT ?) ORDER BY clip_id",
                           (after, limit))

    def purge_done(self, clip_ids: list[str]) -> None:
        with self.transaction() as c:
            c.executemany("DELETE FROM memory_purge_pending WHERE clip_id = ?",
                          [(cid,) for cid in clip_ids])

    # -- shards ------------------------------------------------------------------------
    def shards(self, version: str, kind: str, lo: str | None = None,
               hi: str | None = None) -> list[Shard]:
        sql = f"SELECT {SHARD_COLS} FROM memory_shards WHERE version = ? AND kind = ?"
        params: list = [version, kind]
        if lo:
            sql += " AND date >= ?"
            params.append(lo)
        if hi:
            sql += " AND date <= ?"
            params.append(hi)
        return [Shard(*r) for r in self.conn.execute(sql + " ORDER BY date, id", params)]

    def all_shards(self) -> list[Shard]:
        return [Shard(*r) for r in self.conn.execute(f"SELECT {SHARD_COLS} FROM memory_shards")]

    def shard_path(self, shard: Shard | str) -> tuple[Path, Path]:
        return shard_files(self.paths.embeddings, shard.file if isinstance(shard, Shard) else shard)

    def load(self, shard: Shard) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, keys), memory-mapped. Shard files never change, so a mapping is kept
        for the life of the Store: mapping afresh costs a page fault per 4 KiB on the
        next scan, as much as the scan itself."""
        if shard.file not in self._mapped:
            vec, keys = self.shard_path(shard)
            self._mapped[shard.file] = (np.load(vec, mmap_mode="r"), np.load(keys, mmap_mode="r"))
        return self._mapped[shard.file]

    def live_mask(self, shard: Shard, keys: np.ndarray) -> np.ndarray | None:
        """None when every row is live (the common case, costs nothing)."""
        if not shard.stale:
            return None
        return np.isin(clip_keys_of(keys, shard.kind), self.live_keys(shard.version, shard.date))

    def vector(self, clip: ClipRecord, version: str, kind: str) -> np.ndarray | None:
        """A clip's stored vector of one kind and version, if it has one."""
        for shard in self.shards(version, kind, clip.date, clip.date):
            vec, keys = self.load(shard)
            i = int(np.searchsorted(keys, clip.key))
            if i < len(keys) and keys[i] == clip.key:
                return np.array(vec[i])
        return None

    def insert_shard(self, version: str, date: str, kind: str, rel: str, rows: int, dim: int,
                     indexed: bool = False) -> None:
        self.conn.execute("INSERT INTO memory_shards(version, date, kind, file, rows, dim, indexed)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (version, date, kind, rel, rows, dim, int(indexed)))

    # -- commit ------------------------------------------------------------------------
    def add(self, version: str, clips: list[Clip], embeddings: ClipEmbeddings,
            before_rows=None) -> list[str]:
        """Store one batch embedded with `version` (row i of each kind of embeddings is
        clips[i]'s). New clips enter the memory and their queue state becomes committed;
        clips already here move to `version` (their older vectors stay on disk, marked
        stale). Returns the clip ids stored (a clip already holding `version`'s vectors is
        skipped). `before_rows` is called between the arrays and the rows (tests inject a
        crash there)."""
        with self.transaction() as c:
            self.register_version(version)
            keep, keys = self._enter(c, version, clips)
            if not keep:
                return []
            dates = np.asarray([clips[i].date for i in keep])
            rows = [(kind, embeddings.of(kind)[np.asarray(keep)], keys, dates) for kind in KINDS]
            if embeddings.stills is not None:
                rows.append((STILL, *_still_rows(embeddings.stills, keep, keys, dates)))
            written = []
            for kind, vecs, kind_keys, kind_dates in rows:
                present = ~np.isnan(vecs).any(1)
                for date in np.unique(kind_dates[present]):
                    sel = present & (kind_dates == date)
                    written.append((str(date), kind, *write_shard(
                        self.paths.embeddings, version, str(date), kind, kind_keys[sel],
                        normalise(vecs[sel]))))
            if before_rows is not None:
                before_rows()
            for date, kind, rel, rows, dim in written:
                self.insert_shard(version, date, kind, rel, rows, dim)
            stored = [clips[i].clip_id for i in keep]
            set_state(c, stored, COMMITTED)
            return stored

    def _enter(self, c: sqlite3.Connection, version: str,
               clips: list[Clip]) -> tuple[list[int], np.ndarray]:
        """Insert new clips and move known ones to `version`; returns the indices of the
        clips that need `version`'s vectors, and their keys."""
        have = {}
        for i in range(0, len(clips), _BATCH):
            part = [cl.clip_id for cl in clips[i:i + _BATCH]]
            for cid, *rest in c.execute(
                    f"SELECT clip_id, n, version, date FROM memory_clips WHERE clip_id IN"
                    f" ({','.join('?' * len(part))})", part):
                have[cid] = rest
        keep, keys = [], []
        for i, cl in enumerate(clips):
            old = have.get(cl.clip_id)
            if old is not None and old[1] == version:
                continue
            if old is None:
                n = c.execute(
                    "INSERT INTO memory_clips(clip_id, date, start, duration, manifest, video,"
                    " audio, frames, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (cl.clip_id, cl.date, cl.start, cl.duration, cl.manifest, cl.video,
                     cl.audio, json.dumps(list(cl.frames)), version)).lastrowid
                c.execute("UPDATE memory_clips SET key = ? WHERE n = ?", (clip_key(cl.date, n), n))
                keys.append(clip_key(cl.date, n))
            else:
                n, old_version, old_date = old
                c.execute("UPDATE memory_clips SET version = ? WHERE n = ?", (version, n))
                c.execute("UPDATE memory_shards SET stale = 1 WHERE version = ? AND date = ?",
                          (old_version, old_date))
                keys.append(clip_key(old_date, n))
            keep.append(i)
        return keep, np.asarray(keys, np.int64)

    # -- ANN index records -------------------------------------------------------------
    def index(self, version: str, kind: str) -> IndexRecord | None:
        row = self.conn.execute("SELECT version, kind, file, rows, trained_rows, nprobe, recall"
                                " FROM memory_indexes WHERE version = ? AND kind = ?",
                                (version, kind)).fetchone()
        return IndexRecord(*row) if row else None


def _still_rows(stills: StillVectors, keep: list[int], keys: np.ndarray,
                dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, still keys, dates) of the stills of the clips in `keep` (clip keep[j] has
    key keys[j]), at most MAX_STILLS per clip, in the clip's order."""
    vecs, out_keys, out_dates = [], [], []
    for j, clip in enumerate(keep):
        mine = np.flatnonzero(stills.clip == clip)
        mine = mine[still_places(len(mine))]
        vecs.append(stills.vectors[mine])
        out_keys.append(still_keys(np.full(len(mine), keys[j]), np.arange(len(mine))))
        out_dates.append(np.full(len(mine), dates[j]))
    return np.concatenate(vecs), np.concatenate(out_keys), np.concatenate(out_dates)
