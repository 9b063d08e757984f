"""The memory's tables, in the WAL database it shares with the queue and the model
versions. Vector shards are files (wm.memory.shards); these rows say which exist."""
import sqlite3

SCHEMA = """
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
-- Clips whose media is still kept, by time: retention and re-embedding read these, never
-- the purged history in front of them.
CREATE INDEX IF NOT EXISTS memory_clips_present ON memory_clips(start) WHERE media_gone IS NULL;
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
CREATE INDEX IF NOT EXISTS memory_labels_clip ON memory_labels(clip_id);
-- Shard and index files no row uses any more, deleted once no query holds the readers'
-- lock (wm.memory.locks): a query may have listed them a moment before.
CREATE TABLE IF NOT EXISTS memory_retired (
    file    TEXT PRIMARY KEY,           -- relative to paths.embeddings, with its suffix
    retired REAL NOT NULL
);
-- Clips retention marked media-gone whose files are not all deleted yet (a crash, or a
-- file that could not be deleted now): the next run finishes them.
CREATE TABLE IF NOT EXISTS memory_purge_pending (
    clip_id TEXT PRIMARY KEY
);
-- Bytes on disk per day folder, valid while the folder's mtime is unchanged, so that
-- retention re-reads only the folders that changed (wm.memory.usage).
CREATE TABLE IF NOT EXISTS disk_usage (
    folder   TEXT PRIMARY KEY,          -- relative to the data root
    mtime_ns INTEGER NOT NULL,
    media    INTEGER NOT NULL,
    records  INTEGER NOT NULL
);
"""



def _has(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table,)).fetchone() is not None


def create_schema(conn: sqlite3.Connection) -> None:
    """The tables, made or brought up to date. A database made before memory_purge_pending
    existed may hold media-gone clips whose files a crashed run left: they become pending
    once, so the next retention finishes them."""
    upgrading = _has(conn, "memory_clips") and not _has(conn, "memory_purge_pending")
    conn.executescript(SCHEMA)
    if upgrading:
        conn.execute("INSERT OR IGNORE INTO memory_purge_pending(clip_id)"
                     " SELECT clip_id FROM memory_clips WHERE media_gone IS NOT NULL")
