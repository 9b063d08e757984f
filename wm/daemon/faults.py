"""Parts of `wm run` that fail are restarted, never silently gone: a thread whose body
raises (the watcher on "database is locked", an I/O error) is logged and started again
after a back-off that doubles with each failure in a row; a step of the main loop that
raises (the scheduler's look, the status write) is skipped for the same back-off. Every
failure is counted and kept, with the last error, for `wm status`."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from wm.base import log
from wm.daemon.status_file import FaultView

# The first retry comes quickly (a locked database is usually free a moment later); a
# part that keeps failing is retried at most this often, so it cannot spin or flood the log.
BACKOFF_SECONDS = (1.0, 60.0)
# A part that ran this long without failing starts its back-off from the beginning again.
HEALTHY_SECONDS = 600.0


def backoff_seconds(failures_in_a_row: int, bounds: tuple[float, float] = BACKOFF_SECONDS) -> float:
    """1, 2, 4, ... seconds, at most bounds[1]."""
    first, most = bounds
    return min(most, first * 2 ** max(0, min(failures_in_a_row - 1, 30)))


def describe(e: BaseException) -> str:
    """An error in one line, for a person: its type and message."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text and text[0] else type(e).__name__


@dataclass
class _Part:
    failures: int = 0           # since the daemon started
    in_a_row: int = 0
    last_error: str = ""
    last_at: float = 0.0        # wall time
    retry_mono: float = 0.0     # monotonic time before which it is not run again
    ok_since: float | None = None


class Faults:
    """The failures of every part, shared by the threads that report them."""

    def __init__(self, logger, bounds: tuple[float, float] = BACKOFF_SECONDS):
        self.log = logger
        self.bounds = bounds
        self._parts: dict[str, _Part] = {}
        self._lock = threading.Lock()

    def failed(self, part: str, e: BaseException, action: str = "restarting",
               ran_for: float = 0.0, most: float | None = None) -> float:
        """Record a failure of a part that had been running `ran_for` seconds; returns how
        long to wait (at most `most` seconds) before trying it again."""
        now = time.monotonic()
        with self._lock:
            p = self._parts.setdefault(part, _Part())
            healthy = max(ran_for, now - p.ok_since if p.ok_since is not None else 0.0)
            if healthy >= HEALTHY_SECONDS:
                p.in_a_row = 0
            p.failures += 1
            p.in_a_row += 1
            p.ok_since = None
            p.last_error, p.last_at = describe(e), time.time()
            wait = backoff_seconds(p.in_a_row, self.bounds)
            wait = wait if most is None else min(wait, most)
            p.retry_mono = now + wait
            first = p.in_a_row == 1
        self.log.error("part_failed", part=part, error=describe(e), failures=p.failures,
                       action=f"{action} in {wait:.0f} s")
        if first:   # the traceback once per run of failures, to the log file only
            log.get(log.CRASH_LOGGER).error("part_failed_traceback", part=part, exc_info=e)
        return wait

    def ok(self, part: str) -> None:
        """The part ran without failing."""
        with self._lock:
            p = self._parts.get(part)
            if p is not None and p.ok_since is None:
                p.ok_since = time.monotonic()

    def waiting(self, part: str) -> bool:
        """Is the part in its back-off now?"""
        with self._lock:
            p = self._parts.get(part)
            return p is not None and time.monotonic() < p.retry_mono

    def view(self) -> dict[str, FaultView]:
        now_mono, now = time.monotonic(), time.time()
        with self._lock:
            return {name: FaultView(
                failures=p.failures, last_error=p.last_error, last_at=p.last_at,
                retry_at=now + p.retry_mono - now_mono if p.retry_mono > now_mono else None)
                for name, p in self._parts.items()}


def guarded(faults: Faults, part: str, fn: Callable, *args, most: float | None = None) -> bool:
    """Run one step of the main loop unless the part is backing off; a failure is recorded,
    not raised (recording goes on). True when it ran and succeeded."""
    if faults.waiting(part):
        return False
    try:
        fn(*args)
    except Exception as e:
        faults.failed(part, e, action="retrying", most=most)
        return False
    faults.ok(part)
    return True


def supervised_thread(name: str, part: str, body: Callable[[], None], stopping: threading.Event,
                      faults: Faults) -> threading.Thread:
    """A daemon thread that runs `body` until it returns or `stopping` is set; when it
    raises, the failure is recorded and `body` runs again after the back-off."""
    def run() -> None:
        while not stopping.is_set():
            started = time.monotonic()
            try:
                body()
                return
            except Exception as e:
                wait = faults.failed(part, e, ran_for=time.monotonic() - started)
            if stopping.wait(wait):
                return
            faults.log.info("part_restarted", part=part)

    return threading.Thread(target=run, name=name, daemon=True)
