"""Structured logging: JSON lines to logs/wm.jsonl (rotated by size) and readable lines on
stderr. Every event carries its context (file, clip, date) as key-value pairs.

Several processes write the one log at once (`wm run` and its `wm sleep` and `wm ingest`
children), so the file is written by SharedFileHandler: each record is a single append,
one process rotates under a lock and the others follow the name to the new file. A log
that cannot be written (a full or read-only disk) drops records and says so once on
stderr, and never stops the program."""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path

import structlog

# Records of this logger go to the file only: the traceback of an unexpected error is
# kept for the curious, while the terminal gets one line (wm.cli prints it).
CRASH_LOGGER = "wm.crash"

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def setup(
    log_file: Path | None,
    level: str = "info",
    max_bytes: int = 10_000_000,
    backups: int = 5,
    console: bool = True,
) -> None:
    """Configure once per process. The file always gets `level` and above; the console
    too, unless console=False (a progress bar owns the terminal then, warnings still show)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)

    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = SharedFileHandler(log_file, max_bytes=max_bytes, backups=backups)
        fh.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=_SHARED,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.dict_tracebacks,
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        root.addHandler(fh)

    ch = logging.StreamHandler(sys.stderr)
    ch.setLevel(numeric if console else max(numeric, logging.WARNING))
    ch.addFilter(lambda record: record.name != CRASH_LOGGER)
    ch.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
            ],
        )
    )
    root.addHandler(ch)

    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def rotate_files(path: Path, backups: int) -> None:
    """wm.jsonl -> wm.jsonl.1 -> ... -> wm.jsonl.{backups} (the oldest falls off); with no
    backups the full file is simply dropped, so the log stays bounded either way."""
    if backups <= 0:
        path.unlink(missing_ok=True)
        return
    for n in range(backups - 1, 0, -1):
        older = Path(f"{path}.{n}")
        if older.exists():
            os.replace(older, f"{path}.{n + 1}")
    os.replace(path, f"{path}.1")


class SharedFileHandler(logging.Handler):
    """Appends records to a log file that other processes append to and rotate too.

    Each record is one write() on an O_APPEND descriptor, so lines of two processes never
    interleave. Before each record the handler checks that the name still points at the
    file it holds (another process may have rotated it) and reopens it if not, as
    logging's WatchedFileHandler does. When a record would take the file past max_bytes,
    the process that first takes an flock on the log folder rotates; the others, finding
    the name already moved on, only reopen (a RotatingFileHandler per process would
    rotate once for each of them, and lose files off the end)."""

    def __init__(self, path: Path, max_bytes: int = 0, backups: int = 0):
        super().__init__()
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fd: int | None = None
        self.ident: tuple[int, int] | None = None
        self.dropped = 0
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        self._close_fd()
        self.fd, self.ident = fd, (st.st_dev, st.st_ino)

    def _close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _current(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _rotate(self, adding: int) -> None:
        folder = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            # Under the lock, only if nobody rotated while we waited for it.
            if self._current() == self.ident and os.fstat(self.fd).st_size + adding > self.max_bytes:
                rotate_files(self.path, self.backups)
            self._open()
        finally:
            os.close(folder)   # closing drops the flock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        try:
            if self.fd is None or self._current() != self.ident:
                self._open()
            size = os.fstat(self.fd).st_size
            if self.max_bytes > 0 and size > 0 and size + len(data) > self.max_bytes:
                self._rotate(len(data))
            if self.dropped:
                self._write(self._dropped_line())
                self.dropped = 0
            self._write(data)
        except OSError as e:
            self._failed(e)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:   # a regular file takes it all at once but for a full disk
            view = view[os.write(self.fd, view):]

    def _dropped_line(self) -> bytes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return (json.dumps({"count": self.dropped, "event": "log_records_dropped",
                            "level": "warning", "logger": "wm.log", "timestamp": stamp,
                            "reason": "the log could not be written"}) + "\n").encode()

    def _failed(self, e: OSError) -> None:
        if not self.dropped:   # once per outage: a full disk must not flood stderr
            what = "full" if e.errno == errno.ENOSPC else e.strerror
            print(f"wm: cannot write the log {self.path} ({what}): dropping log records "
                  "until it can", file=sys.stderr)
        self.dropped += 1

    def close(self) -> None:
        self.acquire()
        try:
            self._close_fd()
        finally:
            self.release()
        super().close()


def get(name: str = "wm") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
