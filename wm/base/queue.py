"""The durable clip queue: one row per clip in memory/episodic.sqlite (WAL), moving through
queued -> committed (in memory) -> purged (media deleted by retention).

Enqueueing is idempotent (the clip id is the key). Work is claimed with a lease: a
claim that is neither finished nor renewed before its lease runs out is claimable
again, so a crashed sleep cycle loses nothing and nothing is counted twice.

A clip whose files cannot be read now (an I/O error, a busy network drive) is not lost:
`defer` counts the attempt and keeps the row out of claims until `retry_after`; the
memory's commit sets a queued clip aside as `unreadable` (files untouched) only after
settings.memory.read_attempts tries. A state change to queued or committed clears the
count."""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from wm.base.db import connect
from wm.base.manifest import Manifest
from wm.base.process import pid_alive

QUEUED, COMMITTED, PURGED = "queued", "committed", "purged"
STATES = (QUEUED, COMMITTED, PURGED)
# Set aside after every read attempt failed: its files stay, nothing retries it by itself.
UNREADABLE = "unreadable"
ALL_STATES = STATES + (UNREADABLE,)
# counts() key for queued clips waiting for their next read attempt (not a state).
RETRYING = "retrying"

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
    updated_at  REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,  -- failed reads since the last state change
    retry_after REAL                         -- not claimed before this time (after a failure)
);
CREATE INDEX IF NOT EXISTS queue_state ON queue(state, date, start);
-- Claims held now: releasing them must not scan every clip ever queued.
CREATE INDEX IF NOT EXISTS queue_owner ON queue(owner) WHERE owner IS NOT NULL;
"""
# Columns added after the first release: older databases get them when first opened.
_ADDED = {"attempts": "INTEGER NOT NULL DEFAULT 0", "retry_after": "REAL"}
_ITEM_COLS = "clip_id, date, start, manifest, state, owner, lease_until, attempts"


@dataclass(frozen=True)
class QueueItem:
    clip_id: str
    date: str
    start: str
    manifest: str      # path relative to the data folder
    state: str
    owner: str | None
    lease_until: float | None
    attempts: int = 0  # failed reads since it was queued


def open_queue_db(db: Path) -> sqlite3.Connection:
    """A connection to the memory database with the queue table in it."""
    conn = connect(db)
    conn.executescript(_SCHEMA)
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a database made by an older release lacks. Checked again under the
    write lock: two processes opening an old database at once add each column once."""
    if _missing_columns(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name in _missing_columns(conn):
                conn.execute(f"ALTER TABLE queue ADD COLUMN {name} {_ADDED[name]}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _missing_columns(conn: sqlite3.Connection) -> list[str]:
    have = {r[1] for r in conn.execute("PRAGMA table_info(queue)")}
    return [name for name in _ADDED if name not in have]


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
        """Take up to `limit` unclaimed (or lease-expired) clips in `state`, newest first,
        leaving out those waiting for a retry."""
        now = time.time()
        where = ("state = ? AND (owner IS NULL OR lease_until < ?)"
                 " AND (retry_after IS NULL OR retry_after <= ?)")
        params: list = [state, now, now]
        if date is not None:
            where += " AND date = ?"
            params.append(date)
        rows = self.conn.execute(
            f"UPDATE queue SET owner = ?, lease_until = ?, updated_at = ? WHERE clip_id IN ("
            f" SELECT clip_id FROM queue WHERE {where} ORDER BY start DESC LIMIT ?)"
            f" RETURNING {_ITEM_COLS}",
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

    def defer(self, retries: list[tuple[str, float]], owner: str | None = None) -> int:
        """Count a failed read of each (clip id, retry time) and keep the clip from claims
        until then; its state stays. With `owner`, only clips that owner still holds."""
        cond = " AND owner = ?" if owner is not None else ""
        now = time.time()
        n = 0
        for cid, retry_after in retries:
            params = [retry_after, now, cid] + ([owner] if owner is not None else [])
            n += self.conn.execute(
                "UPDATE queue SET attempts = attempts + 1, retry_after = ?, owner = NULL,"
                f" lease_until = NULL, updated_at = ? WHERE clip_id = ?{cond}", params).rowcount
        return n

    def attempts(self, clip_ids: list[str]) -> dict[str, int]:
        """Failed reads so far of each clip (clips the queue does not know are left out)."""
        out: dict[str, int] = {}
        for i in range(0, len(clip_ids), 500):
            part = clip_ids[i:i + 500]
            out.update(self.conn.execute(
                f"SELECT clip_id, attempts FROM queue WHERE clip_id IN ({','.join('?' * len(part))})",
                part))
        return out

    def dead_owners(self) -> list[str]:
        """Owners on this machine whose process is gone (a cycle killed -9): their claims
        can be given back now instead of when the lease runs out."""
        node = os.uname().nodename
        return [o for o in self.owners()
                if (p := owner_process(o)) is not None and p[0] == node and not pid_alive(p[1])]

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
        """Clips per state. "queued" counts only those ready to be taken; queued clips
        waiting for a retry show as "retrying" and set-aside ones as "unreadable" (both
        keys only when there are any)."""
        out = {s: 0 for s in STATES}
        for state, n in self.conn.execute("SELECT state, COUNT(*) FROM queue GROUP BY state"):
            out[state] = n
        waiting = self.conn.execute(
            "SELECT COUNT(*) FROM queue WHERE state = ? AND retry_after > ?",
            (QUEUED, time.time())).fetchone()[0]
        if waiting:
            out[QUEUED] -= waiting
            out[RETRYING] = waiting
        if not out.get(UNREADABLE):
            out.pop(UNREADABLE, None)
        return out

    def count(self, state: str) -> int:
        """Clips in one state (through the state index: cheap whatever the history)."""
        return self.conn.execute("SELECT COUNT(*) FROM queue WHERE state = ?",
                                 (state,)).fetchone()[0]

    def items(self, state: str | None = None, date: str | None = None) -> list[QueueItem]:
        """Clips, oldest first, optionally of one state and/or one local date."""
        where, params = [], []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if date is not None:
            where.append("date = ?")
            params.append(date)
        sql = f"SELECT {_ITEM_COLS} FROM queue"
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
    "in memory" and "committed" in one). Moving to queued or committed clears the failed
    reads: the clip was read, or is to be tried afresh."""
    if state not in ALL_STATES:
        raise ValueError(f"unknown queue state {state!r}")
    now = time.time()
    cond = " AND owner = ?" if owner is not None else ""
    fresh = ", attempts = 0, retry_after = NULL" if state in (QUEUED, COMMITTED) else ""
    n = 0
    for cid in clip_ids:
        params = [state, now, cid] + ([owner] if owner is not None else [])
        n += conn.execute(f"UPDATE queue SET state = ?, owner = NULL, lease_until = NULL{fresh},"
                          f" updated_at = ? WHERE clip_id = ?{cond}", params).rowcount
    return n


def owner_id() -> str:
    """A claim owner name unique to this process: host:pid:start."""
    return f"{os.uname().nodename}:{os.getpid()}:{time.time():.0f}"


def owner_process(owner: str) -> tuple[str, int] | None:
    """(host, pid) of an owner name made by owner_id; None for any other name."""
    host, pid, _ = (owner.rsplit(":", 2) + ["", "", ""])[:3]
    return (host, int(pid)) if pid.isdigit() else None
