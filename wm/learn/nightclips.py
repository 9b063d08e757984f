"""Which clips a night learns from, read from the queue by SQL: the night's own clips, a
few held out for honest evaluation, and a bounded replay sample of earlier days so that
yesterday is not forgotten. Only those rows reach Python: the queue holds every clip
ever recorded, and a night's work must follow the new data, not the history."""
from __future__ import annotations

import json
import sqlite3

import numpy as np

from wm.base import log
from wm.base.manifest import Manifest
from wm.base.paths import Paths
from wm.base.queue import COMMITTED, PURGED, QUEUED, QueueItem, open_queue_db
from wm.learn.data import ClipRef, NightData, clip_ref
from wm.learn.holdout import JUDGE_MIN_CLIPS, VISIT_GAP_SECONDS, hold_out_blocks, time_blocks

REPLAY_POOL = 4096   # earlier clips sampled per night; batches draw from this pool
HELD_OUT_MAX = 512   # clips kept out of training to measure the night on

_ITEM = "clip_id, date, start, manifest, state, owner, lease_until"
# Earlier clips whose media is still kept; json_each lists the night's own dates. The
# queue's (state, date, start) index covers the filter: purged history is never scanned.
_REPLAY_WHERE = (f"state IN ('{QUEUED}', '{COMMITTED}')"
                 " AND date NOT IN (SELECT value FROM json_each(?))")

_log = log.get("wm.learn")


def read_clips(paths: Paths, items: list[QueueItem]) -> list[ClipRef]:
    """ClipRefs for queue items whose media are still there; unreadable manifests are
    logged and skipped (one bad clip must not stop a night)."""
    out = []
    for item in items:
        try:
            ref = clip_ref(paths, Manifest.read(paths.data / item.manifest))
        except (OSError, ValueError, KeyError, TypeError) as e:
            _log.warning("clip_unreadable", clip=item.clip_id, file=item.manifest, error=str(e))
            continue
        if ref.stills or ref.audio:
            out.append(ref)
    return out


def _night_items(conn: sqlite3.Connection, date: str | None) -> list[QueueItem]:
    if date is not None:
        sql, params = f"date = ? AND state != '{PURGED}'", (date,)
    else:
        sql, params = "state = ?", (QUEUED,)
    return [QueueItem(*r) for r in conn.execute(
        f"SELECT {_ITEM} FROM queue WHERE {sql} ORDER BY start", params)]


def replay_positions(rng: np.random.Generator, n: int, pool: int) -> np.ndarray | None:
    """Which of the n earlier clips (in start order) to replay: all (None) when they fit
    in the pool, else a sorted random sample of `pool` positions."""
    return None if n <= pool else np.sort(rng.choice(n, pool, replace=False))


def _replay_items(conn: sqlite3.Connection, dates: list[str], rng: np.random.Generator) -> list[QueueItem]:
    """The replay sample, counted and picked in SQLite: only the chosen rows come back."""
    night = json.dumps(dates)
    n = conn.execute(f"SELECT COUNT(*) FROM queue WHERE {_REPLAY_WHERE}", (night,)).fetchone()[0]
    chosen = replay_positions(rng, n, REPLAY_POOL)
    if chosen is None:
        rows = conn.execute(f"SELECT {_ITEM} FROM queue WHERE {_REPLAY_WHERE} ORDER BY start", (night,))
    else:
        # Numbered from the index alone (rowid and start); only the chosen rows are read.
        rows = conn.execute(
            f"SELECT {_ITEM} FROM queue WHERE rowid IN (SELECT rid FROM (SELECT rowid AS rid,"
            f" ROW_NUMBER() OVER (ORDER BY start) - 1 AS pos FROM queue WHERE {_REPLAY_WHERE})"
            " WHERE pos IN (SELECT value FROM json_each(?))) ORDER BY start",
            (night, json.dumps(chosen.tolist())))
    return [QueueItem(*r) for r in rows]


def night_data(paths: Paths, date: str | None, seed: int) -> NightData | None:
    """With a date: every clip of that day (queued or committed). Without: every queued
    clip, whatever its day. None when there is nothing to learn from."""
    conn = open_queue_db(paths.memory_db)
    try:
        items = _night_items(conn, date)
        if not items:
            return None
        dates = sorted({i.date for i in items})
        rng = np.random.default_rng([seed, int(dates[-1].replace("-", ""))])
        others = _replay_items(conn, dates, rng)
    finally:
        conn.close()
    clips = read_clips(paths, items)
    n_eval = (min(max(8, len(clips) // 10), len(clips) // 4, HELD_OUT_MAX)
              if len(clips) >= JUDGE_MIN_CLIPS else 0)
    # Whole visits (or minutes of a continuous recording) are held out, never lone clips.
    blocks = time_blocks(np.array([c.start for c in clips]), VISIT_GAP_SECONDS)
    held = set(hold_out_blocks(rng, blocks, n_eval, most=max(n_eval, len(clips) // 4)).tolist()) if n_eval else set()
    return NightData(
        date=dates[-1], dates=dates,
        train=[c for i, c in enumerate(clips) if i not in held],
        held_out=[c for i, c in enumerate(clips) if i in held],
        replay=read_clips(paths, others))
