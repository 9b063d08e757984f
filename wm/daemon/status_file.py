"""state/status.json: what the running daemon publishes about itself every few seconds
(written atomically), for `wm status` to read."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from wm.daemon.scheduler import SchedulerView

# The daemon rewrites its status this often; older than STALE_SECONDS means it is hung.
WRITE_SECONDS = 2.0
STALE_SECONDS = 30.0


@dataclass(frozen=True)
class WatcherView:
    """What `wm status` shows about the watcher."""
    enqueued: int            # clips newly queued since the daemon started
    rescanned: int           # of which found by the start-up rescan
    ingested_files: int
    ingest_errors: int
    pending_raw: int         # recordings waiting to settle or be ingested
    ingesting: str | None


@dataclass(frozen=True)
class RecorderView:
    camera: str                  # "ok" | "reopening" | "off" | "paused"
    microphone: str
    last_clip_end: float | None  # wall time
    clips_written: int
    paused: bool
    disk_low: bool
    data_age: float | None       # seconds since a frame or audio block last arrived


@dataclass(frozen=True)
class DaemonStatus:
    """What the running daemon publishes in state/status.json."""
    pid: int
    started: float
    updated: float
    config: str | None
    recorder: RecorderView
    scheduler: SchedulerView
    watcher: WatcherView
    data_bytes: int | None = None     # disk used by data/, measured in the background
    data_bytes_at: float | None = None

    def write(self, path: Path) -> None:
        from wm.base.atomic import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def read(cls, path: Path) -> "DaemonStatus | None":
        try:
            d = json.loads(path.read_text())
            return cls(**{**d, "recorder": RecorderView(**d["recorder"]),
                          "scheduler": SchedulerView(**d["scheduler"]),
                          "watcher": WatcherView(**d["watcher"])})
        except (OSError, ValueError, KeyError, TypeError):
            return None
