"""systemd's notify protocol without extra packages: one datagram per message to the
socket named by $NOTIFY_SOCKET (a leading '@' names an abstract socket). Outside systemd
(no $NOTIFY_SOCKET) every call is a no-op.

WATCHDOG=1 is a promise that capture is making progress, not that the process is alive:
the heartbeat is sent only while the recorder has received a frame or an audio block
recently, so a camera read that hangs stops the pings and systemd restarts the service."""
from __future__ import annotations

import os
import socket
import time
from typing import Callable, Mapping

from wm.base import log


class Notifier:
    def __init__(self, address: str | None = None, environ: Mapping[str, str] = os.environ):
        self.address = address if address is not None else environ.get("NOTIFY_SOCKET") or None
        self.log = log.get("wm.notify")
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        if self.address is None:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        try:
            # Non-blocking: a manager that reads slowly must not stall the daemon's loop.
            kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            with socket.socket(socket.AF_UNIX, kind) as s:
                s.sendto("\n".join(lines).encode(), addr)
        except OSError as e:
            if not self._failed:   # once: systemd going away must not flood the log
                self._failed = True
                self.log.warning("notify_failed", socket=self.address, error=str(e))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")


def watchdog_interval(environ: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None if systemd does
    not watch this process."""
    usec = environ.get("WATCHDOG_USEC")
    owner = environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if owner and int(owner) != (pid if pid is not None else os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


def capture_alive(last_progress: float | None, paused: bool, now: float, stall_after: float) -> bool:
    """Does capture count as making progress? Paused (by the user or for low disk) is a
    healthy state with no data; otherwise a frame or audio block must be recent."""
    if paused:
        return True
    return last_progress is not None and now - last_progress <= stall_after


class Heartbeat:
    """Call `beat` often; it pings when a ping is due and capture is alive."""

    def __init__(self, notifier: Notifier, interval: float | None, stall_after: float,
                 monotonic: Callable[[], float] = time.monotonic):
        self.notifier = notifier
        self.interval = interval
        self.stall_after = stall_after
        self.monotonic = monotonic
        self.last_ping: float | None = None
        self.alive = False          # no data yet at start: silent until the first arrives
        self.stalled_once = False
        self.log = log.get("wm.notify")

    def beat(self, last_progress: float | None, paused: bool) -> bool:
        now = self.monotonic()
        alive = capture_alive(last_progress, paused, now, self.stall_after)
        if alive != self.alive:
            self.alive = alive
            age = None if last_progress is None else round(now - last_progress, 1)
            if not alive:
                self.stalled_once = True
                self.log.error("capture_stalled", seconds_since_data=age, watchdog="withheld")
            elif self.stalled_once:
                self.log.info("capture_progress", watchdog="pinging again")
        if self.interval is None or not alive:
            return False
        if self.last_ping is not None and now - self.last_ping < self.interval:
            return False
        self.last_ping = now
        return self.notifier.watchdog()
