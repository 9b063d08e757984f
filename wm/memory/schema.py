"""The memory's tables, in the WAL database it shares with the queue and the model
versions. Vector shards are files (wm.memory.shards); these rows say which exist."""

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
