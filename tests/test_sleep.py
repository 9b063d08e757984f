"""The sleep cycle: stop and resume mid-stage, budgets, versions only for finished nights,
collapse keeps a version from being promoted, and a real `wm sleep` process stopped
by SIGINT."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from learn_support import (
    TINY,
    day,
    merge,
    one_thread,  # noqa: F401 (an autouse fixture)
    queue_day,
    tiny_settings,
)

from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.demo.synth import make_day
from wm.learn.encoders import load_checkpoint, load_encoders
from wm.learn.fixed import VERSION_0
from wm.learn.versions import all_versions
from wm.nightly.cycle import sleep_cycle
from wm.nightly.run import run_sleep

DAY = day(1)
SHORT = {"jepa": {"steps": 40}, "cpc": {"steps": 20}, "align": {"steps": 20}}


class StopAfter:
    """A stop request after `n` polls (the cycle polls before each micro-batch)."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self) -> bool:
        self.n -= 1
        return self.n < 0


def state(paths: Paths) -> dict:
    return load_checkpoint(paths.daily_checkpoint_dir(DAY) / "state.pt", torch.device("cpu"))


@pytest.mark.parametrize("polls,stage", [(30, "jepa"), (110, "cpc")])
def test_stopped_mid_stage_then_resumed_where_it_stopped(tmp_path, polls, stage):
    settings = tiny_settings(**SHORT)
    paths = Paths(tmp_path)
    queue_day(settings, paths, DAY, 24, seed=3)

    first = sleep_cycle(settings, paths, None, None, StopAfter(polls))
    assert first.result == "interrupted" and first.version is None
    assert all_versions(paths) == []                       # no version for an unfinished night
    saved = state(paths)
    rec = saved["records"][stage]
    assert 0 < rec["step"] < rec["max_steps"] and not rec["done"]
    assert saved["optim"] is not None                      # the optimizer's moments travel too
    done_before = [n for n, r in saved["records"].items() if r["done"]]
    assert done_before == (["jepa"] if stage == "cpc" else [])

    second = sleep_cycle(settings, paths, None, None, lambda: False)
    assert second.result == "completed"
    report = json.loads(paths.report(DAY).read_text())
    s = report["stages"][stage]
    assert s["resumed_at"] == [rec["step"]] and s["steps"] == rec["max_steps"]
    assert len(state(paths)["records"][stage]["losses"]) == rec["max_steps"]   # no step twice
    for name in done_before:
        assert report["stages"][name]["resumed_at"] == []  # a finished stage is not retrained
    [v] = all_versions(paths)
    assert second.version == v.version and v.promoted

    # Run again with nothing new: the night is already learned, nothing retrains.
    third = sleep_cycle(settings, paths, DAY, None, lambda: False)
    assert third.version == v.version and len(all_versions(paths)) == 1
    assert third.stages["train"] == f"already trained as version {v.version}"


def test_collapse_is_recorded_but_not_promoted(tmp_path):
    settings = tiny_settings(**SHORT, collapse_min_rank=1000.0)
    paths = Paths(tmp_path)
    queue_day(settings, paths, DAY, 16, seed=4)
    out = sleep_cycle(settings, paths, None, None, lambda: False)
    assert out.result == "completed"
    [v] = all_versions(paths)
    assert not v.promoted
    assert "NOT promoted" in out.stages["evaluation"]
    report = json.loads(paths.report(DAY).read_text())
    assert report["promoted"] is False and "video" in report["evaluation"]["collapse"]
    assert load_encoders(settings, paths).version == VERSION_0
    # the memory is not left empty: every clip went in with version 0
    assert out.stages["commit"].startswith("16 committed") and "version v0" in out.stages["commit"]


def test_a_budget_shortens_the_night_instead_of_losing_it(tmp_path):
    settings = tiny_settings(jepa={"steps": 100_000}, cpc={"steps": 100_000}, align={"steps": 100_000})
    paths = Paths(tmp_path)
    queue_day(settings, paths, DAY, 16, seed=5)
    t0 = time.monotonic()
    out = sleep_cycle(settings, paths, None, 12.0, lambda: False)
    elapsed = time.monotonic() - t0
    assert out.result == "completed" and out.version is not None
    assert elapsed < 12.0 + 15.0, elapsed
    report = json.loads(paths.report(DAY).read_text())
    for name in ("jepa", "cpc", "align"):
        assert 0 < report["stages"][name]["steps"] < 100_000


def test_nothing_queued_is_nothing_to_do(tmp_path, capsys):
    paths = Paths(tmp_path)
    assert run_sleep(tiny_settings(), paths, None, None) == 0
    last = json.loads(paths.last_sleep_file.read_text())
    assert last["result"] == "nothing_to_do" and last["finished"] >= last["started"]
    assert "nothing to learn" in capsys.readouterr().out


def test_clips_recorded_without_the_daemon_are_learned(tmp_path, capsys):
    # `wm record` then `wm sleep --now`, no `wm run`: no watcher queued the clips.
    settings = tiny_settings(**SHORT)
    paths = Paths(tmp_path)
    make_day(settings, paths, DAY, 12, seed=7)
    assert run_sleep(settings, paths, None, None) == 0
    out = capsys.readouterr().out
    assert "commit: 12 committed" in out, out
    q = Queue(paths.memory_db)
    assert {i.state for i in q.items(date=DAY)} == {"committed"} and len(q.items(date=DAY)) == 12
    q.close()


def test_a_second_cycle_is_refused_while_one_runs(tmp_path):
    paths = Paths(tmp_path)
    paths.state.mkdir(parents=True)
    with open(paths.sleep_lock_file, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(WmError, match="another sleep cycle"):
            run_sleep(tiny_settings(), paths, None, None)


def test_sigint_stops_wm_sleep_within_seconds_with_a_checkpoint(tmp_path):
    home = tmp_path / "home"
    paths = Paths(home)
    settings = tiny_settings()
    queue_day(settings, paths, DAY, 16, seed=6)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(merge(TINY, {"learn": {
        "checkpoint_minutes": 0.02, "jepa": {"steps": 100_000}}})))
    env = dict(os.environ, WM_HOME=str(home), WM_CONFIG=str(cfg), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "wm", "sleep", "--now"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    ckpt = paths.daily_checkpoint_dir(DAY) / "state.pt"
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ckpt.exists(), proc.communicate(timeout=30)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert stopped_in < 30
    last = json.loads(paths.last_sleep_file.read_text())
    assert last["result"] == "interrupted" and "stopped at step" in last["stages"]["jepa"]
    rec = state(paths)["records"]["jepa"]
    assert rec["step"] > 0 and not rec["done"]
    assert f"stopped at step {rec['step']} " in last["stages"]["jepa"]   # the checkpoint is the last step
