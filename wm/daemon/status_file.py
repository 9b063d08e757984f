"""state/status.json: what the running daemon publishes about itself every few seconds
(written atomically), for `wm status` to read."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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
class FaultView:
    """A part of the daemon that failed (and was restarted or retried)."""
    failures: int                # since the daemon started
    last_error: str
    last_at: float               # wall time of the last failure
    retry_at: float | None       # wall time of the next try while it backs off


@dataclass(frozen=True)
class RetentionView:
    """Retention run by the daemon itself, outside sleep cycles."""
    running_pid: int | None
    last_started: float | None   # wall time
    last_reason: str | None      # why it ran: the disk is low, or its regular turn
    last_result: str | None      # what it did, in words


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
    faults: dict[str, FaultView] = field(default_factory=dict)
    retention: RetentionView | None = None

    def write(self, path: Path) -> None:
        from wm.base.atomic import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def read(cls, path: Path) -> "DaemonStatus | None":
        try:
            d = json.loads(path.read_text())
            retention = d.get("retention")
            return cls(**{**d, "recorder": RecorderView(**d["recorder"]),
                          "scheduler": SchedulerView(**d["scheduler"]),
                          "watcher": WatcherView(**d["watcher"]),
                          "faults": {k: FaultView(**v) for k, v in (d.get("faults") or {}).items()},
                          "retention": RetentionView(**retention) if retention else None})
        except (OSError, ValueError, KeyError, TypeError):
            return None


def status_line(h, sv: SchedulerView, queued: str) -> str:
    """The one line systemd shows (STATUS=): recorder health `h`, the scheduler's view."""
    state = "paused" if h.paused else "disk low" if h.disk_low else "recording"
    sleep = (f"sleeping (pid {sv.sleeping_pid})" if sv.sleeping_pid
             else f"next sleep {sv.next_opens[:16]}")
    return (f"{state}: camera {h.camera}, microphone {h.microphone}; {h.clips_written} clips; "
            f"{queued} queued; {sleep}")
