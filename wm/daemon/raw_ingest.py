"""Recordings dropped into data/raw/{date}/ are ingested (their clips then arrive in
data/clips/ like any other and the watcher queues them).

A recording is ingested once it has stopped changing, in a child `wm ingest`: decoding a
long recording must not compete with the recorder's audio callback for this process, and
a crash in a decoder must not take the daemon with it."""
from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from wm.base.atomic import PARTIAL
from wm.base.clipids import parse_date
from wm.base.paths import Paths
from wm.daemon.children import spawn, stop_child

# A raw recording is ingested once it has not changed for this long (a copy in progress
# grows; FSEvents on macOS has no close event to tell us it finished).
SETTLE_SECONDS = 3.0
# Names a copy in progress goes by (browsers, rsync, our own writer).
_IN_PROGRESS = (PARTIAL, ".part", ".crdownload", ".download", ".tmp")
# How long an ingest told to stop may take before it is killed.
STOP_GRACE_SECONDS = 15.0

# (files, date, stopping): ingest these recordings of local `date`; return early when
# `stopping` is set (they are ingested again at the next start).
Ingest = Callable[[list[Path], str, threading.Event], None]


def ingest_command(config_path: str | None) -> Ingest:
    """Ingest through `wm ingest FILES --date DATE` in a low-priority child process."""
    def run(files: list[Path], date: str, stopping: threading.Event) -> None:
        argv = [sys.executable, "-m", "wm", "ingest", *map(str, files), "--date", date]
        if config_path:
            argv += ["--config", str(config_path)]
        with tempfile.TemporaryFile("w+") as err:
            p = spawn(argv, stdout=subprocess.DEVNULL, stderr=err, text=True)
            while p.poll() is None:
                if stopping.wait(0.2):
                    stop_child(p, signal.SIGINT, STOP_GRACE_SECONDS)
                    raise InterruptedError("stopped by the daemon")
            if p.returncode != 0:
                err.seek(0)
                lines = err.read().strip().splitlines()
                raise RuntimeError(lines[-1] if lines else f"wm ingest exited {p.returncode}")
    return run


def is_in_progress(path: Path) -> bool:
    return path.name.startswith(".") or path.name.endswith(_IN_PROGRESS)


class RawIngester:
    """The raw recordings the watcher has seen: each waits to settle, then every settled
    recording of one date goes to one ingest. Driven by the watcher's worker thread;
    `view` may be called from any thread."""

    def __init__(self, paths: Paths, ingest: Ingest, settle_seconds: float,
                 stopping: threading.Event, logger):
        self.paths = paths
        self.ingest = ingest
        self.settle = settle_seconds
        self.stopping = stopping
        self.log = logger
        self._pending: dict[Path, tuple[float, tuple[int, int]]] = {}   # due, (size, mtime)
        self._done: dict[Path, tuple[int, int]] = {}  # ingested this run, by (size, mtime)
        self._lock = threading.Lock()
        self._ingested = self._errors = 0
        self._ingesting: str | None = None
        self._said: set[tuple] = set()

    def view(self) -> tuple[int, int, int, str | None]:
        """(files ingested, files that failed, recordings pending, what is being ingested)"""
        with self._lock:
            return self._ingested, self._errors, len(self._pending), self._ingesting

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def offer(self, path: Path) -> None:
        """A path under data/raw/ was written or renamed into place."""
        raw = self.paths.raw_root
        if path.parent.parent == raw:
            self._arm(path)
        elif path.parent == raw and path.is_file():
            self._say_once("raw_file_without_date", file=path.name,
                           hint=f"put recordings in {self.paths.raw_dir('YYYY-MM-DD')}")

    def rescan(self) -> None:
        """Arm every raw recording on disk (events are lost while the daemon is down)."""
        for day in sorted(p for p in self.paths.raw_root.iterdir() if p.is_dir()):
            for f in sorted(day.iterdir()):
                if f.is_file() and not is_in_progress(f):
                    self._arm(f)

    def _say_once(self, event: str, **kw) -> None:
        key = (event, *kw.values())
        if key not in self._said:
            self._said.add(key)
            self.log.warning(event, **kw)

    def _signature(self, path: Path) -> tuple[int, int] | None:
        """(size, mtime) of a recording; None, and no longer pending, once it is gone."""
        try:
            st = path.stat()
        except FileNotFoundError:
            with self._lock:
                self._pending.pop(path, None)
            return None
        return st.st_size, st.st_mtime_ns

    def _arm(self, path: Path) -> None:
        try:
            parse_date(path.parent.name)
        except ValueError as e:
            self._say_once("raw_folder_not_a_date", folder=path.parent.name, error=str(e))
            return
        sig = self._signature(path)
        if sig is None or self._done.get(path) == sig:
            return
        with self._lock:
            self._pending[path] = (time.monotonic() + self.settle, sig)

    def ingest_due(self) -> None:
        now = time.monotonic()
        due: dict[str, list[Path]] = {}
        for path, (when, sig) in list(self._pending.items()):
            if when > now:
                continue
            current = self._signature(path)
            if current is None:
                continue
            if current != sig or current[0] == 0:
                self._arm(path)      # still being written
                continue
            due.setdefault(path.parent.name, []).append(path)
        for date, files in sorted(due.items()):
            if self.stopping.is_set():
                return
            self._ingest(files, date)

    def _ingest(self, files: list[Path], date: str) -> None:
        with self._lock:
            self._ingesting = ", ".join(f.name for f in files)
        self.log.info("ingest_started", date=date, files=[f.name for f in files])
        ok = True
        try:
            self.ingest(files, date, self.stopping)
        except InterruptedError:
            with self._lock:
                self._ingesting = None
            return          # stays pending: ingested at the next start
        except Exception as e:
            ok = False
            self.log.error("ingest_failed", date=date, files=[f.name for f in files], error=str(e))
        with self._lock:
            self._ingesting = None
            for f in files:
                sig = self._pending.pop(f, (0, None))[1]
                if sig is not None:
                    self._done[f] = sig     # a failed file is not retried until it changes
            if ok:
                self._ingested += len(files)
            else:
                self._errors += len(files)
        if ok:
            self.log.info("ingest_done", date=date, files=len(files))
