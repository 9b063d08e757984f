"""Writing files so that a crash leaves the old file or the new one, never half of one:
write to a `.partial` name, fsync, rename. Start-up deletes stale `.partial` files.

A `.partial` name carries its writer's pid and a random token (`X.mp4.1234-9f3a.partial`):
two processes writing the same file (two `wm ingest` of one recording) never share one,
and a sweeper can leave alone the in-flight files of a writer that is still alive."""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

PARTIAL = ".partial"
_OWNED = re.compile(r"\.(\d+)-[0-9a-f]+" + re.escape(PARTIAL) + r"$")


def partial_name(path: Path) -> Path:
    """A fresh `.partial` name beside `path`, unique to this writer and this call."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL}")


def partial_owner(path: Path) -> int | None:
    """The pid that writes this `.partial` file; None for a name without one (written by
    an older wm, or by a tool that names its own)."""
    m = _OWNED.search(path.name)
    return int(m.group(1)) if m else None


def partials_of(path: Path, pid: int | None = None) -> list[Path]:
    """The `.partial` files of `path` (only those of writer `pid` when given)."""
    owner = r"(\.\d+-[0-9a-f]+)?" if pid is None else rf"\.{pid}-[0-9a-f]+"
    pattern = re.compile(re.escape(path.name) + owner + re.escape(PARTIAL))
    try:
        return [p for p in path.parent.glob(f"{path.name}*{PARTIAL}") if pattern.fullmatch(p.name)]
    except OSError:
        return []


def fsync_dir(folder: Path) -> None:
    """Make the renames inside `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(tmp: Path, final: Path) -> None:
    """fsync a file another library wrote at `tmp`, then rename it into place."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(f)` into a `.partial` file, then fsync and rename it to `path`. On a failure
    (a full disk) the `.partial` file is removed: nothing half-written stays behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    write_atomically(path, lambda f: f.write(data))
    fsync_dir(path.parent)


def append_line(path: Path, line: str) -> None:
    """Append one line to a log-like file and fsync it: a crash leaves every earlier line
    whole and at most this one cut short (readers skip a line that does not parse)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())
