"""Idle and power probes (platform answers parsed from real formats; the commands
themselves, loginctl/ioreg/pmset, are replaced where this machine has no such service),
and the systemd notify protocol against a datagram socket bound by the test."""
from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from wm.base import config, log
from wm.daemon.notify import Heartbeat, Notifier, capture_alive, watchdog_interval
from wm.daemon.probes import (
    SystemProbes,
    parse_hid_idle,
    parse_loginctl,
    parse_pmset,
    read_power_supply,
)


@pytest.fixture(autouse=True)
def _no_user_config(home):
    """conftest's `home`: nothing from this machine's own wm config leaks in."""


def settings(**daemon):
    return config.load(None, overrides={"daemon": daemon} if daemon else None)


@pytest.fixture
def logged(tmp_path):
    """The log file's events, as `wm logs` would show them."""
    path = tmp_path / "wm.jsonl"
    log.setup(path, "debug", console=False)

    def read() -> list[dict]:
        for h in logging.getLogger().handlers:
            h.flush()
        return [json.loads(line) for line in path.read_text().splitlines()]
    yield read
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()


# -- idle -----------------------------------------------------------------------------

def test_loginctl_output():
    now = 1_700_000_000.0
    assert parse_loginctl("IdleHint=no\nIdleSinceHint=0\n", now) == 0.0
    assert parse_loginctl(f"IdleHint=yes\nIdleSinceHint={int((now - 1200) * 1e6)}\n", now) == 1200
    assert parse_loginctl("IdleHint=yes\nIdleSinceHint=0\n", now) == float("inf")
    assert parse_loginctl("Failed to get user: No such user\n", now) is None


def test_hid_idle_and_pmset_output():
    ioreg = ('    | |   "HIDIdleTime" = 905123456789\n'
             '    | |   "HIDIdleTimeDelta" = 12\n')
    assert parse_hid_idle(ioreg) == pytest.approx(905.123456789)
    assert parse_hid_idle("no such key") is None
    assert parse_pmset("Now drawing from 'AC Power'\n -InternalBattery-0 (id=1)\t100%; charged;")
    assert not parse_pmset("Now drawing from 'Battery Power'\n -InternalBattery-0\t80%;")
    assert parse_pmset("garbage") is None


def test_linux_idle_from_logind():
    calls = []

    def loginctl(argv):
        calls.append(argv)
        return 0, f"IdleHint=yes\nIdleSinceHint={int(400 * 1e6)}\n"

    p = SystemProbes(settings(), platform="linux", run=loginctl, clock=lambda: 1000.0)
    r = p.idle(15 * 60)
    assert calls[0][:2] == ["loginctl", "show-user"] and "IdleHint" in calls[0]
    assert (r.idle, r.source, r.seconds) == (False, "logind", 600.0)   # idle 10 min < 15
    assert p.idle(5 * 60).idle


def test_idle_falls_back_to_load_average_and_says_so_once(logged):
    load = {"v": (0.1, 0.2, 0.3)}
    p = SystemProbes(settings(), platform="linux", cpus=2,
                     run=lambda a: (1, "Failed to connect to bus: Host is down"),
                     loadavg=lambda: load["v"])
    r1 = p.idle(900)
    load["v"] = (3.0, 2.5, 1.0)
    r2 = p.idle(900)
    assert (r1.idle, r1.source) == (True, "load")
    assert (r2.idle, r2.source) == (False, "load")      # busy over the last 5 minutes
    said = [e for e in logged() if e["event"] == "idle_probe_unavailable"]
    assert len(said) == 1 and "Host is down" in said[0]["detail"]
    assert said[0]["level"] == "warning" and said[0]["fallback"] == "load average"


def test_unanswerable_probes_use_the_configured_assumption(logged, tmp_path):
    for assume in (True, False):
        p = SystemProbes(settings(assume_idle=assume, assume_on_power=assume), platform="sunos5",
                         power_root=tmp_path / "none")
        assert [p.idle(60).idle for _ in range(3)] == [assume] * 3
        assert [p.on_power() for _ in range(3)] == [assume] * 3
    # once per probe (and per daemon process), with what it assumes
    said = [(e["event"], e.get("assume_idle", e.get("assume_on_power"))) for e in logged()]
    assert said == [("idle_probe_unavailable", True), ("power_probe_unavailable", True),
                    ("idle_probe_unavailable", False), ("power_probe_unavailable", False)]


# -- power ----------------------------------------------------------------------------

def supply(root: Path, name: str, **files: str) -> None:
    d = root / name
    d.mkdir(parents=True)
    for k, v in files.items():
        (d / k).write_text(v + "\n")


def test_power_supply_tree(tmp_path):
    laptop = tmp_path / "laptop"
    supply(laptop, "AC", type="Mains", online="1")
    supply(laptop, "BAT0", type="Battery", status="Charging")
    assert read_power_supply(laptop) is True
    (laptop / "AC" / "online").write_text("0\n")
    assert read_power_supply(laptop) is False
    # Only a battery (no Mains entry): discharging means on battery.
    bat = tmp_path / "bat"
    supply(bat, "BAT0", type="Battery", status="Discharging")
    assert read_power_supply(bat) is False
    supply(bat, "BAT1", type="Battery", status="Full")
    assert read_power_supply(bat) is False          # one of them is draining
    # A desktop: nothing there, the probe cannot tell.
    (tmp_path / "desktop").mkdir()
    assert read_power_supply(tmp_path / "desktop") is None
    assert read_power_supply(tmp_path / "missing") is None
    assert SystemProbes(settings(), platform="linux", power_root=laptop).on_power() is False
    assert SystemProbes(settings(assume_on_power=False), platform="linux",
                        power_root=tmp_path / "desktop").on_power() is False


def test_macos_probes_use_ioreg_and_pmset():
    answers = {"ioreg": (0, '"HIDIdleTime" = 1200000000000'),
               "pmset": (0, "Now drawing from 'Battery Power'")}
    p = SystemProbes(settings(), platform="darwin", run=lambda a: answers[a[0]])
    r = p.idle(900)
    assert (r.idle, r.source, r.seconds) == (True, "hid", 1200.0)
    assert p.on_power() is False


# -- sd_notify ------------------------------------------------------------------------

@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(2)
    yield s, str(path)
    s.close()


def test_datagrams_reach_the_socket(notify_socket):
    sock, path = notify_socket
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    assert n.enabled
    n.ready("recording")
    assert sock.recv(4096) == b"READY=1\nSTATUS=recording"
    n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_name():
    name = f"wm-test-{id(object())}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(2)
    try:
        assert Notifier(environ={"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert s.recv(100) == b"STATUS=hello"
    finally:
        s.close()


def test_outside_systemd_it_is_silent(tmp_path):
    n = Notifier(environ={})
    assert not n.enabled and not n.ready() and not n.watchdog()
    gone = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert gone.send("READY=1") is False          # logged once, never raises


def test_watchdog_interval_from_environment():
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "2"}, pid=2) == 10.0


def test_heartbeat_pings_only_while_capture_makes_progress(notify_socket):
    sock, path = notify_socket
    sock.settimeout(0.05)
    clock = {"t": 100.0}
    hb = Heartbeat(Notifier(environ={"NOTIFY_SOCKET": path}), interval=1.0, stall_after=2.0,
                   monotonic=lambda: clock["t"])

    def pings(last_progress, paused=False, seconds=5.0) -> int:
        """Beat every 0.25 s for `seconds`; count the datagrams that arrived."""
        n = 0
        for _ in range(int(seconds / 0.25)):
            hb.beat(last_progress(clock["t"]), paused)
            clock["t"] += 0.25
        while True:
            try:
                assert sock.recv(100) == b"WATCHDOG=1"
                n += 1
            except socket.timeout:
                return n

    assert pings(lambda t: t - 0.1) == 5                 # data flowing: one per interval
    stalled_at = clock["t"]
    assert pings(lambda t: stalled_at) == 3              # at 0, 1, 2 s old; none after
    assert pings(lambda t: stalled_at) == 0
    assert pings(lambda t: None) == 0                    # never had data
    assert pings(lambda t: stalled_at, paused=True) == 5  # paused by the user is healthy
    assert capture_alive(None, True, 0, 1) and not capture_alive(None, False, 0, 1)
