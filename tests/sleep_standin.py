"""STAND-IN for `wm sleep` in the daemon's tests (the real sleep cycle is tested with the
learning code). It does what the scheduler relies on, with the real queue: claims queued
clips with a lease a few at a time, "works" on each batch for a moment, marks it
committed (its checkpoint: committed work is never redone), and on SIGINT finishes the
batch in hand, gives back its claims, records "interrupted" and exits 0.

It appends what happened to state/standin.jsonl (start with its nice value and IO
class, sigint, exit) so a test can see the scheduler's decisions from outside."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import datetime, timezone

from wm.base import config
from wm.base.lastsleep import LastSleep
from wm.base.paths import Paths
from wm.base.queue import COMMITTED, Queue, owner_id

BATCH = 2
WORK_SECONDS = float(os.environ.get("STANDIN_WORK_SECONDS", "0.15"))


def _io_class() -> int:
    import ctypes

    IOPRIO_GET, WHO_PROCESS = {"x86_64": 252, "aarch64": 31}[os.uname().machine], 1
    prio = ctypes.CDLL(None, use_errno=True).syscall(IOPRIO_GET, WHO_PROCESS, 0)
    return prio >> 13


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def main() -> int:
    settings = config.load(None)
    paths = Paths.from_settings(settings)
    events = paths.state / "standin.jsonl"
    events.parent.mkdir(parents=True, exist_ok=True)

    def note(**kw) -> None:
        kw["t"] = time.time()
        kw["pid"] = os.getpid()
        with open(events, "a") as f:
            f.write(json.dumps(kw) + "\n")
            f.flush()
            os.fsync(f.fileno())

    stop = []
    signal.signal(signal.SIGINT, lambda *a: (stop.append(1), note(event="sigint")))
    note(event="start", argv=sys.argv[1:], nice=os.nice(0), io_class=_io_class())
    started = time.time()
    q = Queue(paths.memory_db)
    owner = owner_id()
    done = 0
    result = "completed"
    while True:
        if stop:
            result = "interrupted"
            break
        batch = q.claim(owner, BATCH, settings.daemon.lease_seconds)
        if not batch:
            break
        time.sleep(WORK_SECONDS)
        ids = [i.clip_id for i in batch]
        n = q.mark(ids, COMMITTED, owner=owner)
        note(event="committed", ids=ids, marked=n)
        done += n
    q.release(owner)
    LastSleep(started=_iso(started), finished=_iso(time.time()), seconds=time.time() - started,
              result=result, stages={"standin": f"{done} clips committed"}).write(paths.last_sleep_file)
    note(event="exit", result=result, committed=done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
