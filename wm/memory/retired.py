"""Files the memory no longer names (merged shards, replaced indexes), waiting to be
deleted: a query may have listed them a moment before and be about to open them. They go
when no query holds the readers' lock (wm.memory.locks): at once in the usual case, or
at a later maintenance pass."""
from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

from wm.base import log
from wm.memory.locks import no_readers

if TYPE_CHECKING:
    from wm.memory.store import Store

_log = log.get("wm.memory.retired")


def retire(conn: sqlite3.Connection, rels: list[str]) -> None:
    """Record files (relative to paths.embeddings) for deletion, inside the transaction
    that stops rows naming them."""
    now = time.time()
    conn.executemany("INSERT OR REPLACE INTO memory_retired(file, retired) VALUES (?, ?)",
                     [(r, now) for r in rels])


def reap_retired(store: Store) -> int:
    """Delete retired files if no query is reading now; returns how many went. A file
    that cannot be deleted now stays retired and is tried at the next pass."""
    rows = [r for (r,) in store.conn.execute("SELECT file FROM memory_retired")]
    if not rows:
        return 0
    done = []
    with no_readers(store.paths) as alone:
        if not alone:
            _log.info("retired_files_kept", files=len(rows), reason="a query is reading")
            return 0
        for rel in rows:
            try:
                (store.paths.embeddings / rel).unlink(missing_ok=True)
                done.append(rel)
            except OSError as e:
                _log.warning("retired_file_not_deleted", file=rel, error=str(e))
    with store.transaction() as c:
        c.executemany("DELETE FROM memory_retired WHERE file = ?", [(r,) for r in done])
    return len(done)
