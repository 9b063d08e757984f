"""What `wm status` reports: the daemon's published status checked against what can be
checked directly (the lock, the pause file, the queue, the disk and the last sleep
cycle's own record)."""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from wm.base import lock
from wm.base.clipids import local_tz
from wm.base.config import Settings
from wm.base.lastsleep import LastSleep
from wm.base.paths import Paths
from wm.base.queue import STATES, Queue
from wm.capture.diskfloor import below_floor, floor_message, free_bytes
from wm.learn.versions import latest_version
from wm.daemon.scheduler import NightWindow
from wm.daemon.status_file import STALE_SECONDS, DaemonStatus

RUNNING_RECORDING, RUNNING_NOT_RECORDING, NOT_RUNNING = 0, 1, 3


@dataclass(frozen=True)
class Report:
    """Everything `wm status` says (`--json` prints this)."""
    running: bool
    pid: int | None
    responding: bool
    since: float | None
    recording: bool
    camera: str | None
    microphone: str | None
    last_clip_age: float | None
    clips_written: int | None
    paused: bool
    queue: dict[str, int]          # empty when the database cannot be read
    data_bytes: int
    free_bytes: int
    last_sleep: LastSleep | None
    sleeping_pid: int | None
    sleeping_since: float | None
    next_window_opens: str
    next_window_closes: str
    scheduler: str | None          # the scheduler's last decision and why
    problem: str | None            # why it is not recording, in words
    # parts of the daemon that failed and were restarted: name -> failures, last error...
    faults: dict[str, dict] = field(default_factory=dict)
    retention: str | None = None   # the daemon's last retention run outside sleep cycles
    models: str | None = None      # the model version the memory searches with, in words

    @property
    def exit_code(self) -> int:
        if not self.running:
            return NOT_RUNNING
        return RUNNING_RECORDING if self.recording else RUNNING_NOT_RECORDING


def dir_bytes(root: Path) -> int:
    """Bytes used by the files under `root` (a walk: slow on months of clips, so the
    daemon measures it in the background and `wm status` uses its figure)."""
    total, stack = 0, [root]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    elif e.is_file(follow_symlinks=False):
                        total += e.stat(follow_symlinks=False).st_blocks * 512
                except OSError:
                    continue
    return total


class _ReadOnlyQueue(Queue):
    """The queue of a data root that cannot be written (a read-only mount, a full disk):
    opened as an immutable file, which needs neither the WAL's shared memory nor a lock."""

    def __init__(self, db: Path):
        self.conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro&immutable=1", uri=True)


def queue_counts(paths: Paths) -> dict[str, int]:
    """Clips per queue state; empty when the database cannot be read at all."""
    if not paths.memory_db.exists():
        return {s: 0 for s in STATES}
    for kind in (Queue, _ReadOnlyQueue):
        try:
            q = kind(paths.memory_db)
        except (sqlite3.Error, OSError):
            continue
        try:
            return q.counts()
        except sqlite3.Error:
            continue
        finally:
            q.close()
    return {}


def disk_problem(free: int, min_free_gb: float) -> str | None:
    """Why nothing is recorded for lack of room, or None."""
    if free <= 0:
        return "disk full: recording paused until there is room"
    if below_floor(free, min_free_gb):
        return (f"disk almost full: recording paused until there is room "
                f"({floor_message(free, min_free_gb)})")
    return None


def recent_clip_limit(settings: Settings) -> float:
    """A recording daemon has written a clip within this many seconds."""
    return 3 * settings.capture.clip_seconds + 10


def _problem(settings: Settings, now: float, running: bool, st: DaemonStatus | None,
             responding: bool, paused: bool, last_clip_age: float | None,
             free: int) -> str | None:
    """Why it is not recording, the first reason that holds; None when it is. The disk is
    looked at directly: a daemon on a full disk may not be able to write its status."""
    if not running:
        return "wm run is not running"
    disk = disk_problem(free, settings.retention.min_free_gb)
    if st is None:
        return disk or "starting (no status yet)"
    if not responding:
        return disk or f"not responding (status {now - st.updated:.0f} s old)"
    rec = st.recorder
    if paused or rec.paused:
        return "paused"
    if disk or rec.disk_low:
        return disk or "disk almost full: recording paused"
    if "ok" not in (rec.camera, rec.microphone):
        return f"no device records (camera {rec.camera}, microphone {rec.microphone})"
    if last_clip_age is None or last_clip_age > recent_clip_limit(settings):
        return "no clip written yet" if last_clip_age is None else "no clip written recently"
    return None


def _next_window(settings: Settings, now: float, st: DaemonStatus | None) -> tuple[str, str]:
    """The night window as a responding daemon sees it (its settings may have been
    reloaded), else as the settings file says."""
    if st is not None:
        return st.scheduler.next_opens, st.scheduler.next_closes
    tz = local_tz()
    o, c = NightWindow.parse(settings.daemon.night_window).next(
        datetime.fromtimestamp(now, timezone.utc), tz)
    return o.astimezone(tz).isoformat(), c.astimezone(tz).isoformat()


def _retention(r) -> str | None:
    if r.running_pid:
        return f"running now (pid {r.running_pid}): {r.last_reason}"
    if r.last_started is None:
        return None
    when = datetime.fromtimestamp(r.last_started).strftime("%a %H:%M")
    return f"{when}, for {r.last_reason}: {r.last_result or 'no result'}"


def models_in_use(paths: Paths) -> str | None:
    """The version new clips are embedded and queries answered with; None when the
    database cannot be read."""
    if not paths.memory_db.exists():
        return "version 0 (fixed features: no night trained yet)"
    try:
        v = latest_version(paths)
    except (sqlite3.Error, OSError):
        return None
    if v is None:
        return "version 0 (fixed features: no night promoted yet)"
    return f"{v.version} (trained on {v.date})"


def build_report(settings: Settings, paths: Paths, now: float | None = None) -> Report:
    from wm.capture.pause import is_paused

    now = time.time() if now is None else now
    pid = lock.holder(paths.lock_file)
    running = pid is not None
    st = DaemonStatus.read(paths.status_file) if running else None
    if st is not None and pid and st.pid != pid:
        st = None          # left by an earlier daemon; this one has not written yet
    responding = st is not None and now - st.updated <= STALE_SECONDS
    live = st if responding else None
    rec = st.recorder if st else None
    paused = is_paused(paths, now)

    # max: a file played faster than real time dates its clips ahead of the clock.
    last_clip_age = max(0.0, now - rec.last_clip_end) if rec and rec.last_clip_end else None
    free = free_bytes(paths.data)
    problem = _problem(settings, now, running, st, responding, paused, last_clip_age, free)
    opens, closes = _next_window(settings, now, live)
    data = live.data_bytes if live and live.data_bytes is not None else dir_bytes(paths.data)
    return Report(
        running=running, pid=pid or None, responding=responding,
        since=st.started if st else None, recording=running and problem is None,
        camera=rec.camera if rec else None, microphone=rec.microphone if rec else None,
        last_clip_age=last_clip_age, clips_written=rec.clips_written if rec else None,
        paused=paused or bool(rec and rec.paused), queue=queue_counts(paths),
        data_bytes=data, free_bytes=free,
        last_sleep=LastSleep.read(paths.last_sleep_file),
        sleeping_pid=live.scheduler.sleeping_pid if live else None,
        sleeping_since=live.scheduler.sleeping_since if live else None,
        next_window_opens=opens, next_window_closes=closes,
        scheduler=f"{live.scheduler.decision}: {live.scheduler.reason}" if live else None,
        problem=problem,
        faults={k: asdict(v) for k, v in st.faults.items()} if st else {},
        retention=_retention(st.retention) if st and st.retention else None,
        models=models_in_use(paths))
