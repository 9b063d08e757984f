"""`wm logs`: the structured log (logs/wm.jsonl, JSON lines written by wm/base/log.py) read
back readably or as raw JSON lines, filtered by level and age, and followed across the
size-based rotation of RotatingFileHandler (wm.jsonl -> wm.jsonl.1 -> ... and a new
wm.jsonl)."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

from wm.base.errors import WmError
from wm.base.paths import Paths

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40,
          "exception": 40, "critical": 50}
DEFAULT_LINES = 50
POLL_SECONDS = 0.2
_RESERVED = ("timestamp", "level", "event", "logger", "exception")
_COLORS = {10: "\x1b[2m", 30: "\x1b[33m", 40: "\x1b[31;1m", 50: "\x1b[31;1m"}


@dataclass(frozen=True)
class LogLine:
    text: str                   # the line as written, without its newline
    record: dict | None         # the JSON object; None for a line that is not one
    time: datetime | None       # aware, UTC
    level: int | None


def parse_line(text: str) -> LogLine:
    try:
        record = json.loads(text)
    except ValueError:
        return LogLine(text, None, None, None)
    if not isinstance(record, dict):
        return LogLine(text, None, None, None)
    when = None
    stamp = record.get("timestamp")
    if isinstance(stamp, str):
        try:  # Python 3.10's fromisoformat does not take the "Z"
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    level = LEVELS.get(str(record.get("level", "")).lower())
    return LogLine(text, record, when, level)


def make_filter(min_level: str | None, after: datetime | None) -> Callable[[LogLine], bool]:
    """A line with no level or time (not JSON) only passes when nothing filters."""
    floor = LEVELS[min_level] if min_level else None

    def keep(line: LogLine) -> bool:
        if floor is not None and (line.level is None or line.level < floor):
            return False
        if after is not None and (line.time is None or line.time < after):
            return False
        return True

    return keep


def _value(v) -> str:
    if isinstance(v, str) and v and not any(c.isspace() or c in "\"'=" for c in v):
        return v
    return json.dumps(v, ensure_ascii=False, default=str)


def format_line(line: LogLine, color: bool = False) -> str:
    """One readable line (local time, level, event, context, [logger]), plus a line per
    exception in the chain with where it was raised."""
    r = line.record
    if r is None:
        return line.text
    when = line.time.astimezone().strftime("%Y-%m-%d %H:%M:%S") if line.time else "-"
    level = str(r.get("level", "-")).upper()
    context = " ".join(f"{k}={_value(v)}" for k, v in r.items() if k not in _RESERVED)
    event = str(r.get("event", ""))
    head = f"{when} {level:<7} {event.ljust(28) if context else event}"
    if context:
        head += f" {context}"
    if r.get("logger"):
        head += f"  [{r['logger']}]"
    if color and line.level in _COLORS:
        head = f"{_COLORS[line.level]}{head}\x1b[0m"
    out = [head]
    exc = r.get("exception")
    if isinstance(exc, str):  # format_exc_info's text traceback
        out += ["    " + ln for ln in exc.rstrip().splitlines()]
    elif isinstance(exc, list):  # dict_tracebacks: one dict per exception in the chain
        for e in exc:
            if not isinstance(e, dict):
                continue
            out.append(f"    {e.get('exc_type', '?')}: {e.get('exc_value', '')}")
            frames = e.get("frames") or []
            if frames and isinstance(frames[-1], dict):
                f = frames[-1]
                out.append(f"      at {f.get('filename')}:{f.get('lineno')} in {f.get('name')}")
    return "\n".join(out)


def log_files(log_file: Path) -> list[Path]:
    """The current file and its rotated predecessors, newest first."""
    files = [log_file]
    n = 1
    while Path(f"{log_file}.{n}").exists():
        files.append(Path(f"{log_file}.{n}"))
        n += 1
    return files


def _lines(data: bytes) -> list[str]:
    return [ln.decode("utf-8", errors="replace").rstrip("\r")
            for ln in data.split(b"\n") if ln.strip()]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def select(newest_first: Iterator[list[str]], keep: Callable[[LogLine], bool],
           limit: int | None, after: datetime | None) -> list[LogLine]:
    """The last `limit` lines that pass `keep`, oldest first, from files given newest
    first. Lines are in time order, so reading stops at the first one older than `after`."""
    picked: list[LogLine] = []
    if limit == 0:
        return picked
    for lines in newest_first:
        for text in reversed(lines):
            line = parse_line(text)
            if after is not None and line.time is not None and line.time < after:
                return picked[::-1]
            if keep(line):
                picked.append(line)
                if limit is not None and len(picked) >= limit:
                    return picked[::-1]
    return picked[::-1]


class Follower:
    """Reads what is appended to the log file, across rotation: when the name points at a
    new file, the rest of the old one (now wm.jsonl.N) is read first, then any rotated
    file in between, then the new file from its start."""

    def __init__(self, path: Path):
        self.path = path
        self.file = None
        self.inode = None
        self.partial = b""

    def open(self) -> bytes:
        """Open the current file; returns everything already in it."""
        try:
            self.file = open(self.path, "rb")
        except FileNotFoundError:
            return b""
        self.inode = os.fstat(self.file.fileno()).st_ino
        return self.file.read()

    def lines(self, data: bytes, final: bool = False) -> list[str]:
        """Complete lines; an unfinished one waits for the rest (or for `final`)."""
        data = self.partial + data
        cut = len(data) if final else data.rfind(b"\n") + 1
        self.partial = data[cut:]
        return _lines(data[:cut])

    def poll(self) -> list[str]:
        if self.file is None:
            return self.lines(self.open())
        out = self.lines(self.file.read())
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out  # between the rename and the new file: look again next time
        if st.st_ino != self.inode:
            out += self.lines(self.file.read(), final=True)
            out += self._skipped_backups()
            self.file.close()
            self.file = None
            out += self.lines(self.open())
        elif st.st_size < self.file.tell():  # truncated in place
            self.file.seek(0)
            self.partial = b""
            out += self.lines(self.file.read())
        return out

    def _skipped_backups(self) -> list[str]:
        """Files rotated out between two looks: those newer than the one we held."""
        backups = log_files(self.path)[1:]
        held = next((i for i, p in enumerate(backups) if _inode(p) == self.inode), len(backups))
        out: list[str] = []
        for p in reversed(backups[:held]):
            out += _lines(_read(p))
        return out

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def tolerant_stdout() -> None:
    """Under a strict locale (LC_ALL=C without UTF-8 mode) stdout is ASCII, and even a
    UTF-8 stdout refuses the lone surrogates that stand for a non-UTF-8 file name: what
    the codec cannot take is written as a backslash escape instead of ending `wm logs`
    (an escape keeps a --json line JSON)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def run_logs(paths: Paths, follow: bool = False, level: str | None = None,
             as_json: bool = False, since: float | None = None,
             lines: int | None = None) -> int:
    """`wm logs`: the last `lines` lines (default 50, or all of the last `since` seconds),
    readable or as JSON lines, then with `follow` what is written next until Ctrl-C."""
    if lines is not None and lines < 0:
        raise WmError(f"--lines {lines}: must be 0 or more")
    after = datetime.now(timezone.utc) - timedelta(seconds=since) if since is not None else None
    limit = lines if lines is not None else (None if since is not None else DEFAULT_LINES)
    keep = make_filter(level, after)
    tolerant_stdout()
    color = (not as_json and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))

    def show(batch: list[LogLine]) -> None:
        for line in batch:
            if as_json:
                if line.record is not None:
                    print(line.text.strip())
            else:
                print(format_line(line, color))
        sys.stdout.flush()

    # The current file is read through the handle the follower keeps, so nothing written
    # between showing the tail and following it is lost.
    follower = Follower(paths.log_file)
    try:
        current = follower.lines(follower.open())

        def newest_first() -> Iterator[list[str]]:
            yield current
            for p in log_files(paths.log_file)[1:]:
                yield _lines(_read(p))

        show(select(newest_first(), keep, limit, after))
        if not follow:
            return 0
        while True:
            show([ln for ln in map(parse_line, follower.poll()) if keep(ln)])
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `wm logs | head`: the reader has gone, that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        follower.close()
