"""`wm status` when no daemon runs, and how it judges what a daemon published (the
running daemon itself is checked against `wm status` in test_daemon_run.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_harness import REPO, write_config

from wm.base import config
from wm.base.paths import Paths
from wm.base.queue import COMMITTED, Queue
from wm.capture.pause import pause
from wm.daemon.scheduler import SchedulerView
from wm.daemon.status_file import DaemonStatus, RecorderView, WatcherView
from wm.daemon.status_report import (
    NOT_RUNNING,
    RUNNING_NOT_RECORDING,
    RUNNING_RECORDING,
    build_report,
)
from wm.demo.synth import make_day
from wm.learn.versions import record_version


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("WM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WM_CONFIG", str(write_config(tmp_path / "config.yaml",
                                                     daemon={"night_window": "23:00-05:00"})))
    settings = config.load(None)
    return settings, Paths.from_settings(settings)


def wm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wm", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_not_running(env):
    settings, paths = env
    clips = make_day(settings, paths, "2025-01-15", 5)
    q = Queue(paths.memory_db)
    for c in clips:
        q.enqueue(c.manifest, str(c.manifest_path.relative_to(paths.data)))
    q.mark([clips[0].manifest.id], COMMITTED)
    q.close()
    paths.last_sleep_file.parent.mkdir(parents=True, exist_ok=True)
    paths.last_sleep_file.write_text(json.dumps({
        "started": "2025-01-16T01:00:00+01:00", "finished": "2025-01-16T02:30:00+01:00",
        "seconds": 5400, "result": "interrupted", "stages": {"jepa": "1200 steps", "cpc": "skipped"}}))

    p = wm("status", "--json")
    assert p.returncode == NOT_RUNNING, p.stderr
    r = json.loads(p.stdout)
    assert r["running"] is False and r["recording"] is False and r["pid"] is None
    assert r["queue"] == {"queued": 4, "committed": 1, "purged": 0}
    media = sum(f.stat().st_size for f in paths.data.rglob("*") if f.is_file())
    assert media <= r["data_bytes"] <= media + 64 * 4096       # allocated blocks
    assert r["free_bytes"] > 0
    assert r["last_sleep"]["result"] == "interrupted" and r["last_sleep"]["seconds"] == 5400
    assert r["last_sleep"]["stages"] == {"jepa": "1200 steps", "cpc": "skipped"}
    assert r["next_window_opens"][11:16] == "23:00" and r["next_window_closes"][11:16] == "05:00"
    assert r["exit_code"] == NOT_RUNNING

    p = wm("status")
    assert p.returncode == NOT_RUNNING
    assert "not running" in p.stdout and "4 queued, 1 committed, 0 purged" in p.stdout
    assert "1h30m" in p.stdout and "interrupted" in p.stdout and "jepa: 1200 steps" in p.stdout


def test_fresh_install_says_never_slept(env):
    p = wm("status")
    assert p.returncode == NOT_RUNNING
    assert "last sleep:  never" in p.stdout and "0 queued" in p.stdout
    assert not Path(os.environ["WM_HOME"], "memory").exists()   # status creates nothing


def test_status_names_the_version_in_use_and_the_last_nights_verdict(env):
    settings, paths = env
    assert "version 0 (fixed features: no night trained yet) in use" in wm("status").stdout
    record_version(paths, "2025-01-15.1", "2025-01-15", "checkpoints/a.pt", promoted=False)
    paths.last_sleep_file.parent.mkdir(parents=True, exist_ok=True)
    verdict = ("version 2025-01-15.1 NOT promoted (worse than version 0 on held-out visits;"
               " version 0 stays in use)")
    paths.last_sleep_file.write_text(json.dumps({
        "started": "2025-01-16T01:00:00+01:00", "seconds": 600, "result": "completed",
        "stages": {"jepa": "done at step 80 of 80", "evaluation": verdict}}))
    out = wm("status").stdout
    assert f"verdict:     {verdict}" in out
    assert "version 0 (fixed features: no night promoted yet) in use" in out

    record_version(paths, "2025-01-16.1", "2025-01-16", "checkpoints/b.pt", promoted=True)
    out = wm("status").stdout
    assert "models:      2025-01-16.1 (trained on 2025-01-16) in use" in out
    assert json.loads(wm("status", "--json").stdout)["models"].startswith("2025-01-16.1")


# -- judging a published status, with the lock held by a live process ------------------

@pytest.fixture
def lock_holder(env):
    """A process that holds the daemon's lock (what `wm run` does first)."""
    settings, paths = env
    code = ("import sys, time; from pathlib import Path; from wm.daemon import lock;"
            "lock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(paths.lock_file)], cwd=REPO,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    yield p
    p.kill()
    p.wait()


def publish(paths: Paths, pid: int, now: float, **recorder) -> None:
    rec = dict(camera="ok", microphone="ok", last_clip_end=now - 2, clips_written=40,
               paused=False, disk_low=False, data_age=0.1)
    rec.update(recorder)
    DaemonStatus(pid=pid, started=now - 3600, updated=now, config=None,
                 recorder=RecorderView(**rec),
                 scheduler=SchedulerView("01:00-06:00", "2025-01-17T01:00:00+01:00",
                                         "2025-01-17T06:00:00+01:00", "wait", "outside", None, None),
                 watcher=WatcherView(0, 0, 0, 0, 0, None), data_bytes=123,
                 data_bytes_at=now).write(paths.status_file)


def test_judging_a_running_daemon(env, lock_holder):
    settings, paths = env
    now = time.time()
    r = build_report(settings, paths, now)
    assert r.running and r.pid == lock_holder.pid and r.problem == "starting (no status yet)"
    assert r.exit_code == RUNNING_NOT_RECORDING

    publish(paths, lock_holder.pid, now)
    r = build_report(settings, paths, now)
    assert (r.recording, r.exit_code, r.problem) == (True, RUNNING_RECORDING, None)
    assert r.data_bytes == 123 and r.next_window_opens.startswith("2025-01-17T01:00")

    cases = [
        (dict(last_clip_end=now - 60), "no clip written recently"),
        (dict(camera="reopening", microphone="off"), "no device records"),
        (dict(paused=True), "paused"),
        (dict(disk_low=True), "disk almost full"),
    ]
    for fields, why in cases:
        publish(paths, lock_holder.pid, now, **fields)
        r = build_report(settings, paths, now)
        assert r.exit_code == RUNNING_NOT_RECORDING and why in r.problem, (fields, r.problem)
    # One device lost, the other recording: still recording.
    publish(paths, lock_holder.pid, now, camera="reopening")
    assert build_report(settings, paths, now).recording
    # A daemon that stopped rewriting its status is hung.
    r = build_report(settings, paths, now + 120)
    assert not r.recording and "not responding" in r.problem
    # `wm pause` counts even before the daemon notices.
    publish(paths, lock_holder.pid, time.time())
    pause(paths, 600)
    r = build_report(settings, paths)
    assert r.paused and r.exit_code == RUNNING_NOT_RECORDING

    lock_holder.kill()
    lock_holder.wait()
    r = build_report(settings, paths)
    assert not r.running and r.exit_code == NOT_RUNNING


def test_a_disk_without_room_is_a_reason_in_words():
    from wm.daemon.status_report import disk_problem

    assert disk_problem(0, 2.0).startswith("disk full")
    low = disk_problem(500_000_000, 2.0)
    assert low.startswith("disk almost full") and "retention.min_free_gb" in low
    assert disk_problem(3_000_000_000, 2.0) is None
    assert disk_problem(1, 0.0) is None      # no floor: only a full disk stops it
