"""The single-instance lock of `wm run`: an flock on state/wm.lock, which holds the pid
of its owner. The kernel drops the lock when the process dies, however it dies.

The flock is the lock; the pid written into the file only names the holder. On a full
disk that write fails, and the lock is still held (a daemon that cannot say its pid must
still run: it is what frees the space). Lives in base so that `wm record` (capture) can
refuse to record beside a running `wm run`."""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from wm.base.errors import WmError

# `wm status` takes the lock shared for an instant to see whether anyone holds it; a
# `wm run` starting at that instant retries for this long before giving up.
RETRY_SECONDS = 1.0


class AlreadyRunning(WmError):
    pass


def _pid_in(f) -> int | None:
    f.seek(0)
    text = f.read().strip()
    return int(text) if text.isdigit() else None


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise WmError(f"cannot take the lock {path}: {e.strerror}") from None


def _write_pid(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass    # a full disk: the flock alone keeps a second `wm run` out


def acquire(path: Path) -> int:
    """Take the lock for this process; returns the fd to keep open. AlreadyRunning names
    the pid that holds it."""
    fd = _open(path)
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            with os.fdopen(os.dup(fd), "r") as f:
                pid = _pid_in(f)
            os.close(fd)
            who = f"pid {pid}" if pid else "another process"
            raise AlreadyRunning(f"wm run is already running ({who} holds {path})") from None
    _write_pid(fd)
    return fd


def release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass    # a read-only or full disk: the flock goes with the descriptor anyway
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def holder(path: Path) -> int | None:
    """The pid holding the lock (0 if it cannot be read), or None when nobody does."""
    try:
        f = open(path, "r")
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(f) or 0
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return None


def refuse_beside_daemon(lock_path: Path, command: str) -> None:
    """A WmError when `wm run` holds its lock: a second recorder beside it would record
    every moment twice."""
    pid = holder(lock_path)
    if pid is not None:
        who = f" (pid {pid})" if pid else ""
        raise WmError(f"{command}: wm run{who} is recording already (two recorders would "
                      "keep every moment twice); stop it first (`wm service stop`)")
