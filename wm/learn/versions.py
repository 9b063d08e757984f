"""Model versions: one row per finished night in the `model_versions` table of the memory
database. A version is recorded only when all three models finished training; it is
promoted (used for embedding and search) only when none of them collapsed."""
from __future__ import annotations

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
    promoted   INTEGER NOT NULL
);
"""
_COLUMNS = "version, date, created, checkpoint, promoted"


@dataclass(frozen=True)
class ModelVersion:
    version: str       # "{date}.{n}": the n-th model trained on that night's date
    date: str
    created: str       # ISO 8601 UTC
    checkpoint: str    # path relative to the data root (paths.root)
    promoted: bool


def _rows(paths: Paths, sql: str, params=()) -> list[ModelVersion]:
    conn = connect(paths.memory_db)
    try:
        conn.executescript(_SCHEMA)
        return [ModelVersion(v, d, c, ck, bool(p)) for v, d, c, ck, p in conn.execute(sql, params)]
    finally:
        conn.close()


def all_versions(paths: Paths) -> list[ModelVersion]:
    """Every recorded version, oldest first (promoted or not)."""
    return _rows(paths, f"SELECT {_COLUMNS} FROM model_versions ORDER BY created, version")


def latest_version(paths: Paths) -> ModelVersion | None:
    """The newest promoted version: the one the memory embeds with."""
    rows = _rows(paths, f"SELECT {_COLUMNS} FROM model_versions WHERE promoted = 1"
                        " ORDER BY created DESC, version DESC LIMIT 1")
    return rows[0] if rows else None


def next_version_name(paths: Paths, date: str) -> str:
    n = len(_rows(paths, f"SELECT {_COLUMNS} FROM model_versions WHERE date = ?", (date,)))
    return f"{date}.{n + 1}"


def record_version(paths: Paths, version: str, date: str, checkpoint: str, promoted: bool) -> ModelVersion:
    created = datetime.now(timezone.utc).isoformat()
    conn = connect(paths.memory_db)
    try:
        conn.executescript(_SCHEMA)
        conn.execute(f"INSERT INTO model_versions({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                     (version, date, created, checkpoint, int(promoted)))
    finally:
        conn.close()
    return ModelVersion(version, date, created, checkpoint, promoted)
