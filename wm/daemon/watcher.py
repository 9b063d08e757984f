"""Watches data/: a clip's manifest arriving queues the clip; a recording dropped into
data/raw/{date}/ is ingested (its clips then arrive like any other).

Clips are written to a `.partial` name and renamed, manifest last, so a clip is complete
when its manifest appears, which watchdog reports as a *moved* event. Events that happen
while the daemon is down are lost: `start` removes stale `.partial` files and rescans
every manifest and raw recording. Enqueueing is idempotent, so a clip seen twice (event
and rescan) is queued once.

The observer thread only hands paths over; one worker thread owns the queue connection
and runs ingests, which happen in a child process: decoding a long recording must not
compete with the recorder's audio callback for this process, and a crash in a decoder
must not take the daemon with it."""
from __future__ import annotations

import logging
import queue as queue_mod
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from wm.base import log
from wm.base.atomic import PARTIAL
from wm.base.clipids import parse_date
from wm.base.config import Settings
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.capture.scan import queue_clip, queue_clips_on_disk
from wm.capture.writer import remove_partials
from wm.daemon.children import spawn
from wm.daemon.status import WatcherView

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
                    p.send_signal(signal.SIGINT)
                    try:
                        p.wait(STOP_GRACE_SECONDS)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                    raise InterruptedError("stopped by the daemon")
            if p.returncode != 0:
                err.seek(0)
                lines = err.read().strip().splitlines()
                raise RuntimeError(lines[-1] if lines else f"wm ingest exited {p.returncode}")
    return run


def _is_in_progress(path: Path) -> bool:
    return path.name.startswith(".") or path.name.endswith(_IN_PROGRESS)


class _Handler(FileSystemEventHandler):
    def __init__(self, inbox: queue_mod.Queue):
        self.inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        # A rename is a moved event: the new name is what counts.
        self.inbox.put(Path(event.dest_path if event.event_type == "moved" else event.src_path))


class Watcher:
    def __init__(self, settings: Settings, paths: Paths, *, ingest: Ingest | None = None,
                 settle_seconds: float = SETTLE_SECONDS):
        self.settings = settings
        self.paths = paths
        self.ingest = ingest or ingest_command(None)
        self.settle = settle_seconds
        self.log = log.get("wm.watcher")
        self.inbox: queue_mod.Queue[Path] = queue_mod.Queue()
        self.observer = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.scanned = threading.Event()      # the start-up rescan is done
        self._pending: dict[Path, tuple[float, tuple[int, int]]] = {}   # due, (size, mtime)
        self._done: dict[Path, tuple[int, int]] = {}  # ingested this run, by (size, mtime)
        self._lock = threading.Lock()
        self._enqueued = self._rescanned = self._ingested = self._ingest_errors = 0
        self._ingesting: str | None = None
        self._said: set[tuple] = set()

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> None:
        """Remove stale `.partial` files (call before the recorder starts: its own
        in-flight files are `.partial` too), start watching, then rescan in the worker."""
        removed = remove_partials(self.paths)
        if removed:
            self.log.info("partials_removed", count=len(removed),
                          files=[str(p.relative_to(self.paths.data)) for p in removed[:20]])
        for folder in (self.paths.clips_root, self.paths.raw_root):
            folder.mkdir(parents=True, exist_ok=True)
        # watchdog logs every inotify event at debug level: our debug log is about clips.
        logging.getLogger("watchdog").setLevel(logging.INFO)
        self.started_at = time.time()
        self.observer = Observer()
        handler = _Handler(self.inbox)
        self.observer.schedule(handler, str(self.paths.clips_root), recursive=True)
        self.observer.schedule(handler, str(self.paths.raw_root), recursive=True)
        self.observer.daemon = True
        self.observer.start()
        self.thread = threading.Thread(target=self._work, name="wm-watcher", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; clips that arrived meanwhile (the recorder's last one) are still
        queued: what is in hand, then a sweep of the folders written to since the start
        (the last events may never have been delivered)."""
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout)
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def update(self, settings: Settings) -> None:
        self.settings = settings

    def view(self) -> WatcherView:
        with self._lock:
            return WatcherView(self._enqueued, self._rescanned, self._ingested,
                               self._ingest_errors, len(self._pending), self._ingesting)

    # -- the worker -----------------------------------------------------------------
    def _work(self) -> None:
        q = Queue(self.paths.memory_db)
        try:
            n = self.rescan(q)
            with self._lock:
                self._rescanned = n
            self.scanned.set()
            while not self.stopping.is_set():
                try:
                    path = self.inbox.get(timeout=0.2)
                except queue_mod.Empty:
                    path = None
                while path is not None:
                    self._route(q, path)
                    try:
                        path = self.inbox.get_nowait()
                    except queue_mod.Empty:
                        path = None
                self._ingest_due()
            while not self.inbox.empty():
                self._route(q, self.inbox.get_nowait())
            n = queue_clips_on_disk(self.paths, q, since=self.started_at)
            with self._lock:
                self._enqueued += n
        except Exception as e:  # the daemon keeps recording; the rescan at restart catches up
            self.log.error("watcher_failed", error=repr(e), exc_info=True)
        finally:
            self.scanned.set()
            q.close()

    def _route(self, q: Queue, path: Path) -> None:
        if _is_in_progress(path):
            return
        if path.suffix == ".json" and path.is_relative_to(self.paths.clips_root):
            self._enqueue(q, path)
        elif path.is_relative_to(self.paths.raw_root) and path.parent.parent == self.paths.raw_root:
            self._arm(path)
        elif path.parent == self.paths.raw_root and path.is_file():
            self._say_once("raw_file_without_date", file=path.name,
                           hint=f"put recordings in {self.paths.raw_dir('YYYY-MM-DD')}")

    def _enqueue(self, q: Queue, path: Path) -> None:
        if queue_clip(self.paths, q, path):
            with self._lock:
                self._enqueued += 1

    def rescan(self, q: Queue) -> int:
        """Queue every clip on disk the queue does not know; arm every raw recording."""
        n = queue_clips_on_disk(self.paths, q)
        with self._lock:
            self._enqueued += n
        for day in sorted(p for p in self.paths.raw_root.iterdir() if p.is_dir()):
            for f in sorted(day.iterdir()):
                if f.is_file() and not _is_in_progress(f):
                    self._arm(f)
        self.log.info("rescan_done", queued=n, raw_files=len(self._pending), counts=q.counts())
        return n

    # -- raw recordings -------------------------------------------------------------
    def _say_once(self, event: str, **kw) -> None:
        key = (event, *kw.values())
        if key not in self._said:
            self._said.add(key)
            self.log.warning(event, **kw)

    def _arm(self, path: Path) -> None:
        try:
            parse_date(path.parent.name)
        except ValueError as e:
            self._say_once("raw_folder_not_a_date", folder=path.parent.name, error=str(e))
            return
        try:
            st = path.stat()
        except FileNotFoundError:
            self._pending.pop(path, None)
            return
        sig = (st.st_size, st.st_mtime_ns)
        if self._done.get(path) == sig:
            return
        with self._lock:
            self._pending[path] = (time.monotonic() + self.settle, sig)

    def _ingest_due(self) -> None:
        now = time.monotonic()
        due: dict[str, list[Path]] = {}
        for path, (when, sig) in list(self._pending.items()):
            if when > now:
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                with self._lock:
                    self._pending.pop(path, None)
                continue
            if (st.st_size, st.st_mtime_ns) != sig or st.st_size == 0:
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
                self._ingest_errors += len(files)
        if ok:
            self.log.info("ingest_done", date=date, files=len(files))
