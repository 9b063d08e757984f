"""Faults `wm run` meets and recovers from, on the real daemon (tests/daemon_harness.py)
and real parts: a small tmpfs that fills up (root: it mounts), a read-only bind mount
(root), a watcher, recorder and scheduler made to raise while the daemon runs, a
`.partial` file another process is writing, media past retention.raw_days during a long
pause. A fault is a state the daemon reports in `wm status` and recovers from: never a
crash, never a silent deletion."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from daemon_harness import REPO, rig_factory, wait_for
from memory_support import day_encoders, make_memory_day, settings_for_tests

from wm.base import lock
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.daemon.maintenance import LOW, REGULAR, maintenance_due
from wm.memory.commit import commit_queued

MB = 1_000_000


@pytest.fixture
def make_rig(tmp_path):
    yield from rig_factory(tmp_path)


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root to {what} (CI runs as root)")


class Mounts:
    """Mount points made for one test; unmounted by the `mounts` fixture afterwards."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.made: list[Path] = []

    def _mount(self, what: str, *commands: list[str]) -> Path:
        point = self.tmp / f"mount{len(self.made)}"
        point.mkdir()
        for cmd in commands:
            done = subprocess.run([*cmd, str(point)], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"cannot {what} here: {done.stderr.strip()}")
            if point not in self.made:
                self.made.append(point)
        return point

    def tmpfs(self, size_mb: int) -> Path:
        need_root("mount a small tmpfs")
        return self._mount("mount a tmpfs",
                           ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs"])

    def read_only(self, source: Path) -> Path:
        need_root("bind-mount a folder read-only")
        return self._mount("bind-mount read-only", ["mount", "--bind", str(source)],
                           ["mount", "-o", "remount,bind,ro"])

    def unmount_all(self) -> None:
        for point in reversed(self.made):
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def mounts(tmp_path):
    """Fixtures end in reverse order: a test asks for `mounts` before `make_rig`, so its
    daemons are killed before anything is unmounted."""
    m = Mounts(tmp_path)
    yield m
    m.unmount_all()


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> None:
    """Write `path` until the disk it is on has only `leave` bytes free (0: until it is
    full and a write fails)."""
    chunk = b"\0" * MB
    with open(path, "ab") as f:
        while free(path.parent) > leave:
            want = min(len(chunk), free(path.parent) - leave) if leave else len(chunk)
            try:
                f.write(chunk[:max(4096, want)])
                f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
                return


def old_memories(rig, n: int = 10) -> list[str]:
    """`n` clips of a day 40 days ago, already committed to memory (their media past the
    default retention.raw_days of 30)."""
    paths = Paths(rig.home)
    settings = settings_for_tests()
    day = (date.today() - timedelta(days=40)).isoformat()
    clips = make_memory_day(paths, settings, day, n_clips=n, seed=3)
    assert commit_queued(settings, paths, day_encoders(paths, "v1"), lambda: False).committed == n
    return [c.manifest.id for c in clips]


def old_media(rig, ids: list[str]) -> list[Path]:
    """Media files (not thumbnails) of these clips still on disk."""
    return [p for p in (rig.home / "data").rglob("*")
            if p.suffix in (".mp4", ".wav", ".jpg") and "thumbs" not in p.parts
            and p.stem.split("_")[0] in ids]


def states(rig, ids: list[str]) -> set[str]:
    return {state for cid, state, _ in rig.rows() if cid in ids}


def problem(rig) -> tuple[int, str | None]:
    rc, st = rig.status()
    return rc, st["problem"]


def events_named(rig, name: str) -> list[dict]:
    return [e for e in rig.file_events() if e.get("event") == name]


def queued_everything(rig) -> bool:
    return {cid for cid, _, _ in rig.rows()} >= rig.manifests()


# -- a full disk ------------------------------------------------------------------------

def test_a_full_disk_stops_recording_with_a_reason_and_recording_returns(mounts, make_rig):
    disk = mounts.tmpfs(40)
    rig = make_rig(seconds=120, speed=2, home=disk / "home",
                   retention={"min_free_gb": 0.012})          # the floor: 12 MB free
    old = old_memories(rig)
    d = rig.start()
    wait_for(lambda: rig.clips_written() >= 2, 30, "recording")
    assert problem(rig) == (0, None)

    # Something else fills the disk under the floor: recording stops, the daemon stays,
    # says why, and applies retention at once (no sleep cycle is due: 14:00, nothing
    # would start one), which frees the old media but not enough room.
    fill(disk / "ballast", leave=8 * MB)
    wait_for(lambda: problem(rig)[1] and problem(rig)[1].startswith("disk almost full"), 15,
             "the reason in wm status")
    assert problem(rig)[0] == 1
    # (the database says "gone" first, then the files go)
    wait_for(lambda: states(rig, old) == {"purged"} and not old_media(rig, old), 30,
             "retention outside a sleep cycle")
    started = events_named(rig, "retention_started")
    assert started and started[0]["reason"] == LOW
    written = rig.clips_written()
    time.sleep(4)
    assert rig.clips_written() == written and d.poll() is None
    assert "retention:" in rig.wm("status").stdout

    # Then full to the last byte: nothing can be written at all, not even the log.
    fill(disk / "ballast2", leave=0)
    wait_for(lambda: problem(rig)[1] and problem(rig)[1].startswith("disk full"), 15,
             "a full disk in wm status")
    time.sleep(5)
    assert d.poll() is None

    # Room again: it records and queues by itself.
    (disk / "ballast").unlink()
    (disk / "ballast2").unlink()
    wait_for(lambda: rig.clips_written() > written + 2, 30, "recording to come back")
    wait_for(lambda: problem(rig) == (0, None), 30, "wm status to say recording")
    wait_for(lambda: queued_everything(rig), 60, "the new clips to be queued")
    d.terminate()
    assert d.wait(30) == 0
    said = rig.log.read_text(errors="replace")
    assert "Traceback" not in said and "Logging error" not in said, said[-3000:]
    assert said.count("cannot write the log") <= 2


def test_wm_run_starts_on_a_full_disk_and_records_once_there_is_room(mounts, make_rig):
    disk = mounts.tmpfs(24)
    rig = make_rig(seconds=120, speed=2, home=disk / "home", retention={"min_free_gb": 0.004})
    fill(disk / "ballast", leave=0)
    d = rig.start()
    time.sleep(6)
    assert d.poll() is None, rig.log.read_text(errors="replace")[-3000:]
    rc, st = rig.status()
    assert (rc, st["running"]) == (1, True) and st["problem"].startswith("disk full")

    (disk / "ballast").unlink()
    wait_for(lambda: rig.clips_written() >= 2, 60, "recording once there is room")
    wait_for(lambda: problem(rig) == (0, None), 60, "wm status to say recording")
    wait_for(lambda: rig.manifests() and queued_everything(rig), 60, "the clips queued")
    d.terminate()
    assert d.wait(30) == 0


# -- retention outside sleep cycles -----------------------------------------------------

def test_a_long_pause_still_forgets_media_past_raw_days(make_rig):
    """Paused for weeks: no clip is queued, so no sleep cycle comes, yet media older than
    retention.raw_days goes (the memories stay)."""
    rig = make_rig(seconds=60, speed=2, daemon={"retention_minutes": 0.05})   # every 3 s
    old = old_memories(rig)
    assert rig.wm("pause").returncode == 0
    d = rig.start()
    wait_for(lambda: states(rig, old) == {"purged"} and not old_media(rig, old), 60,
             "retention to run in the daemon")
    assert all((rig.home / "data" / "thumbs").rglob(f"{cid}.jpg") for cid in old)
    assert not rig.standin("start")                           # no sleep cycle did it
    wait_for(lambda: "retention:" in rig.wm("status").stdout, 10, "retention in wm status")
    rc, st = rig.status()
    assert rc == 1 and st["problem"] == "paused" and st["retention"]
    assert events_named(rig, "retention_done")[0]["result"].startswith("purged 10 clips")
    d.terminate()
    assert d.wait(30) == 0


def test_when_retention_is_due():
    hour = 3600.0
    # A low disk: at once, then every 2 minutes, less often while it frees nothing.
    assert maintenance_due(100, 0, None, True, 0, hour, busy=False) == LOW
    assert maintenance_due(100, 0, 50, True, 0, hour, busy=False) is None
    assert maintenance_due(171, 0, 50, True, 0, hour, busy=False) == LOW
    assert maintenance_due(171, 0, 50, True, 2, hour, busy=False) is None
    assert maintenance_due(50 + 480, 0, 50, True, 2, hour, busy=False) == LOW
    assert maintenance_due(50 + hour, 0, 50, True, 9, hour, busy=False) == LOW
    # Its regular turn: not right at start-up, then every period.
    assert maintenance_due(60, 0, None, False, 0, hour, busy=False) is None
    assert maintenance_due(600, 0, None, False, 0, hour, busy=False) == REGULAR
    assert maintenance_due(5, 0, None, False, 0, 3.0, busy=False) == REGULAR
    assert maintenance_due(hour, 0, 10, False, 0, hour, busy=False) is None
    assert maintenance_due(hour + 10, 0, 10, False, 0, hour, busy=False) == REGULAR
    # Never beside a sleep cycle (it applies retention itself) or another run.
    assert maintenance_due(10 ** 6, 0, None, True, 0, hour, busy=True) is None


# -- parts that raise are restarted ---------------------------------------------------

def test_a_watcher_recorder_or_scheduler_that_raises_is_restarted_and_shown(make_rig):
    rig = make_rig(seconds=120, speed=2)
    d = rig.start()
    wait_for(lambda: rig.rows(), 30, "a clip queued")

    # The database stays locked past the busy timeout for a few seconds.
    rig.control.set(fail={"watcher": time.time() + 3})
    wait_for(lambda: (rig.published().get("faults") or {}).get("watcher"), 15,
             "the watcher's failure in the status")
    rig.control.set(fail={})
    before = rig.clips_written()
    wait_for(lambda: rig.clips_written() >= before + 2, 30, "more clips")
    wait_for(lambda: queued_everything(rig), 60, "every clip queued after the restart")
    rc, st = rig.status()
    watcher = st["faults"]["watcher"]
    assert watcher["failures"] >= 1 and watcher["last_error"] == (
        "OperationalError: database is locked")
    human = rig.wm("status").stdout
    assert "restarted:" in human and "watcher failed" in human and "database is locked" in human
    assert events_named(rig, "part_restarted")

    # The recorder's segmenter raises once: a new recorder takes over.
    rig.control.set(fail={"recorder": time.time() + 0.5, "scheduler": time.time() + 0.5})
    wait_for(lambda: {"recorder", "scheduler"} <= set(rig.published().get("faults") or {}),
             15, "the recorder's and the scheduler's failures in the status")
    rig.control.set(fail={})
    n = len(rig.manifests())
    wait_for(lambda: len(rig.manifests()) >= n + 2, 40, "a new recorder's clips")
    wait_for(lambda: problem(rig) == (0, None), 30, "wm status to say recording")
    assert rig.status()[1]["faults"]["recorder"]["last_error"] == (
        "RuntimeError: injected recorder failure")
    assert d.poll() is None
    d.terminate()
    assert d.wait(30) == 0


# -- partial files of another writer ------------------------------------------------------

WRITER = """
import os, sys, time
from pathlib import Path
from wm.base.atomic import partial_name
folder = Path(sys.argv[1])
named = partial_name(folder / "20250115T100000Z.mp4")   # carries this writer's pid
named.write_bytes(b"in flight")
unnamed = folder / "20250115T100003Z.mp4.partial"     # a writer that names no pid
print("ready", flush=True)
while True:
    with open(unnamed, "ab") as f:
        f.write(b"more")
    time.sleep(0.1)
"""


def test_start_up_sweep_spares_what_another_writer_is_writing(make_rig):
    rig = make_rig(seconds=60, speed=2)
    folder = rig.home / "data" / "clips" / "2025-01-15"
    folder.mkdir(parents=True)
    crashed = [folder / "20250115T090000Z.mp4.partial",            # an old crash
               folder / "20250115T090003Z.mp4.999999-0badc0de.partial"]   # a dead writer
    for p in crashed:
        p.write_bytes(b"left by a crash")
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        d = rig.start()
        wait_for(lambda: rig.clips_written() >= 1, 30, "the daemon to record")
        left = {p.name for p in folder.glob("*.partial")}
        assert "20250115T100003Z.mp4.partial" in left
        assert any(n.startswith(f"20250115T100000Z.mp4.{writer.pid}-") for n in left)
        assert not any(p.exists() for p in crashed)
    finally:
        writer.kill()
        writer.wait()
    d.terminate()
    assert d.wait(30) == 0


def _record_checks_the_lock() -> bool:
    import inspect

    from wm.capture import recorder
    return "refuse_beside_daemon" in inspect.getsource(recorder.run_record)


def test_wm_record_beside_wm_run_is_refused(tmp_path):
    held = tmp_path / "state" / "wm.lock"
    code = ("import sys, time; from pathlib import Path; from wm.base import lock;"
            "lock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(held)], cwd=REPO,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(WmError) as e:
            lock.refuse_beside_daemon(held, "wm record")
        said = str(e.value)
        assert "\n" not in said and f"pid {p.pid}" in said and said.startswith("wm record:")
        if not _record_checks_the_lock():
            pytest.skip("wm/capture/recorder.py run_record does not call "
                        "wm.base.lock.refuse_beside_daemon yet (the edit is in issue 13's "
                        "daemon report)")
        env = dict(os.environ, WM_HOME=str(tmp_path), PYTHONPATH=str(REPO))
        env.pop("WM_CONFIG", None)
        done = subprocess.run([sys.executable, "-m", "wm", "record", "--duration", "1"],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
        assert "is recording already" in done.stderr
        assert not (tmp_path / "data" / "clips").exists()
    finally:
        p.kill()
        p.wait()
    lock.refuse_beside_daemon(held, "wm record")     # nobody holds it now: no error


# -- a read-only data root --------------------------------------------------------------

def test_a_read_only_data_root_gives_answers_not_tracebacks(tmp_path, mounts):
    source = tmp_path / "root"
    paths = Paths(source / "home")
    settings = settings_for_tests()
    clips = make_memory_day(paths, settings, "2025-01-15", n_clips=3, seed=5)
    Queue(paths.memory_db).close()
    lock.release(lock.acquire(paths.lock_file))
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.log_file.write_text(json.dumps({"event": "hello", "level": "info",
                                          "timestamp": "2025-01-15T10:00:00Z"}) + "\n")
    ro = mounts.read_only(source)
    env = dict(os.environ, WM_HOME=str(ro / "home"), PYTHONPATH=str(REPO))
    env.pop("WM_CONFIG", None)

    def wm(*args) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "wm", *args], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=60)
        assert "Traceback" not in done.stdout + done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) <= 2, (args, done.stderr)
        return done

    st = wm("status", "--json")
    assert st.returncode == 3
    assert json.loads(st.stdout)["queue"]["queued"] == len(clips)
    assert "3 queued" in wm("status").stdout
    assert wm("config", "show").returncode == 0
    logs = wm("logs")
    assert logs.returncode == 0 and "hello" in logs.stdout
    run = wm("run")
    assert run.returncode != 0 and "Read-only file system" in run.stderr


def test_back_off_doubles_up_to_a_minute():
    from wm.daemon.faults import backoff_seconds

    assert [backoff_seconds(n) for n in (1, 2, 3, 6, 7, 1000)] == [1, 2, 4, 32, 60, 60]
