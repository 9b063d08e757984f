"""The memory's two file locks. Writers (commit, compaction, index builds, retention's
forgetting) take one at a time. Readers (queries) hold a shared lock from listing shard
and index files until they have opened them; maintenance deletes the files it retired
only while it can take that lock exclusively, so a query never finds a file it listed
gone."""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from typing import IO, Iterator

from wm.base.paths import Paths


@contextmanager
def writer_lock(paths: Paths) -> Iterator[None]:
    paths.memory_writer_lock.parent.mkdir(parents=True, exist_ok=True)
    with open(paths.memory_writer_lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _open(paths: Paths) -> IO | None:
    """The readers' lock file; None where it cannot be opened (a read-only data root:
    nothing can be deleted there either, so a reader has nothing to fear)."""
    try:
        return open(paths.memory_readers_lock, "a")
    except OSError:
        try:
            return open(paths.memory_readers_lock)
        except OSError:
            return None


@contextmanager
def reading(paths: Paths) -> Iterator[None]:
    """Shared: any number of queries at once; waits only while retired files are deleted."""
    f = _open(paths)
    if f is None:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def no_readers(paths: Paths) -> Iterator[bool]:
    """Exclusive if no query holds the readers' lock now (True), else False at once: the
    caller leaves its deletions for a later pass rather than wait for a query."""
    f = _open(paths)
    if f is None:
        yield False
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
