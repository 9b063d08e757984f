"""Writing files so that a crash leaves the old file or the new one, never half of one:
write to a `.partial` name, fsync, rename. Start-up deletes stale `.partial` files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable

PARTIAL = ".partial"


def partial_name(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


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
    """`write(f)` into a `.partial` file, then fsync and rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(path)
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    write_atomically(path, lambda f: f.write(data))
    fsync_dir(path.parent)
