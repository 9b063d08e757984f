"""The query service as a supervised part of `wm run`: the child process of
wm.daemon.query_server started with the recorder, restarted with back-off when it exits,
restarted with new settings on SIGHUP, stopped with the daemon. Driven by the supervisor's
loop (`watch` several times a second: one poll of the child, nothing else).

It runs at nice NICE, not at the lowest priority of the daemon's batch children
(wm.daemon.children): someone is waiting for its answer, and at nice 19 on a busy machine
a query took ~0.3 s longer (bench/query_latency.py). The recorder, at nice 0 in its own
process, still weighs ~9x more with the scheduler whenever both want a core.

`daemon.query_service: false` turns it off; `wm query` then does every query itself."""
from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from typing import BinaryIO, Callable

from wm.base import log
from wm.base.config import Settings
from wm.daemon.children import spawn, stop_child

# After the service exits: wait this long before starting it again, doubling per exit in a
# row up to the second figure; one that ran STABLE_SECONDS starts over from the first.
RESTART_SECONDS = (1.0, 300.0)
STABLE_SECONDS = 120.0
STOP_GRACE_SECONDS = 5.0
NICE = 10


def spawn_service(argv: list[str], **kw) -> subprocess.Popen:
    """Start the service at nice NICE in its own session (a Ctrl-C at the terminal
    reaches the daemon); a service whose daemon died (kill -9) goes with it."""
    return spawn(argv, nice=NICE, death_signal=signal.SIGTERM, idle_io=False, **kw)


def query_service_command(config_path: str | None) -> Callable[[], list[str]]:
    def argv() -> list[str]:
        cmd = [sys.executable, "-m", "wm.daemon.query_server"]
        return cmd + (["--config", str(config_path)] if config_path else [])
    return argv


def restart_delay(exits_in_a_row: int) -> float:
    low, high = RESTART_SECONDS
    return min(high, low * 2 ** max(0, exits_in_a_row - 1))


def _used(s: Settings) -> tuple:
    """The settings a query reads (the search, the models, the clips, the log)."""
    return s.memory, s.learn, s.capture, s.logging, s.daemon.query_service


def _last_line(f: BinaryIO) -> str:
    f.seek(0)
    lines = f.read()[-4096:].decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


class QueryService:
    def __init__(self, settings: Settings, command: Callable[[], list[str]],
                 monotonic: Callable[[], float] = time.monotonic):
        self.settings, self.command, self.monotonic = settings, command, monotonic
        self.log = log.get("wm.daemon.query")
        self.proc = None
        self.err: BinaryIO | None = None
        self.started_at = 0.0
        self.exits = 0               # in a row, for the back-off
        self.restarts = 0            # since the daemon started, for the curious
        self.next_start: float | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.daemon.query_service

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        if not self.enabled or self.proc is not None:
            return
        self.next_start = None
        self.err = tempfile.TemporaryFile()   # its last words, should it die
        try:
            self.proc = spawn_service(self.command(), stdout=self.err, stderr=self.err)
        except OSError:
            self.err.close()
            self.err = None
            self.exits += 1
            self.next_start = self.monotonic() + restart_delay(self.exits)
            raise
        self.started_at = self.monotonic()
        self.log.info("query_service_started", pid=self.proc.pid)

    def watch(self) -> None:
        """Reap an exited service and start it again when its back-off is over."""
        if self.proc is not None and self.proc.poll() is not None:
            rc, said = self.proc.returncode, _last_line(self.err)
            ran = self.monotonic() - self.started_at
            self._forget()
            self.exits = 1 if ran >= STABLE_SECONDS else self.exits + 1
            delay = restart_delay(self.exits)
            self.next_start = self.monotonic() + delay
            self.log.warning("query_service_exited", rc=rc, said=said, ran=round(ran, 1),
                             restart_in=delay)
        if self.proc is None and self.next_start is not None and self.monotonic() >= self.next_start:
            self.restarts += 1
            self.start()

    def stop(self) -> None:
        self.next_start = None
        if self.proc is not None:
            stop_child(self.proc, signal.SIGTERM, STOP_GRACE_SECONDS)
            self._forget()

    def update(self, settings: Settings) -> None:
        """New settings (SIGHUP): started again with them when they change what it uses."""
        changed = _used(settings) != _used(self.settings)
        self.settings = settings
        if not self.enabled:
            self.stop()
        elif changed or self.proc is None:
            self.stop()
            self.exits = 0
            self.start()

    def _forget(self) -> None:
        self.proc = None
        if self.err is not None:
            self.err.close()
            self.err = None
