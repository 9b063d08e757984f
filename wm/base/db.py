"""The memory database (memory/episodic.sqlite): one SQLite file in WAL mode shared by the
queue, the memory's rows and the model versions, opened the same way by every writer."""
from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(db: Path) -> sqlite3.Connection:
    """A connection to the memory database with the settings every writer must share."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn
