"""`wm sleep`: one nightly cycle from the command line, alone (a lock) and stoppable
(SIGINT/SIGTERM checkpoint and stop; the next run resumes). Its outcome is written to
state/last_sleep.json however it ends."""
from __future__ import annotations

import fcntl
import time
from datetime import datetime, timezone

from wm.base import log
from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.lastsleep import FAILED, INTERRUPTED, LastSleep
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.base.signals import StopFlag, stop_on_signals
from wm.capture.scan import queue_clips_on_disk
from wm.nightly.cycle import SleepOutcome, sleep_cycle

_log = log.get("wm.learn")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def queue_unwatched_clips(paths: Paths) -> int:
    """Queue the clips that no watcher saw (`wm record` or `wm ingest` without `wm run`).
    Only day folders changed since an hour before the previous cycle began are read, so
    a year of clips is not rescanned every night."""
    last = LastSleep.read(paths.last_sleep_file)
    began = last.started_epoch if last else None
    q = Queue(paths.memory_db)
    try:
        n = queue_clips_on_disk(paths, q, began - 3600 if began is not None else None)
    finally:
        q.close()
    if n:
        _log.info("clips_queued", clips=n, reason="written while no watcher ran")
    return n


def run_sleep(settings: Settings, paths: Paths, date: str | None, budget_seconds: float | None) -> int:
    """The CLI: 0 when the cycle completed (or had nothing to do), 130 when a signal
    stopped it (it resumes next time)."""
    paths.state.mkdir(parents=True, exist_ok=True)
    lock = open(paths.sleep_lock_file, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise WmError(f"another sleep cycle is running (lock: {paths.sleep_lock_file})") from None
    stop = StopFlag()
    started, t0 = _now(), time.monotonic()
    outcome = SleepOutcome(FAILED, date=date)
    try:
        with stop_on_signals(stop):
            queue_unwatched_clips(paths)
            outcome = sleep_cycle(settings, paths, date, budget_seconds, stop)
    except BaseException as e:
        outcome.stages["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        LastSleep(started=started, finished=_now(), seconds=round(time.monotonic() - t0, 1),
                  result=outcome.result, stages=outcome.stages, date=outcome.date,
                  version=outcome.version).write(paths.last_sleep_file)
        lock.close()
    _log.info("sleep_finished", result=outcome.result, version=outcome.version,
              seconds=round(time.monotonic() - t0, 1))
    for name, note in outcome.stages.items():
        print(f"{name}: {note}")
    return 130 if outcome.result == INTERRUPTED else 0
