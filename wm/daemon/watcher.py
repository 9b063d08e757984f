"""Watches data/: a clip's manifest arriving queues the clip; a recording dropped into
data/raw/{date}/ goes to the raw ingester (raw_ingest), whose clips then arrive here like
any other.

Clips are written to a `.partial` name and renamed, manifest last, so a clip is complete
when its manifest appears, which watchdog reports as a *moved* event. Events that happen
while the daemon is down are lost: `start` removes stale `.partial` files and rescans
every manifest and raw recording. Enqueueing is idempotent, so a clip seen twice (event
and rescan) is queued once.

The observer thread only hands paths over; one worker thread owns the queue connection
and runs the ingests. The worker is supervised (wm.daemon.faults): when it raises (the
database locked past its busy timeout, an I/O error) the failure is logged and counted
for `wm status`, and after a back-off it starts again with a rescan, so what arrived
meanwhile is queued too. Events keep collecting in the inbox while it is down."""
from __future__ import annotations

import logging
import queue as queue_mod
import threading
import time
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from wm.base import log
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.capture.orphans import remove_partials
from wm.capture.scan import queue_clip, queue_clips_on_disk
from wm.daemon.faults import Faults, supervised_thread
from wm.daemon.raw_ingest import (
    SETTLE_SECONDS,
    Ingest,
    RawIngester,
    ingest_command,
    is_in_progress,
)
from wm.daemon.status_file import WatcherView

# The start-up sweep never removes the `.partial` files of a live writer (their names carry
# its pid: a `wm ingest` beside the daemon), nor one written to within this grace period
# (a writer that names its files without a pid, still at work).
PARTIAL_GRACE_SECONDS = 5.0


class _Handler(FileSystemEventHandler):
    def __init__(self, inbox: queue_mod.Queue):
        self.inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        # A rename is a moved event: the new name is what counts.
        self.inbox.put(Path(event.dest_path if event.event_type == "moved" else event.src_path))


class Watcher:
    def __init__(self, paths: Paths, *, ingest: Ingest | None = None,
                 settle_seconds: float = SETTLE_SECONDS, faults: Faults | None = None,
                 fault: Callable[[str], None] | None = None):
        self.paths = paths
        self.log = log.get("wm.watcher")
        self.faults = faults or Faults(self.log)
        self.fault = fault             # a test's injected failure, called per path routed
        self.inbox: queue_mod.Queue[Path] = queue_mod.Queue()
        self.observer = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.scanned = threading.Event()      # the start-up rescan is done
        self.raw = RawIngester(paths, ingest or ingest_command(None), settle_seconds,
                               self.stopping, self.log)
        self._lock = threading.Lock()
        self._enqueued = self._rescanned = 0

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> None:
        """Remove stale `.partial` files (not those of another live writer), start
        watching, then rescan in the worker."""
        try:
            removed = remove_partials(self.paths, min_age=PARTIAL_GRACE_SECONDS)
        except OSError as e:   # an unreadable folder: the next start tries again
            self.log.warning("partials_sweep_failed", error=str(e))
            removed = []
        if removed:
            self.log.info("partials_removed", count=len(removed),
                          files=[str(p.relative_to(self.paths.root)) for p in removed[:20]])
        # watchdog logs every inotify event at debug level: our debug log is about clips.
        logging.getLogger("watchdog").setLevel(logging.INFO)
        self.started_at = time.time()
        self.thread = supervised_thread("wm-watcher", "watcher", self._work, self.stopping,
                                        self.faults)
        self.thread.start()

    def _watch(self) -> None:
        """Start the observer, once: its folders must exist, which a full disk can prevent
        (then this life fails and the next one tries again)."""
        if self.observer is not None:
            return
        for folder in (self.paths.clips_root, self.paths.raw_root):
            folder.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        handler = _Handler(self.inbox)
        observer.schedule(handler, str(self.paths.clips_root), recursive=True)
        observer.schedule(handler, str(self.paths.raw_root), recursive=True)
        observer.daemon = True
        observer.start()
        self.observer = observer

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

    def view(self) -> WatcherView:
        ingested, errors, pending, ingesting = self.raw.view()
        with self._lock:
            return WatcherView(self._enqueued, self._rescanned, ingested, errors, pending,
                               ingesting)

    # -- the worker -----------------------------------------------------------------
    def _work(self) -> None:
        """One life of the worker: rescan, then queue what arrives until told to stop.
        Raises on failure (the supervisor restarts it)."""
        self._watch()
        q = Queue(self.paths.memory_db)
        try:
            n = self.rescan(q)
            with self._lock:
                self._rescanned += n
            self.scanned.set()
            while not self.stopping.is_set():
                self._drain(q, timeout=0.2)
                self.raw.ingest_due()
            self._drain(q, timeout=0)
            n = queue_clips_on_disk(self.paths, q, since=self.started_at)
            with self._lock:
                self._enqueued += n
        finally:
            self.scanned.set()
            q.close()

    def _drain(self, q: Queue, timeout: float) -> None:
        """Route everything in the inbox, waiting up to `timeout` for the first path. A
        path whose routing fails goes back to the inbox for the next life."""
        try:
            path = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
        except queue_mod.Empty:
            return
        while path is not None:
            try:
                self._route(q, path)
            except BaseException:
                self.inbox.put(path)
                raise
            try:
                path = self.inbox.get_nowait()
            except queue_mod.Empty:
                path = None

    def _route(self, q: Queue, path: Path) -> None:
        if self.fault is not None:
            self.fault("watcher")
        if is_in_progress(path):
            return
        if path.suffix == ".json" and path.is_relative_to(self.paths.clips_root):
            if queue_clip(self.paths, q, path):
                with self._lock:
                    self._enqueued += 1
        elif path.is_relative_to(self.paths.raw_root):
            self.raw.offer(path)

    def rescan(self, q: Queue) -> int:
        """Queue every clip on disk the queue does not know; arm every raw recording."""
        n = queue_clips_on_disk(self.paths, q)
        with self._lock:
            self._enqueued += n
        self.raw.rescan()
        self.log.info("rescan_done", queued=n, raw_files=self.raw.pending(), counts=q.counts())
        return n
