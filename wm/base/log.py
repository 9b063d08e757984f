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
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Records of this logger go to the file only: the traceback of an unexpected error is
# kept for the curious, while the terminal gets one line (wm.cli prints it).
CRASH_LOGGER = "wm.crash"

# structlog (and the rich it imports for tracebacks) is imported at the first record
# that is written, not at start-up: it cost 0.15-0.3 s of every command, and a command
# such as `wm query` logs nothing at its level. _configured: setup() has run, so the
# stdlib logger's level decides what is written, as it does after structlog's processors;
# _applied: structlog.configure has been called since.
_configured = False
_applied = False
_FILE, _CONSOLE = "file", "console"


def _structlog():
    import structlog

    return structlog


def _shared() -> list:
    structlog = _structlog()
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _formatter(kind: str) -> logging.Formatter:
    """The structlog formatter of the log file (JSON lines) or of the console."""
    structlog = _structlog()
    if kind == _FILE:
        last = [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        last = [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last])


class _LazyFormatter(logging.Formatter):
    """_formatter(kind), built when the first record is formatted."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.real: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self.real is None:
            self.real = _formatter(self.kind)
            _configure()
        return self.real.format(record)


def _configure() -> None:
    """structlog's own configuration: records go through the stdlib logging setup() made."""
    global _applied
    if _applied:
        return
    structlog = _structlog()
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    _applied = True


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
        fh.setFormatter(_LazyFormatter(_FILE))
        root.addHandler(fh)

    ch = logging.StreamHandler(sys.stderr)
    ch.setLevel(numeric if console else max(numeric, logging.WARNING))
    ch.addFilter(lambda record: record.name != CRASH_LOGGER)
    ch.setFormatter(_LazyFormatter(_CONSOLE))
    root.addHandler(ch)

    global _configured, _applied
    _configured, _applied = True, False
    if "structlog" in sys.modules:   # already in use: configure it now, as before
        _configure()


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


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "exception": logging.ERROR,
           "critical": logging.CRITICAL, "fatal": logging.CRITICAL}


class Logger:
    """structlog's stdlib BoundLogger for a name (and bound context), made at its first
    record at an enabled level: until then nothing imports structlog."""

    def __init__(self, name: str, context: dict[str, Any] | None = None):
        self.name, self.context = name, context or {}

    def real(self) -> Any:
        """structlog's lazy proxy: it takes the configuration in force at each record."""
        if _configured:
            _configure()
        return _structlog().get_logger(self.name, **self.context)

    def bind(self, **values: Any) -> "Logger":
        return Logger(self.name, {**self.context, **values})

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):    # copy, pickle and the like: not structlog's
            raise AttributeError(attr)
        level = _LEVELS.get(attr)
        if level is None or not _configured:
            return getattr(self.real(), attr)
        return self._at(attr, level)

    def _at(self, method: str, level: int) -> Callable[..., Any]:
        def write(*args: Any, **kwargs: Any) -> Any:
            if logging.getLogger(self.name).isEnabledFor(level):
                return getattr(self.real(), method)(*args, **kwargs)
            return None
        return write


def get(name: str = "wm") -> Logger:
    return Logger(name)
