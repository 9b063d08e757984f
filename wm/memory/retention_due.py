"""Whether retention should run now, outside a sleep cycle: the daemon asks this every
poll, so it costs a statvfs, two index probes and a listing of data/raw/, never a walk
of the clips. The reasons are chosen by wm.memory.retention_rules.due_reason."""
from __future__ import annotations

import shutil
import sqlite3
import time

from wm.base.config import Settings
from wm.base.db import connect
from wm.base.paths import Paths
from wm.memory.raw_files import oldest_ingested
from wm.memory.retention_rules import due_reason


def _memory_state(paths: Paths) -> tuple[str | None, bool]:
    """(start of the oldest clip whose media is kept, a purge left unfinished), by two
    index probes; (None, False) without a memory."""
    if not paths.memory_db.exists():
        return None, False
    try:
        conn = connect(paths.memory_db)
    except sqlite3.Error:
        return None, False
    try:
        row = conn.execute("SELECT start FROM memory_clips WHERE media_gone IS NULL"
                           " ORDER BY start LIMIT 1").fetchone()
        pending = conn.execute("SELECT 1 FROM memory_purge_pending LIMIT 1").fetchone()
        return (row[0] if row else None), pending is not None
    except sqlite3.Error:   # tables not made yet: nothing committed
        return None, False
    finally:
        conn.close()


def retention_due(settings: Settings, paths: Paths, now: float | None = None) -> str | None:
    """Why retention should run now (free disk under retention.min_free_gb, clip media
    or ingested raw recordings past retention.raw_days, a purge left unfinished), or
    None. Cheap: a statvfs, two index probes and a listing of data/raw/."""
    now = time.time() if now is None else now
    r = settings.retention
    try:
        free: int | None = shutil.disk_usage(paths.root).free
    except OSError:
        free = None
    oldest, pending = _memory_state(paths)
    return due_reason(free, int(r.min_free_gb * 1e9), oldest, oldest_ingested(paths), pending,
                      now, r.raw_days)
