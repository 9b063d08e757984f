"""`wm status`: is it recording, what is queued, when it last slept and when it may sleep
next. The daemon writes state/status.json every few seconds (atomically); this reads it
and checks it against what can be checked directly: the lock (is a `wm run` alive?), the
pause file, the queue, the disk and the last sleep cycle's own record.

Exit status: 0 running and recording, 1 running but not recording (paused, devices off,
no recent clip, not responding), 3 not running."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from wm.base.clipids import local_tz
from wm.base.config import Settings
from wm.base.lastsleep import LastSleep
from wm.base.paths import Paths
from wm.daemon import lock
from wm.daemon.scheduler import NightWindow, SchedulerView

RUNNING_RECORDING, RUNNING_NOT_RECORDING, NOT_RUNNING = 0, 1, 3
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
    queue: dict[str, int]
    data_bytes: int
    free_bytes: int
    last_sleep: LastSleep | None
    sleeping_pid: int | None
    sleeping_since: float | None
    next_window_opens: str
    next_window_closes: str
    scheduler: str | None          # the scheduler's last decision and why
    problem: str | None            # why it is not recording, in words

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


def free_bytes(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def queue_counts(paths: Paths) -> dict[str, int]:
    from wm.base.queue import STATES, Queue

    if not paths.memory_db.exists():
        return {s: 0 for s in STATES}
    q = Queue(paths.memory_db)
    try:
        return q.counts()
    finally:
        q.close()


def recent_clip_limit(settings: Settings) -> float:
    """A recording daemon has written a clip within this many seconds."""
    return 3 * settings.capture.clip_seconds + 10


def build_report(settings: Settings, paths: Paths, now: float | None = None) -> Report:
    from wm.capture.pause import is_paused

    now = time.time() if now is None else now
    pid = lock.holder(paths.lock_file)
    running = pid is not None
    st = DaemonStatus.read(paths.status_file) if running else None
    if st is not None and pid and st.pid != pid:
        st = None          # left by an earlier daemon; this one has not written yet
    responding = st is not None and now - st.updated <= STALE_SECONDS
    rec = st.recorder if st else None
    paused = is_paused(paths, now)

    # max: a file played faster than real time dates its clips ahead of the clock.
    last_clip_age = max(0.0, now - rec.last_clip_end) if rec and rec.last_clip_end else None
    problem = None
    if not running:
        problem = "wm run is not running"
    elif st is None:
        problem = "starting (no status yet)"
    elif not responding:
        problem = f"not responding (status {now - st.updated:.0f} s old)"
    elif paused or rec.paused:
        problem = "paused"
    elif rec.disk_low:
        problem = "disk almost full: recording paused"
    elif "ok" not in (rec.camera, rec.microphone):
        problem = f"no device records (camera {rec.camera}, microphone {rec.microphone})"
    elif last_clip_age is None or last_clip_age > recent_clip_limit(settings):
        problem = "no clip written yet" if last_clip_age is None else "no clip written recently"
    recording = running and problem is None

    if responding:
        opens, closes = st.scheduler.next_opens, st.scheduler.next_closes
    else:
        tz = local_tz()
        o, c = NightWindow.parse(settings.daemon.night_window).next(
            datetime.fromtimestamp(now, timezone.utc), tz)
        opens, closes = o.astimezone(tz).isoformat(), c.astimezone(tz).isoformat()
    data = st.data_bytes if responding and st.data_bytes is not None else dir_bytes(paths.data)
    return Report(
        running=running, pid=pid or None, responding=responding,
        since=st.started if st else None, recording=recording,
        camera=rec.camera if rec else None, microphone=rec.microphone if rec else None,
        last_clip_age=last_clip_age, clips_written=rec.clips_written if rec else None,
        paused=paused or bool(rec and rec.paused), queue=queue_counts(paths),
        data_bytes=data, free_bytes=free_bytes(paths.data),
        last_sleep=LastSleep.read(paths.last_sleep_file),
        sleeping_pid=st.scheduler.sleeping_pid if responding else None,
        sleeping_since=st.scheduler.sleeping_since if responding else None,
        next_window_opens=opens, next_window_closes=closes,
        scheduler=f"{st.scheduler.decision}: {st.scheduler.reason}" if responding else None,
        problem=problem)


# -- rendering ------------------------------------------------------------------------

def _age(seconds: float) -> str:
    s = int(round(seconds))
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%a %Y-%m-%d %H:%M")


def render(r: Report, now: float) -> str:
    lines = []
    if r.running:
        up = f", up {_age(now - r.since)}" if r.since else ""
        lines.append(f"wm run:      running (pid {r.pid}{up})")
    else:
        lines.append("wm run:      not running")
    if r.running and r.camera is not None:
        clip = (f"last clip {_age(r.last_clip_age)} ago" if r.last_clip_age is not None
                else "no clip yet")
        lines.append(f"recording:   {'yes' if r.recording else 'NO'} (camera {r.camera}, "
                     f"microphone {r.microphone}; {clip}; {r.clips_written} clips this run)")
    else:
        lines.append(f"recording:   {'yes' if r.recording else 'no'}")
    if r.problem and r.running:
        lines.append(f"problem:     {r.problem}")
    lines.append(f"paused:      {'yes' if r.paused else 'no'}")
    lines.append("queue:       " + ", ".join(f"{n} {state}" for state, n in r.queue.items()))
    lines.append(f"disk:        data {_size(r.data_bytes)}, {_size(r.free_bytes)} free")
    if r.last_sleep is None:
        lines.append("last sleep:  never")
    else:
        ls = r.last_sleep
        took = f" ({_age(ls.seconds)})" if ls.seconds is not None else ""
        started = _when(ls.started) if ls.started else "?"
        lines.append(f"last sleep:  {started}{took}, {ls.result or 'unknown'}")
        if ls.stages:
            lines.append("             " + "; ".join(f"{k}: {v}" for k, v in ls.stages.items()))
    if r.sleeping_pid:
        since = f", for {_age(now - r.sleeping_since)}" if r.sleeping_since else ""
        lines.append(f"sleeping:    now (pid {r.sleeping_pid}{since})")
    lines.append(f"next window: {_when(r.next_window_opens)} - "
                 f"{datetime.fromisoformat(r.next_window_closes):%H:%M}")
    if r.scheduler:
        lines.append(f"scheduler:   {r.scheduler}")
    return "\n".join(lines)


def show_status(settings: Settings, paths: Paths, as_json: bool) -> int:
    now = time.time()
    r = build_report(settings, paths, now)
    if as_json:
        d = asdict(r)
        d["exit_code"] = r.exit_code
        print(json.dumps(d, indent=1))
    else:
        print(render(r, now))
    return r.exit_code


