"""The manifest: a clip's record on disk (`data/clips/{date}/{id}.json`). Written last, it
is the commit marker the watcher acts on; everything downstream reads clips through it."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

MANIFEST_VERSION = 1

# Flags a clip can carry.
PADDED = "padded"          # shorter than clip_seconds: audio zero-padded to the full length
FINAL = "final"            # the last clip of a recording (stop or end of file)
VIDEO_ONLY = "video_only"  # no audio: no WAV, the mp4 has no audio track
AUDIO_ONLY = "audio_only"  # no video: no frames, the mp4 shows nothing (none is written)


@dataclass(frozen=True)
class Gap:
    """A stretch of the clip (seconds from its start) where a modality has no data."""
    modality: str  # "audio" or "video"
    start: float
    end: float
    reason: str    # "device_lost", "stall", "overflow", "paused", "no_stream", ...


@dataclass(frozen=True)
class Source:
    kind: str                      # "file" or "live"
    name: str                      # file path, or camera/microphone description
    offset: float = 0.0            # seconds into the source where this clip starts
    video_stream: str | None = None  # which stream was used and why, e.g. "#0 h264 1280x720"
    audio_stream: str | None = None
    fingerprint: str | None = None   # identifies the source file (ingest idempotency)
    # identifies its beginning: the same for a file that grew since (a recording that was
    # still being written), so re-ingesting it finds the clips already made
    head: str | None = None


@dataclass(frozen=True)
class Manifest:
    id: str
    date: str                      # local calendar day the clip is filed under
    start: str                     # ISO 8601 UTC of the first audio sample
    duration: float                # seconds of real content (< clip_seconds when padded)
    sample_rate: int
    samples: int                   # samples in the WAV (always clip_seconds * sample_rate)
    video: str | None              # paths relative to the data folder
    audio: str | None
    frames: list[str]
    source: Source
    gaps: list[Gap] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    @property
    def has_video(self) -> bool:
        return bool(self.frames)

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    @property
    def start_time(self) -> datetime:
        return datetime.fromisoformat(self.start)

    def to_json(self) -> str:
        d = asdict(self)
        d["has_video"] = self.has_video
        d["has_audio"] = self.has_audio
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        d = json.loads(text)
        d.pop("has_video", None)
        d.pop("has_audio", None)
        d["source"] = Source(**d["source"])
        d["gaps"] = [Gap(**g) for g in d.get("gaps", [])]
        return cls(**d)

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        return cls.from_json(Path(path).read_text())
