"""Is the user away, and is the machine on mains power? Asked of the platform:

- idle, Linux: logind's IdleHint/IdleSinceHint for the user (`loginctl show-user`);
  where logind cannot answer, the load average (low for a while = nobody working);
  macOS: HIDIdleTime of IOHIDSystem (`ioreg`).
- power, Linux: /sys/class/power_supply: a supply of type Mains that is online (without
  one, a battery that is not discharging); macOS: `pmset -g batt`.

A probe that cannot answer says so once in the log and gives the configured assumption
(daemon.assume_idle / daemon.assume_on_power)."""
from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from wm.base import log
from wm.base.config import Settings

# Load average per core below which the machine counts as unattended. The recorder
# itself keeps a core a fraction busy; a person at work keeps it higher.
LOAD_IDLE_PER_CORE = 0.5


@dataclass(frozen=True)
class Idle:
    idle: bool                  # idle for at least the time asked
    source: str                 # "logind" | "hid" | "load" | "assumed" (or a test's name)
    seconds: float | None = None  # since the last input, where known


class Probes(Protocol):
    def idle(self, min_seconds: float) -> Idle: ...
    def on_power(self) -> bool: ...


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)
    return p.returncode, p.stdout if p.returncode == 0 else (p.stderr.strip() or p.stdout)


def parse_loginctl(text: str, now: float) -> float | None:
    """Seconds the user has been idle (0 when active) from `loginctl show-user -p IdleHint
    -p IdleSinceHint`; None if the text does not say."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    hint = fields.get("IdleHint")
    if hint not in ("yes", "no"):
        return None
    if hint == "no":
        return 0.0
    since_us = int(fields.get("IdleSinceHint", "0") or 0)
    if since_us <= 0:
        return float("inf")     # idle, since an unknown time
    return max(0.0, now - since_us / 1e6)


def parse_hid_idle(text: str) -> float | None:
    """Seconds since the last keyboard/mouse input from `ioreg -c IOHIDSystem`."""
    m = re.search(r'"HIDIdleTime"\s*=\s*(\d+)', text)
    return int(m.group(1)) / 1e9 if m else None


def parse_pmset(text: str) -> bool | None:
    """On mains power according to `pmset -g batt`."""
    m = re.search(r"drawing from '([^']+)'", text)
    if not m:
        return None
    return m.group(1) == "AC Power"


def read_power_supply(root: Path) -> bool | None:
    """On mains according to /sys/class/power_supply; None where it does not say (a
    desktop usually has no entries at all)."""
    if not root.is_dir():
        return None
    mains, batteries = [], []
    for d in sorted(root.iterdir()):
        try:
            kind = (d / "type").read_text().strip()
            if kind == "Mains":
                mains.append((d / "online").read_text().strip() == "1")
            elif kind == "Battery":
                batteries.append((d / "status").read_text().strip())
        except OSError:
            continue
    if mains:
        return any(mains)
    if batteries:
        return all(s != "Discharging" for s in batteries)
    return None


class SystemProbes:
    def __init__(self, settings: Settings, *, platform: str = sys.platform,
                 run: Callable[[list[str]], tuple[int, str]] = _run,
                 power_root: Path = Path("/sys/class/power_supply"),
                 loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg,
                 cpus: int | None = None, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.platform = platform
        self.run = run
        self.power_root = power_root
        self.loadavg = loadavg
        self.cpus = cpus or os.cpu_count() or 1
        self.clock = clock
        self.log = log.get("wm.probes")
        self._said: set[str] = set()

    def update(self, settings: Settings) -> None:
        self.settings = settings

    def _once(self, key: str, **kw) -> None:
        if key not in self._said:
            self._said.add(key)
            self.log.warning(key, **kw)

    # -- idle ---------------------------------------------------------------------
    def idle(self, min_seconds: float) -> Idle:
        if self.platform.startswith("linux"):
            seconds = self._logind()
            if seconds is not None:
                return Idle(seconds >= min_seconds, "logind", seconds)
            return self._load()
        if self.platform == "darwin":
            rc, out = self.run(["ioreg", "-c", "IOHIDSystem", "-d", "4"])
            seconds = parse_hid_idle(out) if rc == 0 else None
            if seconds is not None:
                return Idle(seconds >= min_seconds, "hid", seconds)
            self._once("idle_probe_unavailable", probe="ioreg HIDIdleTime", detail=out[:200],
                       assume_idle=self.settings.daemon.assume_idle)
            return Idle(self.settings.daemon.assume_idle, "assumed")
        self._once("idle_probe_unavailable", probe=f"none on {self.platform}",
                   assume_idle=self.settings.daemon.assume_idle)
        return Idle(self.settings.daemon.assume_idle, "assumed")

    def _logind(self) -> float | None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        rc, out = self.run(["loginctl", "show-user", user, "-p", "IdleHint", "-p", "IdleSinceHint"])
        seconds = parse_loginctl(out, self.clock()) if rc == 0 else None
        if seconds is None:
            self._once("idle_probe_unavailable", probe="logind IdleHint", detail=out.strip()[:200],
                       fallback="load average")
        return seconds

    def _load(self) -> Idle:
        try:
            _, load5, load15 = self.loadavg()
        except OSError as e:
            self._once("idle_probe_unavailable", probe="load average", detail=str(e),
                       assume_idle=self.settings.daemon.assume_idle)
            return Idle(self.settings.daemon.assume_idle, "assumed")
        # The 15-minute average spans about the default idle time; the 5-minute one
        # notices a person who just started working.
        return Idle(max(load5, load15) / self.cpus < LOAD_IDLE_PER_CORE, "load")

    # -- power --------------------------------------------------------------------
    def on_power(self) -> bool:
        answer = None
        if self.platform.startswith("linux"):
            answer = read_power_supply(self.power_root)
            probe = str(self.power_root)
        elif self.platform == "darwin":
            rc, out = self.run(["pmset", "-g", "batt"])
            answer = parse_pmset(out) if rc == 0 else None
            probe = "pmset -g batt"
        else:
            probe = f"none on {self.platform}"
        if answer is None:
            self._once("power_probe_unavailable", probe=probe,
                       assume_on_power=self.settings.daemon.assume_on_power)
            return self.settings.daemon.assume_on_power
        return answer
