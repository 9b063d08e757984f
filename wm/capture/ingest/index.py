"""The ingest index, state/ingested.jsonl: one line per file ingested whole, keyed by a
fingerprint of its content, so a second ingest of it (or of a renamed copy) is skipped.
A file ingested only in part resumes: its clips already on disk are found by fingerprint
and offset and kept."""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from wm.base.clipids import clip_id
from wm.base.manifest import Manifest
from wm.base.paths import Paths

FINGERPRINT_BYTES = 1 << 20


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


def already_ingested(paths: Paths, fp: str) -> dict | None:
    """The index entry for this fingerprint, if its first clip still exists (a file whose
    clips were deleted may be ingested again)."""
    try:
        lines = paths.ingest_index.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue   # a line cut short by a crash
        if entry.get("fingerprint") != fp:
            continue
        first = entry.get("first")
        if first is None or paths.manifest(first[0], first[1]).exists():
            return entry
    return None


def remember(paths: Paths, fp: str, path: Path, first: tuple[str, str] | None,
             clips: int) -> None:
    paths.ingest_index.parent.mkdir(parents=True, exist_ok=True)
    entry = {"fingerprint": fp, "file": str(path), "first": first, "clips": clips,
             "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with open(paths.ingest_index, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def claim_id(paths: Paths, reserved: set, fp: str, date: str, start: datetime,
             offset: float) -> tuple[str, bool]:
    """A free id for the clip of file `fp` at `offset` (added to `reserved`), or the id
    under which that clip is already on disk (True)."""
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
            if there.source.fingerprint == fp and abs(there.source.offset - offset) < 1e-3:
                return cid, True
            continue
        reserved.add((date, cid))
        return cid, False
