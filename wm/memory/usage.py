"""What wm keeps on disk, in bytes, by kind: clip media, memories (manifests, thumbnails,
vectors, the database's live pages), raw recordings and model checkpoints.

A year of clips is tens of millions of files: walking them all every night would make
retention follow the history, not the new data. So each day folder's bytes are kept in
the disk_usage table with the folder's mtime, and a folder is read again only when its
mtime changed (a file added, deleted or renamed in it: every write here is a rename).
A folder changed in the last few seconds is read but not remembered, as a filesystem with
coarse timestamps could change it again within the same tick."""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from wm.base.paths import Paths

SETTLE_S = 5.0


@dataclass(frozen=True)
class Usage:
    media: int        # videos, stills, sound of clips
    records: int      # what the memories keep: manifests, thumbnails, vectors, rows
    raw: int          # recordings in data/raw/
    checkpoints: int  # model checkpoints

    @property
    def total(self) -> int:
        return self.media + self.records + self.raw + self.checkpoints


def file_bytes(files: list[Path]) -> int:
    """Bytes of those of `files` that can be looked at now."""
    total = 0
    for f in files:
        try:
            total += f.stat().st_size
        except OSError:
            pass
    return total


def _walk(folder: Path) -> tuple[int, int]:
    """(bytes in manifests, bytes in other files) directly in `folder`."""
    json_bytes = other = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0, 0   # unreadable now: counted at a later run
    for e in entries:
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            size = e.stat(follow_symlinks=False).st_size
        except OSError:
            continue
        if e.name.endswith(".json"):
            json_bytes += size
        else:
            other += size
    return json_bytes, other


def _cached(conn: sqlite3.Connection | None, paths: Paths, folder: Path,
            seen: set[str]) -> tuple[int, int]:
    """_walk(folder), from the cache while the folder is unchanged."""
    try:
        st = os.stat(folder)
    except OSError:
        return 0, 0
    if conn is None:
        return _walk(folder)
    rel = str(folder.relative_to(paths.root))
    seen.add(rel)
    row = conn.execute("SELECT mtime_ns, media, records FROM disk_usage WHERE folder = ?",
                       (rel,)).fetchone()
    if row is not None and row[0] == st.st_mtime_ns:
        return row[2], row[1]
    json_bytes, other = _walk(folder)
    if time.time() - st.st_mtime > SETTLE_S:
        conn.execute("INSERT OR REPLACE INTO disk_usage(folder, mtime_ns, media, records)"
                     " VALUES (?, ?, ?, ?)", (rel, st.st_mtime_ns, other, json_bytes))
    return json_bytes, other


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _tree_bytes(folder: Path) -> int:
    """Every file under `folder`, walked (for the few files raw and checkpoints hold)."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def _day_folders(paths: Paths) -> list[tuple[Path, bool]]:
    """(day folder, holds memories rather than media)."""
    out = []
    for kind, records in (("clips", False), ("frames", False), ("audio", False), ("thumbs", True)):
        out += [(d, records) for d in _subdirs(paths.data / kind)]
    for version in _subdirs(paths.embeddings):
        out += [(d, True) for d in _subdirs(version)]
    return out


def _db_bytes(conn: sqlite3.Connection | None) -> int:
    """The database's live pages: rows deleted free their pages for reuse, so the file's
    own size would never come down."""
    if conn is None:
        return 0
    pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                         for p in ("page_count", "freelist_count", "page_size"))
    return (pages - free) * size


def measure(paths: Paths, conn: sqlite3.Connection | None = None) -> Usage:
    """Bytes on disk by kind; with the memory database's connection, unchanged day folders
    come from its cache (and the database's own pages count as memories)."""
    media = records = 0
    seen: set[str] = set()
    for folder, is_record in _day_folders(paths):
        json_bytes, other = _cached(conn, paths, folder, seen)
        records += json_bytes + (other if is_record else 0)
        media += 0 if is_record else other
    if conn is not None:
        # Folders gone since (a day deleted by hand, a version's vectors dropped).
        known = [r[0] for r in conn.execute("SELECT folder FROM disk_usage")]
        conn.executemany("DELETE FROM disk_usage WHERE folder = ?",
                         [(f,) for f in known if f not in seen])
    return Usage(media, records + _db_bytes(conn), _tree_bytes(paths.raw_root),
                 _tree_bytes(paths.checkpoints))
