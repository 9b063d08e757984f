"""Model versions: one row per finished night in the `model_versions` table of the memory
database. A version is recorded only when all three models finished training; it is
promoted (used for embedding and search) only when none of them collapsed.

Each row keeps the sha256 of its model file (NULL: recorded before checksums were kept,
so only the file's presence can be checked). A version whose file turned out missing or
corrupt is marked broken with the reason: a state the nights step around, never a
deleted row, so `wm check` and a person can still see what was lost."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

from wm.base.db import connect
from wm.base.paths import Paths

_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_versions (
    version    TEXT PRIMARY KEY,
    date       TEXT NOT NULL,
    created    TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    promoted   INTEGER NOT NULL,
    sha256     TEXT,
    broken     TEXT
);
"""
# Columns added after the first release: databases made before get them on first use.
_ADDED = {"sha256": "TEXT", "broken": "TEXT"}
_COLUMNS = "version, date, created, checkpoint, promoted, sha256, broken"


@dataclass(frozen=True)
class ModelVersion:
    version: str       # "{date}.{n}": the n-th model trained on that night's date
    date: str
    created: str       # ISO 8601 UTC
    checkpoint: str    # path relative to the data root (paths.root)
    promoted: bool
    sha256: str | None = None   # of the model file; None: not recorded
    broken: str | None = None   # why its file cannot be used; None: usable


def _connect(paths: Paths) -> sqlite3.Connection:
    conn = connect(paths.memory_db)
    conn.executescript(_SCHEMA)
    have = {r[1] for r in conn.execute("PRAGMA table_info(model_versions)")}
    for name, kind in _ADDED.items():
        if name not in have:
            try:
                conn.execute(f"ALTER TABLE model_versions ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as e:
                if "duplicate column" not in str(e):   # another process added it first
                    raise
    return conn


def _rows(paths: Paths, where: str = "", params=(), order: str = "created, version") -> list[ModelVersion]:
    conn = _connect(paths)
    try:
        sql = f"SELECT {_COLUMNS} FROM model_versions {where} ORDER BY {order}"
        return [ModelVersion(v, d, c, ck, bool(p), sha, broken)
                for v, d, c, ck, p, sha, broken in conn.execute(sql, params)]
    finally:
        conn.close()


def all_versions(paths: Paths) -> list[ModelVersion]:
    """Every recorded version, oldest first (promoted or not, broken or not)."""
    return _rows(paths)


def usable_promoted(paths: Paths) -> list[ModelVersion]:
    """Promoted versions not marked broken, newest first: the first is the one in use, the
    others are what to fall back on when its file fails."""
    return _rows(paths, "WHERE promoted = 1 AND broken IS NULL", order="created DESC, version DESC")


def latest_version(paths: Paths) -> ModelVersion | None:
    """The newest promoted version not marked broken: the one the memory embeds with."""
    rows = usable_promoted(paths)
    return rows[0] if rows else None


def next_version_name(paths: Paths, date: str) -> str:
    n = len(_rows(paths, "WHERE date = ?", (date,)))
    return f"{date}.{n + 1}"


def record_version(paths: Paths, version: str, date: str, checkpoint: str, promoted: bool,
                   sha256: str | None = None) -> ModelVersion:
    created = datetime.now(timezone.utc).isoformat()
    conn = _connect(paths)
    try:
        conn.execute(f"INSERT INTO model_versions({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                     (version, date, created, checkpoint, int(promoted), sha256))
    finally:
        conn.close()
    return ModelVersion(version, date, created, checkpoint, promoted, sha256)


def mark_broken(paths: Paths, version: str, reason: str) -> None:
    """Keep a version out of use because its file is missing or corrupt (the row stays)."""
    conn = _connect(paths)
    try:
        conn.execute("UPDATE model_versions SET broken = ? WHERE version = ?", (reason, version))
    finally:
        conn.close()
