"""A commit that dies at the worst moment (arrays written, rows not yet) leaves the memory
as it was before that batch; the next commit cleans up and finishes the work."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from memory_support import (
    check_consistent,
    day_encoders,
    make_memory_day,
    settings_for_tests,
)

from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.memory import commit as commit_mod
from wm.memory.commit import commit_queued
from wm.memory.query import QueryRequest, answer
from wm.memory.store import Store

DATE = "2025-01-15"
TESTS = Path(__file__).parent

# The child commits 8 clips a batch and SIGKILLs itself on the third batch, after that
# batch's arrays are on disk and before its rows are written.
CHILD = """
import os, signal, sys
from pathlib import Path
from memory_support import settings_for_tests, day_encoders
from wm.memory import commit
from wm.memory.store import Store
from wm.base.paths import Paths

paths = Paths(Path(sys.argv[1]))
settings = settings_for_tests(daemon={"lease_seconds": 3.0})
commit.COMMIT_BATCH = 8
real_add, calls = Store.add, [0]

def add(self, version, clips, vectors, before_rows=None):
    calls[0] += 1
    die = (lambda: os.kill(os.getpid(), signal.SIGKILL)) if calls[0] == 3 else None
    return real_add(self, version, clips, vectors, before_rows=die)

Store.add = add
commit.commit_queued(settings, paths, day_encoders(paths, "v1"), lambda: False)
"""


@pytest.fixture
def day(tmp_path):
    settings, paths = settings_for_tests(daemon={"lease_seconds": 1.0}), Paths(tmp_path / "home")
    make_memory_day(paths, settings, DATE, n_clips=24, seed=5)
    return settings, paths


def test_sigkill_between_arrays_and_rows_leaves_memory_consistent(day):
    settings, paths = day
    env = dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    child = subprocess.run([sys.executable, "-c", CHILD, str(paths.root)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr

    state = check_consistent(paths)
    assert state["clips"] == 16              # the two batches before the kill, whole
    assert state["orphans"] > 0              # the third batch's arrays, named by no row
    counts = Queue(paths.memory_db).counts()
    assert counts == {"queued": 8, "committed": 16, "purged": 0}

    # The dead process's claims (lease 3 s) run out; then the next commit takes them.
    leases = [i.lease_until for i in Queue(paths.memory_db).items("queued") if i.lease_until]
    assert leases
    time.sleep(max(0.0, max(leases) - time.time()) + 0.1)
    result = commit_queued(settings, paths, day_encoders(paths, "v1"), lambda: False)
    assert (result.committed, result.remaining) == (8, 0)
    state = check_consistent(paths)
    assert state["clips"] == 24 and state["orphans"] == 0
    with Store(paths) as store:   # one shard per (version, day, kind) after the merge
        assert len(store.all_shards()) == 5


def test_exception_between_arrays_and_rows_rolls_back_the_batch(day, monkeypatch):
    settings, paths = day
    enc = day_encoders(paths, "v1")
    monkeypatch.setattr(commit_mod, "COMMIT_BATCH", 16)
    real_add, calls = Store.add, [0]

    def boom():
        raise RuntimeError("disk on fire")

    def add(self, version, clips, vectors, before_rows=None):
        calls[0] += 1
        return real_add(self, version, clips, vectors, before_rows=boom if calls[0] == 2 else None)

    monkeypatch.setattr(Store, "add", add)
    with pytest.raises(RuntimeError, match="disk on fire"):
        commit_queued(settings, paths, enc, lambda: False)
    state = check_consistent(paths)
    assert state["clips"] == 16 and state["orphans"] > 0
    q = Queue(paths.memory_db)
    assert q.counts()["queued"] == 8
    assert all(i.owner is None for i in q.items("queued"))   # claims given back at once

    monkeypatch.setattr(Store, "add", real_add)
    result = commit_queued(settings, paths, enc, lambda: False)
    assert result.committed == 8
    state = check_consistent(paths)
    assert state["clips"] == 24 and state["orphans"] == 0
    hits = answer(settings, paths, QueryRequest(clip=q.items()[0].clip_id, topk=3)).groups[0].hits
    assert len(hits) == 3


def test_stop_request_ends_commit_between_batches(day, monkeypatch):
    settings, paths = day
    enc = day_encoders(paths, "v1")
    monkeypatch.setattr(commit_mod, "COMMIT_BATCH", 8)
    result = commit_queued(settings, paths, enc, lambda: enc.calls >= 2)
    assert (result.committed, result.remaining) == (16, 8)
    assert all(i.owner is None for i in Queue(paths.memory_db).items("queued"))
    assert check_consistent(paths)["clips"] == 16
