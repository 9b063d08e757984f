"""Retention's choices, as pure functions: which media, memories, raw recordings and model
checkpoints go. wm.memory.retention measures and deletes; everything it decides is here,
so tests call the rules directly.

What retention.max_gb bounds: everything wm keeps under its data root except the log and
small state files: clip media, the memories (manifests, thumbnails, vectors, database
rows), raw recordings and model checkpoints. What goes, in this order:

1. checkpoints outside the last retention.checkpoint_nights nights, unless the memory
   still uses their version (a count bound: a night's checkpoint is ~100 MB);
2. the oldest memories of clips whose media is gone, while memories use more than
   retention.memories_share of max_gb (a taught word's examples are kept);
3. raw recordings already ingested, older than raw_days, then more, oldest first, while
   over max_gb (their clips hold the same moments);
4. clip media older than raw_days, then more, oldest first, while over max_gb.
Nothing not yet in the memory is ever deleted: a raw recording not yet ingested, a clip
still queued."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, TypeVar

from wm.memory.clips import ClipRecord

T = TypeVar("T")
_NIGHT = re.compile(r"\d{4}-\d{2}-\d{2}")


def _older(start_iso: str, now: float, days: float) -> bool:
    return datetime.fromisoformat(start_iso).timestamp() < now - days * 86400


def select_purge(clips: Iterable[tuple[ClipRecord, int]], total: int, now: float,
                 raw_days: float, max_bytes: int) -> list[ClipRecord]:
    """From (clip, media bytes) oldest first: every clip older than raw_days, then more
    while what is kept would exceed max_bytes. Stops reading at the first clip kept."""
    out = []
    for clip, size in clips:
        if _older(clip.start, now, raw_days) or total > max_bytes:
            out.append(clip)
            total -= size
        else:
            break
    return out


def take_while_over(items: Iterable[tuple[T, int]], used: int, cap: int) -> list[T]:
    """From (item, bytes) oldest first: items while `used` exceeds `cap`. Stops reading at
    the first one not needed."""
    out = []
    for item, size in items:
        if used <= cap:
            break
        out.append(item)
        used -= size
    return out


def select_forget(purged: Iterable[tuple[ClipRecord, int]], records: int,
                  max_bytes: int, share: float) -> list[ClipRecord]:
    """From (clip whose media is gone, bytes its memory holds) oldest first: the oldest,
    while memories use more than `share` of max_bytes."""
    return take_while_over(purged, records, int(share * max_bytes))


@dataclass(frozen=True)
class RawFile:
    path: Path
    size: int
    arrived: float      # when it was put there (the later of mtime and ctime)
    ingested: bool


def select_raw(files: list[RawFile], now: float, raw_days: float, over: int) -> list[RawFile]:
    """Ingested recordings older than raw_days, then more, oldest first, while `over` (bytes
    above max_gb) is positive. Never one not ingested."""
    out = []
    for f in sorted((f for f in files if f.ingested), key=lambda f: f.arrived):
        if f.arrived < now - raw_days * 86400 or over > 0:
            out.append(f)
            over -= f.size
    return out


def select_checkpoints(files: dict[str, list[Path]], keep_nights: int,
                       keep: set[Path]) -> list[Path]:
    """From night folder name -> its files: the files of every night but the newest
    `keep_nights`, except those in `keep` (checkpoints of versions still in use).
    Folders not named like a date are not ours to judge and are left alone."""
    nights = sorted(n for n in files if _NIGHT.fullmatch(n))
    old = nights[:max(0, len(nights) - keep_nights)]
    return [p for n in old for p in files[n] if p not in keep]


def due_reason(free_bytes: int | None, min_free_bytes: int, oldest_media: str | None,
               oldest_raw: float | None, pending: bool, now: float,
               raw_days: float) -> str | None:
    """Why retention should run now, outside a sleep cycle; None when it need not."""
    if free_bytes is not None and free_bytes < min_free_bytes:
        return f"disk low: {free_bytes / 1e9:.1f} GB free"
    if oldest_media is not None and _older(oldest_media, now, raw_days):
        return f"clip media older than {raw_days:g} days"
    if oldest_raw is not None and oldest_raw < now - raw_days * 86400:
        return f"ingested raw recordings older than {raw_days:g} days"
    if pending:
        return "a retention run stopped before deleting all it had to"
    return None
