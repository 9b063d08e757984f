"""Retention run by `wm run` itself, outside sleep cycles. A sleep cycle applies retention
when it ends, but a cycle starts only at night with work queued: on a disk so full that
the recorder writes nothing, nothing is queued, no cycle comes and nothing is ever freed;
during a long `wm pause` media outlives retention.raw_days. So the daemon applies
retention on its own: every daemon.retention_minutes, and every few minutes while the
disk is under retention.min_free_gb (less often while that frees nothing).

The work (a walk over every media file, deletions, thumbnails) runs in a low-priority
child process (wm.daemon.maintenance_run), never in the recorder's process. The decision
is a pure function of the readings, tested directly."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable

from wm.base import log
from wm.base.config import Settings
from wm.daemon.children import spawn, stop_child
from wm.daemon.status_file import RetentionView

# While the disk is low: the first try at once, then this often, doubling for each try in a
# row that freed nothing (the rest is not in memory yet, or not wm's), up to the period.
LOW_DISK_SECONDS = 120.0
# The first regular run after the daemon starts (not at once: a boot is busy enough).
FIRST_RUN_SECONDS = 600.0
STOP_GRACE_SECONDS = 10.0
LOW, REGULAR = "the disk is under retention.min_free_gb", "its regular turn"


def maintenance_due(now: float, daemon_started: float, last_started: float | None,
                    low_disk: bool, fruitless: int, period: float, busy: bool) -> str | None:
    """Why retention should run now (monotonic seconds throughout), or None. `busy`: a run
    or a sleep cycle (which applies retention itself) is under way; `fruitless`: runs in a
    row for a low disk that freed nothing."""
    if busy:
        return None
    if low_disk:
        every = min(period, LOW_DISK_SECONDS * 2 ** min(fruitless, 10))
        return LOW if last_started is None or now - last_started >= every else None
    if last_started is None:
        return REGULAR if now - daemon_started >= min(period, FIRST_RUN_SECONDS) else None
    return REGULAR if now - last_started >= period else None


def maintenance_command(config_path: str | None) -> Callable[[], list[str]]:
    def argv() -> list[str]:
        cmd = [sys.executable, "-m", "wm.daemon.maintenance_run"]
        return cmd + (["--config", str(config_path)] if config_path else [])
    return argv


def describe_result(result: dict) -> str:
    """What a run did, in words."""
    said = f"purged {result.get('purged', 0)} clips, freed {result.get('freed_bytes', 0) / 1e6:.1f} MB"
    if result.get("partials_removed"):
        said += f", removed {result['partials_removed']} stale .partial files"
    return said


@dataclass
class _Run:
    proc: subprocess.Popen
    started_mono: float
    reason: str
    out: BinaryIO        # files, not pipes: a chatty child never blocks on a full pipe
    err: BinaryIO

    def said(self) -> tuple[bytes, bytes]:
        self.out.seek(0)
        self.err.seek(0)
        texts = self.out.read(), self.err.read()
        self.out.close()
        self.err.close()
        return texts


class Maintenance:
    """Starts, reaps and reports the retention child; driven by the supervisor's loop."""

    def __init__(self, settings: Settings, command: Callable[[], list[str]],
                 monotonic: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.command = command
        self.monotonic = monotonic
        self.started = monotonic()
        self.log = log.get("wm.daemon.maintenance")
        self.run: _Run | None = None
        self.last_started: float | None = None      # monotonic
        self.last_wall: float | None = None
        self.last_reason: str | None = None
        self.last_result: str | None = None
        self.fruitless = 0

    def update(self, settings: Settings) -> None:
        self.settings = settings

    def tick(self, low_disk: bool, sleeping: bool) -> str | None:
        """Reap a finished run; start one when due. Returns why one started, if it did."""
        self.poll()
        now = self.monotonic()
        why = maintenance_due(now, self.started, self.last_started, low_disk, self.fruitless,
                              self.settings.daemon.retention_minutes * 60.0,
                              busy=sleeping or self.run is not None)
        if why is not None:
            argv = self.command()
            self.last_started, self.last_wall, self.last_reason = now, time.time(), why
            # Counted as a try even if it cannot start: a failing spawn is not retried
            # every loop.
            out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
            try:
                proc = spawn(argv, stdout=out, stderr=err)
            except BaseException:
                out.close()
                err.close()
                raise
            self.run = _Run(proc, now, why, out, err)
            self.log.info("retention_started", reason=why, pid=self.run.proc.pid)
        return why

    def poll(self) -> None:
        if self.run is None or self.run.proc.poll() is None:
            return
        run, self.run = self.run, None
        out, err = run.said()
        result = _last_json(out)
        if run.proc.returncode == 0 and result is not None:
            self.last_result = describe_result(result)
            freed = result.get("freed_bytes", 0) > 0
            self.fruitless = 0 if freed or run.reason != LOW else self.fruitless + 1
            self.log.info("retention_done", reason=run.reason, result=self.last_result,
                          seconds=round(self.monotonic() - run.started_mono, 1))
        else:
            lines = err.decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"exit status {run.proc.returncode}"
            self.last_result = f"failed: {why}"
            self.fruitless += run.reason == LOW
            self.log.warning("retention_failed", reason=run.reason, error=why)

    def stop(self) -> None:
        """Daemon shutdown. Retention is safe to stop anywhere (the next run finishes what
        this one marked), so a run is told to stop and killed if it takes too long."""
        if self.run is None:
            return
        stop_child(self.run.proc, signal.SIGTERM, STOP_GRACE_SECONDS)
        self.poll()

    def view(self) -> RetentionView:
        return RetentionView(running_pid=self.run.proc.pid if self.run else None,
                             last_started=self.last_wall, last_reason=self.last_reason,
                             last_result=self.last_result)


def _last_json(out: bytes) -> dict | None:
    for line in reversed(out.decode(errors="replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None
