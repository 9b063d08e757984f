"""`wm run` end to end: the real daemon (tests/daemon_harness.py: the real supervisor,
watcher, queue, scheduler, notify and status file) recording from a file played as the
live camera and microphone (there is no webcam here), with a fake clock and fake
idle/power probes so a night passes in seconds, and the sleep STAND-IN
(tests/sleep_standin.py; real training is tested with the learning code) as its child.
Checked from outside, as a user would: `wm status`, the files on disk, the queue, the
notify socket, exit codes, signals."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from daemon_harness import (
    REPO,
    TINY_LEARN,
    berlin,
    no_partials,
    rig_factory,
    wait_for,
    write_config,
)
from loopback import MjpegServer


@pytest.fixture
def make_rig(tmp_path):
    yield from rig_factory(tmp_path)


def test_run_status_second_instance_reload_and_stop(make_rig):
    rig = make_rig(seconds=60, speed=2)           # 30 s of "live" data, more than needed
    d = rig.start(STANDIN_WORK_SECONDS="2")       # a cycle still busy when SIGTERM comes
    wait_for(lambda: rig.clips_written() >= 2, 30, "two clips")

    rc, st = rig.status()
    assert rc == 0, st
    assert st["running"] and st["pid"] == d.pid and st["recording"] and st["responding"]
    assert (st["camera"], st["microphone"]) == ("ok", "ok")
    assert st["last_clip_age"] < 10 and st["problem"] is None
    assert st["queue"]["queued"] >= 1
    assert st["next_window_opens"].startswith("2025-01-16T01:00")     # the fake clock's night
    assert st["scheduler"].startswith("wait: outside the night window")
    human = rig.wm("status")
    assert human.returncode == 0 and f"running (pid {d.pid}" in human.stdout

    # Beside the recorder, the query service answers `wm query` on a private socket (here:
    # nothing is committed yet, and it says so as the command itself would).
    sock = rig.home / "state" / "query.sock"
    wait_for(sock.is_socket, 60, "the query service's socket")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    asked = rig.wm("query", "--clip", "20250115T090000Z")
    assert (asked.returncode, asked.stderr) == (
        3, "wm: the memory is empty: no clip has been committed yet (wm sleep --now)\n")
    assert [e for e in rig.file_events() if e["event"] == "query_answered"]

    # A second `wm run` (the real command) names the holder and gives up at once.
    t0 = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "wm", "run"], capture_output=True, text=True,
                            env=rig.env(), cwd=REPO, timeout=30)
    assert second.returncode == 2
    assert f"already running (pid {d.pid} holds" in second.stderr
    assert time.monotonic() - t0 < 10 and d.poll() is None

    # SIGHUP with a broken file: reported, the settings in use are kept.
    good = rig.config.read_text()
    rig.config.write_text("daemon: [unclosed\n")
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: [e for e in rig.file_events() if e["event"] == "reload_failed"], 10,
             "the reload error")
    assert d.poll() is None
    # SIGHUP with a night window that is open now (14:00) and the user away: it sleeps.
    rig.config.write_text(good.replace("01:00-06:00", "13:00-18:00"))
    rig.control.set(idle=True)
    d.send_signal(signal.SIGHUP)
    started = wait_for(lambda: rig.standin("start"), 15, "a sleep cycle after the reload")
    assert started[0]["argv"] == ["--budget", str(4 * 3600)]      # what is left of the window
    wait_for(lambda: (rig.published().get("scheduler") or {}).get("sleeping_pid"), 10, "status")
    rc, st = rig.status()
    assert st["next_window_opens"].startswith("2025-01-15T13:00")
    assert st["sleeping_pid"] == started[0]["pid"]
    assert f"sleeping:    now (pid {started[0]['pid']}, for " in rig.wm("status").stdout

    # SIGTERM: everything stops cleanly within a few seconds.
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    assert d.wait(15) == 0
    assert time.monotonic() - t0 < 5
    assert rig.standin("sigint") and rig.standin("exit")[-1]["result"] == "interrupted"
    assert not sock.exists(), "the query service stopped with the daemon"
    rc, st = rig.status()
    assert rc == 3 and not st["running"] and st["pid"] is None
    assert st["last_sleep"]["result"] == "interrupted"
    # The clip in flight was finished, every clip on disk is queued exactly once.
    ids = [cid for cid, _, _ in rig.rows()]
    assert sorted(ids) == sorted(rig.manifests()) and len(ids) == len(set(ids))
    # (Or, one stop in ~30, it came under 0.1 s after a clip had been cut whole: that clip is
    # the last, and the log says how little was left.)
    last = json.loads(max((rig.home / "data" / "clips").rglob("*.json")).read_text())
    on_boundary = [e for e in rig.file_events() if e["event"] == "recording_ended_on_boundary"]
    if on_boundary:
        assert on_boundary[0]["tail_dropped_s"] < 0.1 and last["duration"] == 3.0
    else:
        assert "final" in last["flags"]
    assert no_partials(rig.home)


def test_wm_run_on_a_loopback_camera_notifies_systemd(tmp_path):
    """The real `wm run` entry point (real probes, real recorder) on an HTTP MJPEG camera,
    microphone off. systemd's notify protocol against a socket bound here: READY once
    capturing, STATUS lines, WATCHDOG=1 while frames arrive (paused counts as healthy),
    none once the camera is gone, STOPPING at the end."""
    home = tmp_path / "home"
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.1)
    msgs: list[tuple[float, str]] = []
    listening = threading.Event()
    listening.set()

    def listen() -> None:     # what systemd does: read every datagram as it comes
        while listening.is_set():
            try:
                msgs.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                pass
    threading.Thread(target=listen, daemon=True).start()

    def pings_since(t: float) -> int:
        return sum(1 for at, m in msgs if m == "WATCHDOG=1" and at > t)

    with MjpegServer(fps=10, size=(320, 240)) as camera:
        cfg = write_config(tmp_path / "config.yaml", capture={"camera": camera.url,
                                                              "microphone": "off"})
        env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
        env.update(WM_HOME=str(home), WM_CONFIG=str(cfg), NOTIFY_SOCKET=sock_path,
                   WATCHDOG_USEC="500000")                       # a ping every 0.25 s
        log = open(tmp_path / "wm-run.log", "wb")
        d = subprocess.Popen([sys.executable, "-m", "wm", "run"], env=env, cwd=REPO,
                             stdout=log, stderr=subprocess.STDOUT)
        try:
            def wm(*args):
                return subprocess.run([sys.executable, "-m", "wm", *args], env=env, cwd=REPO,
                                      capture_output=True, text=True, timeout=60)

            wait_for(lambda: pings_since(0) >= 4, 30, "READY and pings")
            assert msgs[0][1].startswith("READY=1\nSTATUS=recording: camera ok, microphone off")
            wait_for(lambda: json.loads(wm("status", "--json").stdout)["recording"], 20,
                     "a clip")
            # Paused by the user: not recording, but healthy (pings go on).
            assert wm("pause").returncode == 0
            wait_for(lambda: any("STATUS=paused" in m for _, m in msgs), 10, "paused")
            st = wm("status", "--json")
            assert st.returncode == 1 and json.loads(st.stdout)["problem"] == "paused"
            t = time.monotonic()
            wait_for(lambda: pings_since(t) >= 4, 5, "pings while paused")
            assert wm("resume").returncode == 0
            wait_for(lambda: any(m.startswith("STATUS=recording") for at, m in msgs
                                      if at > t), 10, "recording again")
            # The camera goes away: no data, so no pings (systemd would restart us).
            camera.stop()
            wait_for(lambda: any("camera reopening" in m for _, m in msgs), 10, "camera lost")
            time.sleep(3.5)
            last_ping = max(at for at, m in msgs if m == "WATCHDOG=1")
            assert time.monotonic() - last_ping > 3 and d.poll() is None
            d.send_signal(signal.SIGTERM)
            wait_for(lambda: msgs[-1][1] == "STOPPING=1" if msgs else False, 10, "STOPPING")
            assert d.wait(10) == 0
        finally:
            if d.poll() is None:
                d.kill()
            listening.clear()
            time.sleep(0.2)
            sock.close()
    events_ = [json.loads(x) for x in (home / "logs" / "wm.jsonl").read_text().splitlines()]
    said = [e["event"] for e in events_]
    assert "capture_stalled" in said
    # This machine has no logind and no power supply entries: said once each, then assumed.
    assert said.count("idle_probe_unavailable") == 1
    assert said.count("power_probe_unavailable") <= 1


def test_a_night_with_kill_9_loses_nothing_and_counts_nothing_twice(make_rig):
    rng = random.Random(20250116)
    rig = make_rig(seconds=45, speed=5)           # 9 s of recording per daemon run
    rig.control.set(now=berlin(2025, 1, 16, 0, 50), idle=True)
    env = {"STANDIN_WORK_SECONDS": "0.3"}         # 2 clips per 0.3 s
    checkpoints: list[set[str]] = []

    def queued() -> int:
        return sum(1 for _, state, _ in rig.rows() if state == "queued")

    def cycle_with_work(n: int) -> dict:
        """Let the user be away once at least 8 clips wait: a cycle with work starts."""
        rig.control.set(idle=False)
        wait_for(lambda: queued() >= 8, 30, "clips to queue up")
        rig.control.set(idle=True)
        return wait_for(lambda: len(rig.standin("start")) == n and rig.standin("start")[-1],
                        20, f"cycle {n} to start")

    def kill_at_random_point(pid: int) -> None:
        time.sleep(rng.uniform(0.05, 0.8))
        checkpoints.append(rig.committed())
        os.kill(pid, signal.SIGKILL)

    d = rig.start(**env)
    wait_for(lambda: queued() >= 8, 30, "clips queued")
    time.sleep(0.5)
    assert not rig.standin("start")                  # 00:50: not yet

    rig.control.set(now=berlin(2025, 1, 16, 1, 10))  # the window opens: it sleeps
    wait_for(lambda: rig.standin("committed"), 10, "the first cycle to commit something")
    rig.control.set(idle=False)                      # someone gets up
    wait_for(lambda: rig.standin("exit"), 10, "the cycle to stop")
    assert rig.standin("exit")[0]["result"] == "interrupted"

    # kill -9 the daemon mid-cycle: the kernel tells the cycle (SIGINT), which checkpoints.
    cycle_with_work(2)
    kill_at_random_point(d.pid)
    d.wait()
    wait_for(lambda: len(rig.standin("exit")) == 2, 15, "the orphaned cycle to exit")
    assert rig.standin("exit")[1]["result"] == "interrupted"

    # kill -9 the cycle: the daemon gives its claims back and starts another.
    rig.control.set(idle=False)
    d = rig.start(**env)
    killed = cycle_with_work(3)
    kill_at_random_point(killed["pid"])
    wait_for(lambda: len(rig.standin("start")) == 4, 20, "a new cycle after the crash")

    # and the daemon once more, while that cycle works
    kill_at_random_point(d.pid)
    d.wait()
    wait_for(lambda: len(rig.standin("exit")) == 3, 15, "the orphaned cycle to exit")
    d = rig.start(**env)
    wait_for(lambda: rig.standin("exit")[-1]["result"] == "completed", 40, "a cycle to complete")
    d.send_signal(signal.SIGTERM)
    assert d.wait(15) == 0

    rows = rig.rows()
    ids = [cid for cid, _, _ in rows]
    # Every clip on disk is queued exactly once, and nothing else is.
    assert len(ids) == len(set(ids)) and set(ids) == rig.manifests()
    # No claim is left dangling.
    assert all(owner is None for _, _, owner in rows)
    # No committed work was lost.
    final = rig.committed()
    for before in checkpoints:
        assert before <= final
    # Nothing was done twice: every batch a cycle committed was committed by it alone.
    done = [cid for e in rig.standin("committed") for cid in e["ids"] if e["marked"]]
    assert len(done) == len(set(done))
    assert set(done) <= final and len(final - set(done)) <= 2   # a kill between mark and note
    assert len(final) >= 20
    assert no_partials(rig.home)
    rc, st = rig.status()
    assert rc == 3 and st["last_sleep"]["result"] == "completed"


def test_the_real_sleep_cycle_is_started_interrupted_and_resumed(make_rig):
    """The real `wm sleep --now` (a tiny model, so it trains on this CPU) as the child."""
    rig = make_rig(seconds=30, speed=3, learn=TINY_LEARN)
    rig.control.set(now=berlin(2025, 1, 16, 2, 0), idle=False)
    d = rig.start(WM_TEST_REAL_SLEEP="1")
    wait_for(lambda: rig.clips_written() >= 4, 30, "clips to learn from")

    def training_step() -> int:
        steps = [e.get("step", 0) for e in rig.file_events()
                 if e["event"] == "train_progress" and e.get("stage") == "jepa"]
        return max(steps, default=0)

    def last_sleep() -> dict:
        try:
            return json.loads((rig.home / "state" / "last_sleep.json").read_text())
        except (OSError, ValueError):
            return {}

    rig.control.set(idle=True)
    pid = wait_for(lambda: (rig.published().get("scheduler") or {}).get("sleeping_pid"), 10,
                   "the cycle to start")
    # At the lowest CPU and IO priority: nice 19, idle IO class.
    assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16]) == 19
    io = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True).stdout
    assert io.strip() == "idle"
    wait_for(lambda: training_step() > 0, 60, "training to make progress")

    rig.control.set(idle=False)                       # the user is back: SIGINT, checkpoint
    wait_for(lambda: last_sleep().get("result") == "interrupted", 40, "the checkpoint")
    first = last_sleep()["stages"]["jepa"]
    k1 = int(first.split("step ")[1].split()[0])
    assert k1 > 0 and first.startswith("stopped")

    rig.control.set(idle=True)                        # away again: it resumes from there
    wait_for(lambda: any(e["event"] == "sleep_started" and str(e.get("start", "")).startswith(
        f"resumed jepa at step {k1}") for e in rig.file_events()), 60, "the resumed cycle")
    wait_for(lambda: training_step() > k1, 60, "training beyond the checkpoint")
    d.send_signal(signal.SIGTERM)                      # shutdown checkpoints it once more
    assert d.wait(60) == 0
    k2 = int(last_sleep()["stages"]["jepa"].split("step ")[1].split()[0])
    assert last_sleep()["result"] == "interrupted" and k2 > k1
