"""The ingest index, state/ingested.jsonl: one line per file ingested whole, keyed by a
fingerprint of its content, so a second ingest of it (or of a renamed copy) is skipped.
A file ingested only in part resumes: its clips already on disk are found by fingerprint
and offset and kept.

A file that grows after (or while) it was ingested has a new fingerprint but the same
name and beginning (head): a line noted before its first clip records where its
timeline starts in wall time, so a later ingest of the grown file puts its clips at the
same instants, under the same ids, and finds those already made."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from wm.base.atomic import append_line
from wm.base.clipids import clip_id
from wm.base.manifest import Manifest, Source
from wm.base.paths import Paths

FINGERPRINT_BYTES = 1 << 20
# The head hash covers this much of the beginning: a recording that grows keeps it (once
# it is this long), while two different recordings differ well within it.
HEAD_BYTES = 1 << 16


def fingerprint(path: Path) -> str:
    """Identifies a file's content cheaply: its size and a hash of its first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            f.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            h.update(f.read(FINGERPRINT_BYTES))
    return f"{size}:{h.hexdigest()[:32]}"


def head_fingerprint(path: Path) -> str:
    """Identifies a file's beginning: a hash of its first 64 KiB, the same after the file
    grew (appended to by a recorder that had not finished)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()[:32]


def same_clip(there: Source, mine: Source, offset: float) -> bool:
    """Whether the clip on disk from source `there` is the clip of file `mine` at
    `offset`: the same content (fingerprint), or the same file grown since (its name and
    head)."""
    if abs(there.offset - offset) >= 1e-3:
        return False
    if there.fingerprint == mine.fingerprint:
        return True
    return mine.head is not None and there.head == mine.head and there.name == mine.name


@dataclass(frozen=True)
class FileId:
    """A file as it was when its ingest began: its content's fingerprints and its stat,
    to tell whether it changed while it was read (still being written)."""
    fingerprint: str
    head: str
    size: int
    mtime_ns: int
    inode: int

    def changed(self, path: Path) -> bool:
        try:
            st = path.stat()
        except OSError:
            return True
        return (st.st_size, st.st_mtime_ns, st.st_ino) != (self.size, self.mtime_ns, self.inode)


def identify(path: Path, st: os.stat_result) -> FileId:
    """The FileId of `path`, whose stat (taken first) is `st`."""
    return FileId(fingerprint(path), head_fingerprint(path), st.st_size, st.st_mtime_ns,
                  st.st_ino)


def entries(paths: Paths) -> list[dict]:
    """Every line of the index, oldest first. Lines with `started_only` note where a
    file's timeline starts (no `file`, no `fingerprint`): they do not say it was
    ingested."""
    try:
        lines = paths.ingest_index.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:   # none yet, or unreadable now
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue   # a line cut short by a crash
        if isinstance(entry, dict):
            found.append(entry)
    return found


def already_ingested(paths: Paths, fp: str) -> dict | None:
    """The index entry for this fingerprint, if its first clip still exists (a file whose
    clips were deleted may be ingested again). Lines noting a start only do not count."""
    for entry in entries(paths):
        if entry.get("fingerprint") != fp or entry.get("started_only"):
            continue
        first = entry.get("first")
        if first is None or paths.manifest(first[0], first[1]).exists():
            return entry
    return None


def earlier_zero(paths: Paths, source: Source) -> datetime | None:
    """The wall time of timeline zero an earlier ingest of this file, or of its beginning
    before it grew, used (same name, same head); None when there was none."""
    for entry in entries(paths):
        if (source.head is not None and entry.get("head") == source.head
                and entry.get("name") == source.name and entry.get("zero")):
            try:
                return datetime.fromisoformat(entry["zero"])
            except (TypeError, ValueError):
                continue
    return None


def note_start(paths: Paths, source: Source, zero: datetime) -> None:
    """Record, before its first clip is written, where this file's timeline starts (no
    `fingerprint` key: readers that take every fingerprint in the index for a file done,
    like raw-recording retention, must not count a started one)."""
    _append(paths, {"head": source.head, "name": source.name, "zero": zero.isoformat(),
                    "started_only": True})


def remember(paths: Paths, fp: str, path: Path, first: tuple[str, str] | None,
             clips: int) -> None:
    _append(paths, {"fingerprint": fp, "file": str(path), "first": first, "clips": clips})


def _append(paths: Paths, entry: dict) -> None:
    entry["at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    append_line(paths.ingest_index, json.dumps(entry))


def claim_id(paths: Paths, reserved: set, source: Source, date: str, start: datetime,
             offset: float) -> tuple[str, bool]:
    """A free id for the clip of the file `source` names at `offset` (added to
    `reserved`), or the id under which that clip is already on disk (True)."""
    suffix = 0
    while True:
        cid = clip_id(start, suffix)
        suffix += 1
        if (date, cid) in reserved:
            continue
        path = paths.manifest(date, cid)
        if path.exists():
            try:
                there = Manifest.read(path)
            except (OSError, ValueError, TypeError, KeyError):
                continue   # not ours to judge: never overwrite it
            if same_clip(there.source, source, offset):
                return cid, True
            continue
        reserved.add((date, cid))
        return cid, False
