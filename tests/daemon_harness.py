"""Helpers for the daemon's tests, and a runner: `python tests/daemon_harness.py` is `wm run`
with a fake clock and fake idle/power probes read from a control file, a file played as
the live camera and microphone, and the sleep STAND-IN (tests/sleep_standin.py) as the
sleep cycle (the real `wm sleep --now` with WM_TEST_REAL_SLEEP=1). Everything else (lock, signals, watcher, queue, scheduler, notify, status
file) is the real daemon.

Control file (JSON, path in $WM_TEST_CONTROL): {"now": epoch seconds or null for the real
clock, "idle": bool, "power": bool, "tz": zone name, "fail": {part: epoch seconds}}.
"fail" injects faults into the running daemon: until that time the named part raises
("watcher": each path it routes, as SQLite does when the database stays locked;
"scheduler": each look; "recorder": its segmenter, on each cut)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "sleep_standin.py"
REPO = HERE.parent


def standin_command(budget: float) -> list[str]:
    return [sys.executable, str(STANDIN), "--budget", str(int(budget))]


# A model small enough to train a few steps a second on a test machine's CPU.
TINY_LEARN = {
    "device": "cpu", "batch_size": 4, "micro_batch": 4, "warmup_steps": 1, "log_every": 5,
    "jepa": {"image_size": 32, "patch_size": 8, "depth": 1, "heads": 2, "width": 32,
             "predictor_depth": 1, "predictor_width": 16, "steps": 100000},
    "cpc": {"n_mels": 16, "hidden": 32, "prediction_steps": 2, "negatives": 4, "steps": 3},
    "align": {"dim": 16, "steps": 3},
}


def write_config(path: Path, daemon: dict | None = None, capture: dict | None = None,
                 learn: dict | None = None, retention: dict | None = None) -> Path:
    """A settings file small and fast enough for tests."""
    cfg = {
        "capture": {"video_width": 160, "video_height": 120, "video_fps": 5,
                    "stall_seconds": 1.0, "reopen_max_seconds": 2.0, **(capture or {})},
        "daemon": {"check_seconds": 0.2, "lease_seconds": 30, "idle_minutes": 15,
                   **(daemon or {})},
        "logging": {"level": "debug"},
    }
    if learn:
        cfg["learn"] = learn
    if retention:
        cfg["retention"] = retention
    path.write_text(yaml.safe_dump(cfg))
    return path


@dataclass
class Control:
    path: Path

    def set(self, **kw) -> None:
        d = self.read()
        d.update(kw)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(d))
        os.replace(tmp, self.path)

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    # -- the injected clock and probes ---------------------------------------------
    def clock(self) -> float:
        now = self.read().get("now")
        return time.time() if now is None else float(now)

    def idle(self, min_seconds: float):
        from wm.daemon.probes import Idle

        return Idle(bool(self.read().get("idle", False)), "fake")

    def on_power(self) -> bool:
        return bool(self.read().get("power", True))

    def fault(self, part: str) -> None:
        """Raise while the control file says `part` fails."""
        until = (self.read().get("fail") or {}).get(part)
        if until is not None and time.time() < float(until):
            if part == "watcher":
                raise sqlite3.OperationalError("database is locked")
            raise RuntimeError(f"injected {part} failure")


def faulty_recorder(control: Control, source: str | None, speed: float):
    """A recorder factory whose segmenter raises while the control file says so (what a
    bug in the clip arithmetic would do): the real Recorder otherwise."""
    from wm.capture.recorder import Recorder

    class FaultyRecorder(Recorder):
        failure: BaseException | None = None

        def _emit(self, cuts):
            try:
                control.fault("recorder")
            except RuntimeError as e:
                self.failure = e
                raise
            super()._emit(cuts)

    return lambda s, p: FaultyRecorder(s, p, source_file=Path(source) if source else None,
                                       speed=speed)


def daemon_env(home: Path, config: Path, control: Path, source: Path | None = None,
               speed: float = 1.0, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(WM_HOME=str(home), WM_CONFIG=str(config), WM_TEST_CONTROL=str(control),
               WM_TEST_SPEED=str(speed), PYTHONPATH=str(REPO))
    if source is not None:
        env["WM_TEST_SOURCE"] = str(source)
    env.update(extra)
    return env


def start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve())], env=env,
                            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def wait_for(cond, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def events(home: Path) -> list[dict]:
    """What the sleep stand-in recorded."""
    p = home / "state" / "standin.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()


@dataclass
class Rig:
    """One data root, its settings file and control file, and the daemons started on it;
    checked from outside, as a user would."""
    tmp: Path
    source: Path
    speed: float
    window: str = "01:00-06:00"
    learn: dict | None = None
    daemon: dict = field(default_factory=dict)       # more daemon settings
    retention: dict | None = None
    home: Path | None = None                          # default: tmp/home
    procs: list = field(default_factory=list)

    def __post_init__(self):
        self.home = self.home or self.tmp / "home"
        self.config = write_config(self.tmp / "config.yaml",
                                   daemon={"night_window": self.window, **self.daemon},
                                   learn=self.learn, retention=self.retention)
        self.control = Control(self.tmp / "control.json")
        self.log = self.tmp / "daemon.log"

    def env(self, **extra) -> dict[str, str]:
        return daemon_env(self.home, self.config, self.control.path, self.source, self.speed,
                          **extra)

    def start(self, **extra) -> subprocess.Popen:
        p = start_daemon(self.env(**extra), self.log)
        self.procs.append(p)
        return p

    def wm(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "wm", *args], capture_output=True,
                              text=True, env=self.env(), cwd=REPO, timeout=60)

    def status(self) -> tuple[int, dict]:
        p = self.wm("status", "--json")
        return p.returncode, json.loads(p.stdout)

    def published(self) -> dict:
        try:
            return json.loads((self.home / "state" / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def clips_written(self) -> int:
        return (self.published().get("recorder") or {}).get("clips_written", 0)

    def manifests(self) -> set[str]:
        return {p.stem for p in (self.home / "data" / "clips").rglob("*.json")}

    def rows(self) -> list[tuple[str, str, str | None]]:
        db = self.home / "memory" / "episodic.sqlite"
        if not db.exists():
            return []
        with sqlite3.connect(db) as c:
            try:
                return c.execute("SELECT clip_id, state, owner FROM queue").fetchall()
            except sqlite3.OperationalError:    # the daemon is creating it
                return []

    def committed(self) -> set[str]:
        return {cid for cid, state, _ in self.rows() if state == "committed"}

    def file_events(self) -> list[dict]:
        """The daemon's (and its children's) structured log."""
        p = self.home / "logs" / "wm.jsonl"
        out = []
        for line in (p.read_text(errors="replace").splitlines() if p.exists() else []):
            try:
                out.append(json.loads(line))
            except ValueError:     # a line being written right now
                pass
        return out

    def standin(self, event: str) -> list[dict]:
        return [e for e in events(self.home) if e["event"] == event]

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid in {e["pid"] for e in events(self.home)}:   # no stand-in outlives the test
            try:
                if "sleep_standin" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def rig_factory(tmp_path: Path):
    """Generator behind a `make_rig` fixture: make(seconds, speed, **Rig fields) records a
    made-up day of `seconds` played at `speed`; every daemon is killed afterwards."""
    from wm.demo.synth import write_recording

    rigs = []

    def make(seconds: float, speed: float, **kw) -> Rig:
        src = tmp_path / "day.mp4"
        write_recording(src, seconds, [0, 1, 2], 4.0, size=(120, 160))
        rig = Rig(tmp_path, src, speed, **kw)
        rig.control.set(now=berlin(2025, 1, 15, 14, 0), idle=False, power=True,
                        tz="Europe/Berlin")
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.cleanup()


def no_partials(home: Path) -> bool:
    return not list((home / "data").rglob("*.partial"))


def main() -> int:
    from zoneinfo import ZoneInfo

    from wm.base import config, log
    from wm.base.errors import WmError
    from wm.base.paths import Paths
    from wm.daemon.supervisor import Daemon, Injected

    control = Control(Path(os.environ["WM_TEST_CONTROL"]))
    source = os.environ.get("WM_TEST_SOURCE")
    speed = float(os.environ.get("WM_TEST_SPEED", "1"))
    try:
        settings = config.load(None)
        paths = Paths.from_settings(settings)
        try:
            log.setup(paths.log_file, settings.logging.level)
        except OSError:     # what wm.cli does: a full or read-only root logs to stderr
            log.setup(None, settings.logging.level)
        injected = Injected(
            clock=control.clock, tz=ZoneInfo(control.read().get("tz", "Europe/Berlin")),
            probes=control, settle_seconds=0.5, fault=control.fault,
            sleep_command=None if os.environ.get("WM_TEST_REAL_SLEEP") else standin_command,
            recorder=faulty_recorder(control, source, speed))
        return Daemon(settings, paths, os.environ.get("WM_CONFIG"), injected).run()
    except WmError as e:
        print(f"wm: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
