"""The episodic memory on disk: SQLite rows (in the same WAL database as the queue and the
model versions) say what exists; NumPy shards hold the vectors.

A shard is one immutable pair of .npy files under paths.embeddings,
`{version}/{date}/{kind}-{token}.npy` (float32, L2-normalised rows, sorted by key) and
`....keys.npy` (int64 clip keys), for one model version, one local day and one kind of
vector. Date and modality filters therefore choose files, and queries memory-map them.

Crash safety: a commit takes the database write lock, writes its arrays (fsync + rename),
then inserts every row and flips the queue state in the same transaction. A crash before
COMMIT leaves files no row names; `sweep_orphans` deletes them at the next commit."""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path
from typing import Iterator

import numpy as np

from wm.base.atomic import fsync_dir, write_atomically
from wm.base.paths import Paths
from wm.base.queue import COMMITTED, open_queue_db, set_state

# The vectors kept per clip: each encoder's own space, the two aligned views in the shared
# space, and `shared`, the normalised sum of the two aligned views (a clip as seen and heard).
KINDS = ("video", "audio", "shared_video", "shared_audio", "shared")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_clips (
    n          INTEGER PRIMARY KEY,
    key        INTEGER UNIQUE,          -- (date ordinal << 32) | n: orders by local day
    clip_id    TEXT UNIQUE NOT NULL,
    date       TEXT NOT NULL,
    start      TEXT NOT NULL,           -- ISO 8601 UTC
    duration   REAL NOT NULL,
    manifest   TEXT NOT NULL,           -- relative to the data folder, like the queue's
    video      TEXT,
    audio      TEXT,
    frames     TEXT NOT NULL,           -- JSON list
    version    TEXT NOT NULL,           -- newest model version it is embedded with
    media_gone REAL                     -- when retention deleted its media; NULL: present
);
CREATE INDEX IF NOT EXISTS memory_clips_date ON memory_clips(date, version);
CREATE INDEX IF NOT EXISTS memory_clips_version ON memory_clips(version, date);
CREATE INDEX IF NOT EXISTS memory_clips_start ON memory_clips(start);
CREATE TABLE IF NOT EXISTS memory_versions (
    version      TEXT PRIMARY KEY,
    seq          INTEGER UNIQUE NOT NULL,  -- order in which this memory first saw it
    first_commit REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS memory_shards (
    id         INTEGER PRIMARY KEY,
    version    TEXT NOT NULL,
    date       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    file       TEXT UNIQUE NOT NULL,    -- relative to paths.embeddings, without .npy
    rows       INTEGER NOT NULL,
    dim        INTEGER NOT NULL,
    stale      INTEGER NOT NULL DEFAULT 0,  -- holds rows of clips since re-embedded
    indexed    INTEGER NOT NULL DEFAULT 0   -- its rows are in the version's ANN index
);
CREATE INDEX IF NOT EXISTS memory_shards_vk ON memory_shards(version, kind, date);
CREATE TABLE IF NOT EXISTS memory_indexes (
    version      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    file         TEXT UNIQUE NOT NULL,  -- relative to paths.embeddings
    rows         INTEGER NOT NULL,
    trained_rows INTEGER NOT NULL,
    nprobe       INTEGER NOT NULL,
    recall       REAL NOT NULL,         -- recall@10 against exact measured at build
    PRIMARY KEY (version, kind)
);
CREATE TABLE IF NOT EXISTS memory_labels (
    word    TEXT NOT NULL,
    clip_id TEXT NOT NULL,
    added   REAL NOT NULL,
    PRIMARY KEY (word, clip_id)
);
"""


@dataclass(frozen=True)
class ClipRecord:
    key: int
    clip_id: str
    date: str
    start: str
    duration: float
    manifest: str
    video: str | None
    audio: str | None
    frames: tuple[str, ...]
    version: str
    media_gone: float | None

    @property
    def has_video(self) -> bool:
        return bool(self.frames)

    @property
    def has_audio(self) -> bool:
        return self.audio is not None


# Versions this memory saw before the given one.
_OLDER = ("SELECT version FROM memory_versions WHERE seq <"
          " (SELECT seq FROM memory_versions WHERE version = ?)")

_CLIP_COLS = "key, clip_id, date, start, duration, manifest, video, audio, frames, version, media_gone"


def _clip(row) -> ClipRecord:
    return ClipRecord(*row[:8], tuple(json.loads(row[8])), row[9], row[10])


@dataclass(frozen=True)
class NewClip:
    """A clip about to enter the memory (fields from its manifest)."""
    clip_id: str
    date: str
    start: str
    duration: float
    manifest: str
    video: str | None
    audio: str | None
    frames: tuple[str, ...]


@dataclass(frozen=True)
class Shard:
    id: int
    version: str
    date: str
    kind: str
    file: str
    rows: int
    dim: int
    stale: bool
    indexed: bool


_SHARD_COLS = "id, version, date, kind, file, rows, dim, stale, indexed"


@dataclass(frozen=True)
class IndexRecord:
    version: str
    kind: str
    file: str
    rows: int
    trained_rows: int
    nprobe: int
    recall: float


def date_key_range(lo: str | None, hi: str | None) -> tuple[int, int]:
    """Keys of clips filed under local days lo..hi (inclusive): a half-open key range."""
    start = Date.fromisoformat(lo).toordinal() << 32 if lo else 0
    end = (Date.fromisoformat(hi).toordinal() + 1) << 32 if hi else 1 << 62
    return start, end


def _key(date: str, n: int) -> int:
    return (Date.fromisoformat(date).toordinal() << 32) | n


def _safe(version: str) -> str:
    """A version as a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in version) or "_"


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fused_shared(shared_video: np.ndarray, shared_audio: np.ndarray) -> np.ndarray:
    """A clip as seen and heard: the normalised sum of whichever aligned views it has."""
    total = np.nan_to_num(shared_video) + np.nan_to_num(shared_audio)
    out = normalise(total)
    out[np.isnan(shared_video).any(1) & np.isnan(shared_audio).any(1)] = np.nan
    return out




def save_array(path: Path, arr: np.ndarray) -> None:
    """A reader sees the whole array or nothing."""
    write_atomically(path, lambda f: np.save(f, arr))


class Store:
    def __init__(self, paths: Paths):
        self.paths = paths
        self.conn = open_queue_db(paths.memory_db)   # commit flips queue states too
        self.conn.executescript(_SCHEMA)
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
        self.paths.embeddings.mkdir(parents=True, exist_ok=True)
        with open(self.paths.embeddings / ".writer.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

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
    def clip(self, clip_id: str) -> ClipRecord | None:
        row = self.conn.execute(f"SELECT {_CLIP_COLS} FROM memory_clips WHERE clip_id = ?",
                                (clip_id,)).fetchone()
        return _clip(row) if row else None

    def clips_by_key(self, keys) -> dict[int, ClipRecord]:
        keys = [int(k) for k in keys]
        out: dict[int, ClipRecord] = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            sql = f"SELECT {_CLIP_COLS} FROM memory_clips WHERE key IN ({','.join('?' * len(part))})"
            out.update((r[0], _clip(r)) for r in self.conn.execute(sql, part))
        return out

    def clip_near(self, start_iso: str) -> tuple[ClipRecord | None, ClipRecord | None]:
        """The clips starting at or before and after an instant (ISO UTC)."""
        before = self.conn.execute(
            f"SELECT {_CLIP_COLS} FROM memory_clips WHERE start <= ? ORDER BY start DESC LIMIT 1",
            (start_iso,)).fetchone()
        after = self.conn.execute(
            f"SELECT {_CLIP_COLS} FROM memory_clips WHERE start > ? ORDER BY start LIMIT 1",
            (start_iso,)).fetchone()
        return (_clip(before) if before else None), (_clip(after) if after else None)

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

    def stale_clips(self, version: str, limit: int, before: str | None = None) -> list[ClipRecord]:
        """Clips whose newest vectors are from another version and whose media still exists,
        newest first (starting before `before`): the re-embedding worklist."""
        rows = self.conn.execute(
            f"SELECT {_CLIP_COLS} FROM memory_clips WHERE version IN ({_OLDER}) AND"
            " media_gone IS NULL AND start < ? ORDER BY start DESC LIMIT ?",
            (version, before or "~", limit))
        return [_clip(r) for r in rows]

    def count_stale(self, version: str) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM memory_clips WHERE version IN ({_OLDER})"
                                 " AND media_gone IS NULL", (version,)).fetchone()[0]

    def live_keys(self, version: str, date: str) -> np.ndarray:
        """Keys of the clips whose current vectors are `version`'s, on one day."""
        rows = self.conn.execute("SELECT key FROM memory_clips WHERE date = ? AND version = ?",
                                 (date, version)).fetchall()
        return np.fromiter((r[0] for r in rows), np.int64, len(rows))

    def mark_media_gone(self, clip_ids: list[str], when: float) -> None:
        with self.transaction() as c:
            c.executemany("UPDATE memory_clips SET media_gone = ? WHERE clip_id = ?",
                          [(when, cid) for cid in clip_ids])

    def media_present(self, before: str | None = None) -> Iterator[ClipRecord]:
        """Clips in memory whose media has not been deleted, oldest first (only those
        starting before `before`, an ISO UTC time, if given)."""
        rows = self.conn.execute(f"SELECT {_CLIP_COLS} FROM memory_clips WHERE media_gone IS NULL"
                                 " AND start < ? ORDER BY start", (before or "~",)).fetchall()
        return (_clip(r) for r in rows)

    def media_gone(self) -> list[ClipRecord]:
        rows = self.conn.execute(f"SELECT {_CLIP_COLS} FROM memory_clips WHERE media_gone IS NOT"
                                 " NULL ORDER BY start")
        return [_clip(r) for r in rows]

    # -- shards ------------------------------------------------------------------------
    def shards(self, version: str, kind: str, lo: str | None = None,
               hi: str | None = None) -> list[Shard]:
        sql = f"SELECT {_SHARD_COLS} FROM memory_shards WHERE version = ? AND kind = ?"
        params: list = [version, kind]
        if lo:
            sql += " AND date >= ?"
            params.append(lo)
        if hi:
            sql += " AND date <= ?"
            params.append(hi)
        return [Shard(*r) for r in self.conn.execute(sql + " ORDER BY date, id", params)]

    def all_shards(self) -> list[Shard]:
        return [Shard(*r) for r in self.conn.execute(f"SELECT {_SHARD_COLS} FROM memory_shards")]

    def shard_path(self, shard: Shard | str) -> tuple[Path, Path]:
        rel = shard.file if isinstance(shard, Shard) else shard
        base = self.paths.embeddings / rel
        return base.with_name(base.name + ".npy"), base.with_name(base.name + ".keys.npy")

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
        return np.isin(keys, self.live_keys(shard.version, shard.date))

    def vector(self, clip: ClipRecord, version: str, kind: str) -> np.ndarray | None:
        """A clip's stored vector of one kind and version, if it has one."""
        for shard in self.shards(version, kind, clip.date, clip.date):
            vec, keys = self.load(shard)
            i = int(np.searchsorted(keys, clip.key))
            if i < len(keys) and keys[i] == clip.key:
                return np.array(vec[i])
        return None

    def _write_shard(self, version: str, date: str, kind: str, keys: np.ndarray,
                     vecs: np.ndarray) -> tuple[str, int, int]:
        order = np.argsort(keys, kind="stable")
        token = f"{time.time_ns():x}{os.getpid():x}"
        rel = f"{_safe(version)}/{date}/{kind}-{token}"
        vec_path, key_path = self.shard_path(rel)
        save_array(vec_path, np.ascontiguousarray(vecs[order], np.float32))
        save_array(key_path, np.ascontiguousarray(keys[order], np.int64))
        fsync_dir(vec_path.parent)
        return rel, len(keys), vecs.shape[1]

    def _insert_shard(self, version: str, date: str, kind: str, rel: str, rows: int, dim: int,
                      indexed: bool = False) -> None:
        self.conn.execute("INSERT INTO memory_shards(version, date, kind, file, rows, dim, indexed)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (version, date, kind, rel, rows, dim, int(indexed)))

    # -- commit ------------------------------------------------------------------------
    def add(self, version: str, clips: list[NewClip], vectors: dict[str, np.ndarray],
            before_rows=None) -> list[str]:
        """Store one batch embedded with `version`: `vectors[kind]` is (len(clips), D) with
        NaN rows where a clip lacks that kind. New clips enter the memory and their queue
        state becomes committed; clips already here move to `version` (their older vectors
        stay on disk, marked stale). Returns the clip ids stored (a clip already holding
        `version`'s vectors is skipped). `before_rows` is called between the arrays and the
        rows (tests inject a crash there)."""
        with self.transaction() as c:
            self.register_version(version)
            have = {}
            for i in range(0, len(clips), 500):
                part = [cl.clip_id for cl in clips[i:i + 500]]
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
                    c.execute("UPDATE memory_clips SET key = ? WHERE n = ?", (_key(cl.date, n), n))
                    keys.append(_key(cl.date, n))
                else:
                    n, old_version, old_date = old
                    c.execute("UPDATE memory_clips SET version = ? WHERE n = ?", (version, n))
                    c.execute("UPDATE memory_shards SET stale = 1 WHERE version = ? AND date = ?",
                              (old_version, old_date))
                    keys.append(_key(old_date, n))
                keep.append(i)
            if not keep:
                return []
            idx = np.asarray(keep)
            key_arr = np.asarray(keys, np.int64)
            dates = np.asarray([clips[i].date for i in keep])
            written = []
            for kind in KINDS:
                vecs = np.asarray(vectors[kind], np.float32)[idx]
                present = ~np.isnan(vecs).any(1)
                for date in np.unique(dates[present]):
                    sel = present & (dates == date)
                    written.append((str(date), kind, *self._write_shard(
                        version, str(date), kind, key_arr[sel], normalise(vecs[sel]))))
            if before_rows is not None:
                before_rows()
            for date, kind, rel, rows, dim in written:
                self._insert_shard(version, date, kind, rel, rows, dim)
            set_state(c, [clips[i].clip_id for i in keep], COMMITTED)
            return [clips[i].clip_id for i in keep]

    # -- maintenance -------------------------------------------------------------------
    def compact(self, version: str | None = None) -> int:
        """Merge each (version, day, kind)'s small per-batch shards into one, dropping stale
        rows already out of any index. Returns how many shards were merged away."""
        groups = self.conn.execute(
            "SELECT version, date, kind, indexed FROM memory_shards"
            + (" WHERE version = ?" if version else "")
            + " GROUP BY version, date, kind, indexed HAVING COUNT(*) > 1 OR MAX(stale) = 1",
            (version,) if version else ()).fetchall()
        merged = 0
        for v, date, kind, indexed in groups:
            parts = [s for s in self.shards(v, kind, date, date) if s.indexed == bool(indexed)]
            live = self.live_keys(v, date)
            vecs, keys = [], []
            for s in parts:
                x, k = self.load(s)
                m = np.isin(k, live)
                vecs.append(np.asarray(x)[m])
                keys.append(np.asarray(k)[m])
            allk = np.concatenate(keys)
            with self.transaction() as c:
                if len(allk):
                    rel, rows, dim = self._write_shard(v, date, kind, allk, np.concatenate(vecs))
                    self._insert_shard(v, date, kind, rel, rows, dim, indexed=bool(indexed))
                c.executemany("DELETE FROM memory_shards WHERE id = ?", [(s.id,) for s in parts])
            for s in parts:
                for p in self.shard_path(s):
                    p.unlink(missing_ok=True)
            merged += len(parts) - (1 if len(allk) else 0)
        return merged

    def sweep_orphans(self) -> list[Path]:
        """Delete files under embeddings/ that no row names: what a crashed commit left."""
        root = self.paths.embeddings
        if not root.exists():
            return []
        known = set()
        for (rel,) in self.conn.execute("SELECT file FROM memory_shards"):
            known.update(self.shard_path(rel))
        known.update(root / r for (r,) in self.conn.execute("SELECT file FROM memory_indexes"))
        removed = []
        for p in root.rglob("*"):
            if p.is_file() and p.name != ".writer.lock" and p not in known:
                p.unlink()
                removed.append(p)
        return removed

    # -- ANN index records -------------------------------------------------------------
    def index(self, version: str, kind: str) -> IndexRecord | None:
        row = self.conn.execute("SELECT version, kind, file, rows, trained_rows, nprobe, recall"
                                " FROM memory_indexes WHERE version = ? AND kind = ?",
                                (version, kind)).fetchone()
        return IndexRecord(*row) if row else None

    def set_index(self, rec: IndexRecord, shard_ids: list[int]) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO memory_indexes VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (rec.version, rec.kind, rec.file, rec.rows, rec.trained_rows, rec.nprobe,
                       rec.recall))
            c.executemany("UPDATE memory_shards SET indexed = 1 WHERE id = ?",
                          [(i,) for i in shard_ids])

    def index_dir(self, version: str) -> Path:
        return self.paths.embeddings / _safe(version) / "index"

    # -- labels ------------------------------------------------------------------------
    def add_label(self, word: str, clip_id: str) -> bool:
        cur = self.conn.execute("INSERT OR IGNORE INTO memory_labels VALUES (?, ?, ?)",
                                (word, clip_id, time.time()))
        return cur.rowcount == 1

    def remove_label(self, word: str, clip_id: str) -> bool:
        cur = self.conn.execute("DELETE FROM memory_labels WHERE word = ? AND clip_id = ?",
                                (word, clip_id))
        return cur.rowcount == 1

    def words(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for word, cid in self.conn.execute("SELECT word, clip_id FROM memory_labels"
                                           " ORDER BY word, added"):
            out.setdefault(word, []).append(cid)
        return out
