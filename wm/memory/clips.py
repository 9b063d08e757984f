"""A clip as the memory holds it: the part of its manifest that finding, showing and
re-embedding it need, so none of those has to open the manifest again."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date as Date

from wm.base.manifest import Manifest


@dataclass(frozen=True)
class Clip:
    clip_id: str
    date: str               # local calendar day it is filed under
    start: str              # ISO 8601 UTC
    duration: float
    manifest: str           # paths relative to the data folder
    video: str | None
    audio: str | None
    frames: tuple[str, ...]

    @classmethod
    def from_manifest(cls, m: Manifest, manifest: str) -> Clip:
        return cls(m.id, m.date, m.start, m.duration, manifest, m.video, m.audio,
                   tuple(m.frames))

    # The manifest's own rules (they read only the fields both have), so the memory and
    # capture cannot disagree about what a clip holds.
    has_video = Manifest.has_video
    has_audio = Manifest.has_audio
    start_time = Manifest.start_time


@dataclass(frozen=True)
class ClipRecord(Clip):
    """A clip in the memory."""
    key: int                   # see clip_key
    version: str               # the newest model version it is embedded with
    media_gone: float | None   # when retention deleted its media; None while it exists


# The columns of memory_clips that make a ClipRecord, in its field order.
CLIP_COLS = "clip_id, date, start, duration, manifest, video, audio, frames, key, version, media_gone"


def record(row) -> ClipRecord:
    """A row of CLIP_COLS (frames are stored as a JSON list)."""
    return ClipRecord(*row[:7], tuple(json.loads(row[7])), *row[8:])


def clip_key(date: str, n: int) -> int:
    """A clip's key, (date ordinal << 32) | row number: keys order by local day, so a
    date range is one key range."""
    return (Date.fromisoformat(date).toordinal() << 32) | n


# A still's key is its clip's key with the still's place in the clip in the low bits:
# (date ordinal << 32) | (n << STILL_BITS) | i (wm.memory.shards.still_keys). It orders
# and files by day as its clip does, so date ranges and the ANN index take it unchanged;
# it holds while row numbers stay under 2**(32 - STILL_BITS) (537 million clips). A clip
# keeps at most MAX_STILLS still vectors, picked evenly.
STILL = "still"     # the kind of vector kept per still (wm.memory.shards)
STILL_BITS = 3
MAX_STILLS = 1 << STILL_BITS


def date_key_range(lo: str | None, hi: str | None) -> tuple[int, int]:
    """Keys of clips filed under local days lo..hi (inclusive): a half-open key range."""
    start = Date.fromisoformat(lo).toordinal() << 32 if lo else 0
    end = (Date.fromisoformat(hi).toordinal() + 1) << 32 if hi else 1 << 62
    return start, end
