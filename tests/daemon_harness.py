"""Helpers for the daemon's tests, and a runner: `python tests/daemon_harness.py` is `wm run`
with a fake clock and fake idle/power probes read from a control file, a file played as
the live camera and microphone, and the sleep STAND-IN (tests/sleep_standin.py) as the
sleep cycle (the real `wm sleep --now` with WM_TEST_REAL_SLEEP=1). Everything else (lock, signals, watcher, queue, scheduler, notify, status
file) is the real daemon.

Control file (JSON, path in $WM_TEST_CONTROL): {"now": epoch seconds or null for the real
clock, "idle": bool, "power": bool, "tz": zone name}."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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
                 learn: dict | None = None) -> Path:
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


def main() -> int:
    from zoneinfo import ZoneInfo

    from wm.base import config, log
    from wm.base.errors import WmError
    from wm.base.paths import Paths
    from wm.capture.recorder import Recorder
    from wm.daemon.supervisor import Daemon, Injected

    control = Control(Path(os.environ["WM_TEST_CONTROL"]))
    source = os.environ.get("WM_TEST_SOURCE")
    speed = float(os.environ.get("WM_TEST_SPEED", "1"))
    try:
        settings = config.load(None)
        paths = Paths.from_settings(settings)
        log.setup(paths.log_file, settings.logging.level)
        injected = Injected(
            clock=control.clock, tz=ZoneInfo(control.read().get("tz", "Europe/Berlin")),
            probes=control, settle_seconds=0.5,
            sleep_command=None if os.environ.get("WM_TEST_REAL_SLEEP") else standin_command,
            recorder=lambda s, p: Recorder(s, p, source_file=Path(source) if source else None,
                                           speed=speed))
        return Daemon(settings, paths, os.environ.get("WM_CONFIG"), injected).run()
    except WmError as e:
        print(f"wm: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
