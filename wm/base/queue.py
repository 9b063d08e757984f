"""The durable clip queue: one row per clip in memory/episodic.sqlite (WAL), moving through
queued -> committed (in memory) -> purged (media deleted by retention).

Enqueueing is idempotent (the clip id is the key). Work is claimed with a lease: a
claim that is neither finished nor renewed before its lease runs out is claimable
again, so a crashed sleep cycle loses nothing and nothing is counted twice."""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from wm.base.db import connect
from wm.base.manifest import Manifest

QUEUED, COMMITTED, PURGED = "queued", "committed", "purged"
STATES = (QUEUED, COMMITTED, PURGED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    clip_id     TEXT PRIMARY KEY,
    date        TEXT NOT NULL,
    start       TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'queued',
    owner       TEXT,
    lease_until REAL,
    enqueued_at REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_state ON queue(state, date, start);
"""


@dataclass(frozen=True)
class QueueItem:
    clip_id: str
    date: str
    start: str
    manifest: str      # path relative to the data folder
    state: str
    owner: str | None
    lease_until: float | None


def open_queue_db(db: Path) -> sqlite3.Connection:
    """A connection to the memory database with the queue table in it."""
    conn = connect(db)
    conn.executescript(_SCHEMA)
    return conn


class Queue:
    def __init__(self, db: Path):
        self.conn = open_queue_db(db)

    def close(self) -> None:
        self.conn.close()

    def enqueue(self, manifest: Manifest, manifest_rel: str) -> bool:
        """Queue a clip; False if it was already known (in any state)."""
        now = time.time()
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO queue(clip_id, date, start, manifest, state, enqueued_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (manifest.id, manifest.date, manifest.start, manifest_rel, QUEUED, now, now),
        )
        return cur.rowcount == 1

    def claim(self, owner: str, limit: int, lease_seconds: float, state: str = QUEUED,
              date: str | None = None) -> list[QueueItem]:
        """Take up to `limit` unclaimed (or lease-expired) clips in `state`, newest first."""
        now = time.time()
        where = "state = ? AND (owner IS NULL OR lease_until < ?)"
        params: list = [state, now]
        if date is not None:
            where += " AND date = ?"
            params.append(date)
        rows = self.conn.execute(
            f"UPDATE queue SET owner = ?, lease_until = ?, updated_at = ? WHERE clip_id IN ("
            f" SELECT clip_id FROM queue WHERE {where} ORDER BY start DESC LIMIT ?)"
            " RETURNING clip_id, date, start, manifest, state, owner, lease_until",
            [owner, now + lease_seconds, now, *params, limit],
        ).fetchall()
        return sorted((QueueItem(*r) for r in rows), key=lambda i: i.start, reverse=True)

    def mark(self, clip_ids: list[str], state: str, owner: str | None = None) -> int:
        """Move clips to `state` and drop their claim. With `owner`, only clips that owner
        still holds move (a claim taken over after its lease expired is not overwritten)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            n = set_state(self.conn, clip_ids, state, owner)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return n

    def owners(self) -> list[str]:
        """Every owner that holds a claim now."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT owner FROM queue WHERE owner IS NOT NULL")]

    def release(self, owner: str) -> int:
        """Give back every claim `owner` holds without changing state (clean stop)."""
        return self.conn.execute(
            "UPDATE queue SET owner = NULL, lease_until = NULL WHERE owner = ?", (owner,)
        ).rowcount

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for state, n in self.conn.execute("SELECT state, COUNT(*) FROM queue GROUP BY state"):
            out[state] = n
        return out

    def items(self, state: str | None = None, date: str | None = None) -> list[QueueItem]:
        """Clips, oldest first, optionally of one state and/or one local date."""
        where, params = [], []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if date is not None:
            where.append("date = ?")
            params.append(date)
        sql = "SELECT clip_id, date, start, manifest, state, owner, lease_until FROM queue"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [QueueItem(*r) for r in self.conn.execute(sql + " ORDER BY start", params)]

    def dates(self, state: str | None = None) -> list[str]:
        sql = "SELECT DISTINCT date FROM queue"
        rows = self.conn.execute(sql + (" WHERE state = ?" if state else "") + " ORDER BY date",
                                 (state,) if state else ())
        return [r[0] for r in rows]


def set_state(conn: sqlite3.Connection, clip_ids: list[str], state: str,
              owner: str | None = None) -> int:
    """The state change itself, inside the caller's transaction (the memory's commit flips
    "in memory" and "committed" in one)."""
    if state not in STATES:
        raise ValueError(f"unknown queue state {state!r}")
    now = time.time()
    cond = " AND owner = ?" if owner is not None else ""
    n = 0
    for cid in clip_ids:
        params = [state, now, cid] + ([owner] if owner is not None else [])
        n += conn.execute("UPDATE queue SET state = ?, owner = NULL, lease_until = NULL,"
                          f" updated_at = ? WHERE clip_id = ?{cond}", params).rowcount
    return n


def owner_id() -> str:
    """A claim owner name unique to this process: host:pid:start."""
    return f"{os.uname().nodename}:{os.getpid()}:{time.time():.0f}"


def owner_process(owner: str) -> tuple[str, int] | None:
    """(host, pid) of an owner name made by owner_id; None for any other name."""
    host, pid, _ = (owner.rsplit(":", 2) + ["", "", ""])[:3]
    return (host, int(pid)) if pid.isdigit() else None
