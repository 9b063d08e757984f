"""`wm run`: the always-on service. One process holds capture (the recorder's threads),
the watcher (manifests -> queue, raw recordings -> ingest), the sleep scheduler and the
health reporting (systemd notify, state/status.json); training and ingest run in child
processes so they never starve the recorder's audio callback.

SIGTERM and SIGINT stop everything (the clip in flight is finished, a sleep cycle is told
to checkpoint); SIGHUP reloads the settings file. A second `wm run` finds the lock held,
names the pid holding it and exits non-zero.

A fault is a state, not a crash: a part that raises (the watcher, the recorder, a look of
the scheduler, the status write, the database) is logged, retried with back-off and shown
in `wm status` (wm.daemon.faults); a full disk stops recording with a reason while the
daemon runs on, applies retention by itself (wm.daemon.maintenance) and records again
when there is room."""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import tzinfo
from typing import Callable

from wm import __version__
from wm.base import config, lock, log, signals
from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.base.queue import QUEUED, Queue
from wm.capture.diskfloor import below_floor, free_bytes
from wm.daemon.faults import Faults, describe, guarded, supervised_thread
from wm.daemon.maintenance import Maintenance, maintenance_command
from wm.daemon.notify import Heartbeat, Notifier, watchdog_interval
from wm.daemon.probes import Probes, SystemProbes
from wm.daemon.query_service import QueryService, query_service_command
from wm.daemon.raw_ingest import Ingest, ingest_command
from wm.daemon.recorder_guard import RECORDER, RecorderGuard
from wm.daemon.scheduler import Scheduler, sleep_command
from wm.daemon.status_file import WRITE_SECONDS, DaemonStatus, RecorderView, status_line
from wm.daemon.status_report import dir_bytes
from wm.daemon.watcher import Watcher

# How often the main loop wakes: signals, the sleep child, health.
LOOP_SECONDS = 0.25
# Disk used by data/ is measured in the background, at most this often, and less often
# the longer a walk over every file takes (months of clips: several seconds).
DISK_SECONDS = (10.0, 600.0)
# A status write that fails (a full disk) is retried at least this often, so `wm status`
# sees the daemon again soon after there is room.
STATUS_RETRY_SECONDS = 10.0


def run_daemon(settings: Settings, paths: Paths, config_path) -> int:
    return Daemon(settings, paths, config_path).run()


@dataclass(frozen=True)
class Injected:
    """What a test replaces to play a night in seconds; the defaults are the real thing."""
    clock: Callable[[], float] = time.time
    tz: tzinfo | None = None
    probes: Probes | None = None
    recorder: Callable[[Settings, Paths], object] | None = None   # -> a started-able Recorder
    sleep_command: Callable[[float], list[str]] | None = None
    ingest: Ingest | None = None
    settle_seconds: float | None = None
    maintenance_command: Callable[[], list[str]] | None = None
    fault: Callable[[str], None] | None = None   # raises to fail a named part, for tests
    query_command: Callable[[], list[str]] | None = None


def _real_recorder(settings: Settings, paths: Paths):
    from wm.capture.recorder import Recorder

    return Recorder(settings, paths)


def release_dead_claims(q: Queue) -> int:
    """Give back claims held by processes of this machine that no longer exist (a sleep
    cycle killed -9), instead of waiting for their lease to run out."""
    return sum(q.release(owner) for owner in q.dead_owners())


class Daemon:
    def __init__(self, settings: Settings, paths: Paths, config_path=None,
                 injected: Injected = Injected()):
        self.settings = settings
        self.paths = paths
        self.config_path = str(config_path) if config_path else None
        self.inj = injected
        self.log = log.get("wm.daemon")
        self.notifier = Notifier()
        self.watchdog_interval = watchdog_interval()
        # Children must not talk to systemd in our name (systemd's own tools, loginctl
        # among them, report their errors to $NOTIFY_SOCKET).
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(key, None)
        self.stop_requested = threading.Event()
        self.reload_requested = False
        self.started = time.time()
        self.faults = Faults(self.log)
        self.queue: Queue | None = None
        self.capture = RecorderGuard(self.inj.recorder or _real_recorder, paths, self.faults,
                                     self.log)
        self.ready = False
        self._data_bytes: tuple[int, float] | None = None
        self._status_text = ""

    # -- signals ----------------------------------------------------------------------
    def _on_stop(self, signum, frame) -> None:
        self.log.info("signal", signal=signal.Signals(signum).name, action="stop")
        self.stop_requested.set()

    def _on_hup(self, signum, frame) -> None:
        self.reload_requested = True

    # -- life cycle -------------------------------------------------------------------
    def run(self) -> int:
        fd = lock.acquire(self.paths.lock_file)
        try:
            with signals.handling({signal.SIGTERM: self._on_stop, signal.SIGINT: self._on_stop,
                                   signal.SIGHUP: self._on_hup}):
                return self._run()
        finally:
            lock.release(fd)

    def _run(self) -> int:
        s, p = self.settings, self.paths
        self.log.info("daemon_starting", pid=os.getpid(), version=__version__, home=str(p.root),
                      config=self.config_path)
        previous = DaemonStatus.read(p.status_file)
        # A full disk or a locked database must not keep the daemon from recording: the
        # database is retried at every look of the scheduler until it opens.
        guarded(self.faults, "database", self._open_queue)
        self.probes = self.inj.probes or SystemProbes(s)
        self.scheduler = Scheduler(
            s, p, self.probes, queued=self._queued, clock=self.inj.clock,
            tz=self.inj.tz, command=self.inj.sleep_command or sleep_command(self.config_path),
            on_child_exit=lambda pid: self.queue and release_dead_claims(self.queue))
        if previous and previous.scheduler.sleeping_pid:
            self.scheduler.adopt(previous.scheduler.sleeping_pid, previous.scheduler.sleeping_argv)
        self.maintenance = Maintenance(
            s, self.inj.maintenance_command or maintenance_command(self.config_path))
        self.watcher = Watcher(p, ingest=self.inj.ingest or ingest_command(self.config_path),
                               faults=self.faults, fault=self.inj.fault,
                               **({"settle_seconds": self.inj.settle_seconds}
                                  if self.inj.settle_seconds is not None else {}))
        self.queries = QueryService(
            s, self.inj.query_command or query_service_command(self.config_path))
        self.heartbeat = Heartbeat(self.notifier, self.watchdog_interval,
                                   stall_after=2 * s.capture.stall_seconds)
        supervised_thread("wm-disk", "disk usage", self._measure_disk, self.stop_requested,
                          self.faults).start()
        try:
            self.watcher.start()         # clears stale .partial files: before capture starts
            self.capture.start(s)
            guarded(self.faults, "query service", self.queries.start)   # after the recorder
            self.log.info("daemon_started", pid=os.getpid())
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _open_queue(self) -> None:
        if self.queue is None:
            self.queue = Queue(self.paths.memory_db)
            n = release_dead_claims(self.queue)
            if n:
                self.log.info("claims_released", clips=n, reason="their process is gone")

    def _queued(self) -> int:
        """Clips waiting for a sleep cycle; 0 while the database cannot be opened."""
        return self.queue.counts()[QUEUED] if self.queue is not None else 0

    def _loop(self) -> None:
        next_tick = next_status = 0.0
        while not self.stop_requested.is_set():
            if self.reload_requested:
                self.reload_requested = False
                guarded(self.faults, "reload", self._reload)
            now = time.monotonic()
            guarded(self.faults, "scheduler", self.scheduler.poll)
            if now >= next_tick:
                self._look()
                next_tick = now + self.settings.daemon.check_seconds
            guarded(self.faults, RECORDER, self.capture.watch, self.settings)
            guarded(self.faults, "query service", self.queries.watch)
            health = self.capture.health()
            if not self.ready and (health.last_progress is not None or health.paused or health.disk_low):
                self.ready = True
                self._status_text = self._status_line(health)
                self.notifier.ready(self._status_text)
                self.log.info("daemon_ready", camera=health.camera, microphone=health.microphone)
            self.heartbeat.beat(health.last_progress, health.paused or health.disk_low)
            if now >= next_status:
                guarded(self.faults, "status", self._publish, health, most=STATUS_RETRY_SECONDS)
                next_status = now + WRITE_SECONDS
            self.stop_requested.wait(LOOP_SECONDS)

    def _look(self) -> None:
        """Every check_seconds: the database if it is not open yet, the scheduler, and
        retention outside sleep cycles."""
        if self.queue is None:
            guarded(self.faults, "database", self._open_queue)
        guarded(self.faults, "scheduler", self._tick)
        guarded(self.faults, "retention", self._maintain)

    def _tick(self) -> None:
        if self.inj.fault is not None:
            self.inj.fault("scheduler")
        self.scheduler.tick()

    def _maintain(self) -> None:
        low = below_floor(free_bytes(self.paths.root), self.settings.retention.min_free_gb)
        self.maintenance.tick(low_disk=low, sleeping=self.scheduler.running)

    def _shutdown(self) -> None:
        self.notifier.stopping()
        self.log.info("daemon_stopping")
        self.scheduler.interrupt()      # it checkpoints while capture finishes its clip
        self._last_try(RECORDER, self.capture.stop)
        self.watcher.stop()             # after the recorder: its last clip is queued
        self.scheduler.stop()
        self.maintenance.stop()
        self._last_try("query service", self.queries.stop)
        self._last_try("status", lambda: self._publish(self.capture.health()))
        if self.queue is not None:
            self.queue.close()
        self.log.info("daemon_stopped")

    def _last_try(self, part: str, fn) -> None:
        """At shutdown, whatever back-off a part is in: one try, a failure logged."""
        try:
            fn()
        except Exception as e:
            self.log.error("part_failed", part=part, error=describe(e), action="stopping")

    # -- reload -----------------------------------------------------------------------
    def _reload(self) -> None:
        self.notifier.reloading()
        try:
            new = config.load(self.config_path)
        except WmError as e:
            self.log.error("reload_failed", error=str(e), kept="the settings in use")
            self.notifier.ready()
            return
        old = self.settings
        if Paths.from_settings(new).root != self.paths.root:
            self.log.warning("reload_paths_ignored", reason="the data root changes only at restart")
        if new.logging != old.logging:
            log.setup(self.paths.log_file, new.logging.level, new.logging.max_bytes,
                      new.logging.backups)
        self.settings = new
        self.scheduler.update(new)
        self.maintenance.update(new)
        self.queries.update(new)
        if hasattr(self.probes, "update"):
            self.probes.update(new)
        self.heartbeat.stall_after = 2 * new.capture.stall_seconds
        if new.capture != old.capture:
            self.settings = self.capture.swap(old, new)
        changed = [k for (k, v, _), (_, w, _) in zip(config.flatten(old), config.flatten(new)) if v != w]
        self.log.info("reloaded", changed=changed, config=self.config_path)
        self.notifier.ready()

    # -- health -------------------------------------------------------------------------
    def _measure_disk(self) -> None:
        while not self.stop_requested.is_set():
            t0 = time.monotonic()
            self._data_bytes = (dir_bytes(self.paths.data), time.time())
            took = time.monotonic() - t0
            self.stop_requested.wait(min(DISK_SECONDS[1], max(DISK_SECONDS[0], 100 * took)))

    def _status_line(self, h) -> str:
        try:
            queued = str(self._queued()) if self.queue is not None else "?"
        except sqlite3.Error:       # locked right now: the line still goes out
            queued = "?"
        return status_line(h, self.scheduler.view(), queued)

    def _publish(self, h) -> None:
        if h is not None and self.ready:   # READY=1 carries the first status line
            line = self._status_line(h)
            if line != self._status_text:
                self._status_text = line
                self.notifier.status(line)
        rec = RecorderView(
            camera=h.camera if h else "off", microphone=h.microphone if h else "off",
            last_clip_end=h.last_clip_end if h else None,
            clips_written=h.clips_written if h else 0, paused=bool(h and h.paused),
            disk_low=bool(h and h.disk_low),
            data_age=(round(time.monotonic() - h.last_progress, 3)
                      if h and h.last_progress is not None else None))
        bytes_at = self._data_bytes
        DaemonStatus(pid=os.getpid(), started=self.started, updated=time.time(),
                     config=self.config_path, recorder=rec, scheduler=self.scheduler.view(),
                     watcher=self.watcher.view(),
                     data_bytes=bytes_at[0] if bytes_at else None,
                     data_bytes_at=bytes_at[1] if bytes_at else None,
                     faults=self.faults.view(),
                     retention=self.maintenance.view()).write(self.paths.status_file)
