"""When to sleep. A sleep cycle starts only when every condition holds: inside the night
window (local time), the user idle long enough, on mains power, and work queued. It is
told to stop (SIGINT: it checkpoints and exits) when the user comes back, the power
goes, or the window closes; the next time every condition holds it resumes.

The decisions are pure functions of the readings (tested directly); `Scheduler` is the
loop around them, with the clock, the probes and the child's command injectable so a
test can play a night in seconds.

Local times are turned into instants one occurrence at a time and all arithmetic is done
on UTC instants, so a window that crosses a daylight-saving change lasts the real time
it covers (a 01:00-06:00 window is 4 hours long on the night clocks spring forward) and
a start time that does not exist that night opens the window when the clocks jump past
it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from datetime import time as dtime
from typing import Callable

from wm.base import log
from wm.base.clipids import local_tz
from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.daemon.children import same_command, spawn
from wm.daemon.probes import Idle, Probes

START, STOP, KEEP, WAIT = "start", "stop", "keep", "wait"

# How long a child told to stop may take to checkpoint before it is killed. `wm sleep`
# promises 30 s; a little slack for a slow disk.
STOP_GRACE_SECONDS = 45.0
MAX_FAILURES_PER_WINDOW = 3


# -- local time ---------------------------------------------------------------------

def _wall(instant: datetime, tz: tzinfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def first_instant(day: date, at: dtime, tz: tzinfo) -> datetime:
    """The first UTC instant at which the wall clock in `tz` on `day` reads `at` or later:
    the earlier of two readings when the time repeats (clocks go back), the moment the
    clocks jump when it does not exist (clocks go forward)."""
    naive = datetime.combine(day, at)
    a = naive.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
    b = naive.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    lo, hi = min(a, b), max(a, b)
    if _wall(lo, tz) == naive:
        return lo
    # In a gap: the wall clock reads before `at` at lo and after it at hi.
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _wall(datetime.fromtimestamp(mid, timezone.utc), tz) >= naive:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, timezone.utc)


@dataclass(frozen=True)
class NightWindow:
    """A daily local-time window "HH:MM-HH:MM"; it wraps midnight when the end is not
    after the start ("23:00-06:00"); equal ends mean the whole day."""
    start: dtime
    end: dtime

    @classmethod
    def parse(cls, text: str) -> "NightWindow":
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
        if not m:
            raise WmError(f"night window '{text}' must look like HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise WmError(f"night window '{text}' has a time outside 00:00-23:59")
        return cls(dtime(h1, m1), dtime(h2, m2))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def occurrence(self, day: date, tz: tzinfo) -> tuple[datetime, datetime]:
        """The window that opens on local `day`, as UTC instants [start, end)."""
        opens = first_instant(day, self.start, tz)
        if self.end > self.start:
            return opens, first_instant(day, self.end, tz)
        if self.end == self.start:
            return opens, first_instant(day + timedelta(days=1), self.start, tz)
        return opens, first_instant(day + timedelta(days=1), self.end, tz)

    def current(self, now: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
        """The occurrence that contains `now`, if any."""
        today = now.astimezone(tz).date()
        for day in (today - timedelta(days=1), today):
            opens, closes = self.occurrence(day, tz)
            if opens <= now < closes:
                return opens, closes
        return None

    def next(self, now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
        """The occurrence that contains `now`, else the next one to open."""
        today = now.astimezone(tz).date()
        for k in (-1, 0, 1, 2):
            opens, closes = self.occurrence(today + timedelta(days=k), tz)
            if closes > now:
                return opens, closes
        raise AssertionError("a daily window always opens within two days")


# -- the decision -------------------------------------------------------------------

@dataclass(frozen=True)
class Readings:
    """What the scheduler sees at one look."""
    now: datetime          # aware
    idle: Idle
    on_power: bool
    queued: int            # clips waiting for a sleep cycle


@dataclass(frozen=True)
class Decision:
    action: str            # START | STOP | KEEP | WAIT
    reason: str


@dataclass(frozen=True)
class Done:
    """No more cycles in the window that opened at `window_opens`, and why."""
    window_opens: datetime
    why: str


def decide(window: NightWindow, tz: tzinfo, r: Readings, running: bool,
           done: Done | None = None) -> Decision:
    """Start, stop or leave the sleep cycle. One completed cycle per window: a recorder
    that keeps filling the queue at night would otherwise keep it training until dawn."""
    current = window.current(r.now, tz)
    if running:
        if current is None:
            return Decision(STOP, "the night window closed")
        # The load average rises with our own training: it cannot tell the user is back.
        if not r.idle.idle and r.idle.source != "load":
            return Decision(STOP, "the user is back")
        if not r.on_power:
            return Decision(STOP, "on battery")
        return Decision(KEEP, "sleeping")
    unmet = []
    if current is None:
        opens, _ = window.next(r.now, tz)
        unmet.append(f"outside the night window {window} (opens {opens.astimezone(tz):%a %H:%M})")
    elif done is not None and done.window_opens == current[0]:
        unmet.append(done.why)
    if not r.idle.idle:
        unmet.append("the user is active")
    if not r.on_power:
        unmet.append("on battery")
    if r.queued <= 0:
        unmet.append("nothing queued")
    if unmet:
        return Decision(WAIT, "; ".join(unmet))
    return Decision(START, f"night window {window}, user idle ({r.idle.source}), on power, "
                           f"{r.queued} clips queued")


def budget_seconds(settings: Settings, now: datetime, closes: datetime) -> float:
    """A scheduled cycle gets its configured budget, but no more than the window has left."""
    left = (closes - now).total_seconds()
    return max(60.0, min(settings.daemon.sleep_budget_minutes * 60.0, left))


# -- the child ----------------------------------------------------------------------

def sleep_command(config_path: str | os.PathLike | None) -> Callable[[float], list[str]]:
    """argv of a scheduled `wm sleep` given its budget in seconds."""
    def argv(budget: float) -> list[str]:
        cmd = [sys.executable, "-m", "wm", "sleep", "--now", "--budget", str(int(budget))]
        if config_path:
            cmd += ["--config", str(config_path)]
        return cmd
    return argv


@dataclass(frozen=True)
class SleepRun:
    """The cycle the scheduler started (or last started)."""
    pid: int
    started: float         # wall time (time.time())
    started_mono: float
    window_opens: datetime
    budget: float
    argv: list[str]


@dataclass(frozen=True)
class SchedulerView:
    """What `wm status` shows about the scheduler."""
    window: str
    next_opens: str        # ISO, local
    next_closes: str
    decision: str
    reason: str
    sleeping_pid: int | None
    sleeping_since: float | None
    sleeping_argv: list[str] | None = None


class Scheduler:
    """Looks every check_seconds (`tick`) and polls its child often (`poll`). Both run on
    the supervisor's main thread: the child's parent-death signal belongs to the thread
    that forked it."""

    def __init__(self, settings: Settings, paths: Paths, probes: Probes, *,
                 queued: Callable[[], int], clock: Callable[[], float] = time.time,
                 tz: tzinfo | None = None,
                 command: Callable[[float], list[str]] | None = None,
                 on_child_exit: Callable[[int], None] | None = None):
        self.settings = settings
        self.paths = paths
        self.probes = probes
        self.queued = queued
        self.clock = clock
        self.fixed_tz = tz
        self.tz = tz or local_tz()
        self.command = command or sleep_command(None)
        self.on_child_exit = on_child_exit
        self.window = NightWindow.parse(settings.daemon.night_window)
        self.log = log.get("wm.scheduler")
        self.child: subprocess.Popen | None = None
        self.run: SleepRun | None = None
        self.stop_sent: float | None = None       # monotonic time SIGINT was sent
        self.done: Done | None = None
        self.failures: dict[datetime, int] = {}   # window opening -> failed cycles in it
        self.last = Decision(WAIT, "not looked yet")
        self.orphan: tuple[int, list[str], float] | None = None   # pid, argv, monotonic seen

    def adopt(self, pid: int, argv: list[str] | None) -> None:
        """A cycle started by a previous daemon that died: no new cycle until it is gone.
        On Linux the kernel already sent it SIGINT when its parent died."""
        if not argv or not same_command(pid, argv):
            return
        self.log.warning("sleep_orphan", pid=pid, action="waiting for it to checkpoint and exit")
        if not sys.platform.startswith("linux"):
            os.kill(pid, signal.SIGINT)
        self.orphan = (pid, argv, time.monotonic())

    def _orphan_gone(self) -> bool:
        if self.orphan is None:
            return True
        pid, argv, since = self.orphan
        if not same_command(pid, argv):
            self.orphan = None
            return True
        if time.monotonic() - since > STOP_GRACE_SECONDS:
            self.log.warning("sleep_kill", pid=pid, reason="orphaned cycle did not exit")
            os.kill(pid, signal.SIGKILL)
        return False

    def update(self, settings: Settings) -> None:
        """New settings (SIGHUP); a running cycle is judged by them at the next look."""
        self.settings = settings
        self.window = NightWindow.parse(settings.daemon.night_window)
        self.tz = self.fixed_tz or local_tz()      # the machine may have moved zone

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def readings(self) -> Readings:
        return Readings(now=self.now(),
                        idle=self.probes.idle(self.settings.daemon.idle_minutes * 60.0),
                        on_power=self.probes.on_power(), queued=self.queued())

    @property
    def running(self) -> bool:
        return self.child is not None

    def tick(self) -> Decision:
        self.poll()
        r = self.readings()
        d = decide(self.window, self.tz, r, self.running and self.stop_sent is None, self.done)
        if self.stop_sent is not None:
            d = Decision(KEEP, "waiting for the sleep cycle to checkpoint")
        elif not self._orphan_gone():
            d = Decision(WAIT, f"the previous daemon's sleep cycle (pid {self.orphan[0]}) "
                               "is still stopping")
        if d.action == START:
            self._start(r)
        elif d.action == STOP:
            self.log.info("sleep_stopping", reason=d.reason, pid=self.child.pid)
            self.interrupt()
        if (d.action, d.reason) != (self.last.action, self.last.reason):
            self.log.info("scheduler", decision=d.action, reason=d.reason)
        self.last = d
        return d

    def _start(self, r: Readings) -> None:
        opens, closes = self.window.current(r.now, self.tz)
        budget = budget_seconds(self.settings, r.now, closes)
        argv = self.command(budget)
        self.child = spawn(argv)
        self.run = SleepRun(self.child.pid, time.time(), time.monotonic(), opens, budget, argv)
        self.stop_sent = None
        self.log.info("sleep_started", pid=self.child.pid, budget_s=round(budget),
                      queued=r.queued, argv=" ".join(argv))

    def interrupt(self) -> None:
        if self.child is not None and self.stop_sent is None and self.child.poll() is None:
            try:
                self.child.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
            self.stop_sent = time.monotonic()

    def poll(self) -> int | None:
        """Reap the child if it exited; kill it if it ignores SIGINT too long."""
        if self.child is None:
            return None
        rc = self.child.poll()
        if rc is None:
            if self.stop_sent is not None and time.monotonic() - self.stop_sent > STOP_GRACE_SECONDS:
                self.log.warning("sleep_kill", pid=self.child.pid,
                                 reason=f"no exit {STOP_GRACE_SECONDS:.0f} s after SIGINT")
                self.child.kill()
                self.child.wait()
            return None
        # 130: `wm sleep` stopped by a signal not ours (someone's SIGINT/SIGTERM); it
        # checkpointed, so it is resumed like one we stopped.
        interrupted = self.stop_sent is not None or rc == 130
        outcome = "interrupted" if interrupted else "completed" if rc == 0 else "failed"
        log_fn = self.log.warning if outcome == "failed" else self.log.info
        log_fn("sleep_exited", pid=self.child.pid, rc=rc, outcome=outcome,
               seconds=round(time.monotonic() - self.run.started_mono, 1))
        opens = self.run.window_opens
        if outcome == "completed":
            self.done = Done(opens, "already slept in this window")
        elif outcome == "failed":
            # Retried (a crash loses at most the work since its last checkpoint), but a
            # cycle that keeps failing must not restart every minute all night.
            self.failures[opens] = self.failures.get(opens, 0) + 1
            if self.failures[opens] >= MAX_FAILURES_PER_WINDOW:
                self.done = Done(opens, f"the sleep cycle failed {self.failures[opens]} times "
                                        "in this window")
        pid = self.child.pid
        self.child, self.stop_sent = None, None
        if self.on_child_exit is not None:
            self.on_child_exit(pid)
        return rc

    def stop(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """Daemon shutdown: ask the cycle to checkpoint, wait, kill if it will not."""
        if self.child is None:
            return
        self.interrupt()
        try:
            self.child.wait(timeout)
        except subprocess.TimeoutExpired:
            self.log.warning("sleep_kill", pid=self.child.pid, reason="shutdown timeout")
            self.child.kill()
            self.child.wait()
        self.poll()

    def view(self) -> SchedulerView:
        opens, closes = self.window.next(self.now(), self.tz)
        return SchedulerView(
            window=str(self.window),
            next_opens=opens.astimezone(self.tz).isoformat(),
            next_closes=closes.astimezone(self.tz).isoformat(),
            decision=self.last.action, reason=self.last.reason,
            sleeping_pid=self.child.pid if self.child else None,
            sleeping_since=self.run.started if self.child and self.run else None,
            sleeping_argv=self.run.argv if self.child and self.run else None)
