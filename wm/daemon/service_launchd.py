"""`wm service` on macOS: `wm run` as a launchd agent, written from the packaged template
wm/daemon/templates/io.wm.recorder.plist."""
from __future__ import annotations

import os
import plistlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wm.daemon.service_actions import (
    FOLLOW_HINT,
    Actions,
    keep_data_note,
    not_installed,
    query,
    unchanged,
)
from wm.daemon.service_spec import ServiceSpec, check_filled, template_text

PLIST_TEMPLATE = "io.wm.recorder.plist"
# launchd gives an agent a minimal PATH without Homebrew's folders; tools wm and its
# libraries look up (taskpolicy, anything installed with Homebrew) are searched for here.
_SEARCH_PATH = ("/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")


def launchd_log_dir(home: Path) -> Path:
    return home / "Library" / "Logs" / "wm"


def _fill(node, values: dict[str, str | list[str]]):
    """A string that is exactly a list field expands inside an array; a dict drops the
    entries a field left empty."""
    if isinstance(node, str):
        for key, value in values.items():
            if key in node and isinstance(value, str):
                node = node.replace(key, value)
        return node
    if isinstance(node, list):
        out = []
        for item in node:
            if isinstance(item, str) and isinstance(values.get(item), list):
                out.extend(values[item])
            else:
                out.append(_fill(item, values))
        return out
    if isinstance(node, dict):
        filled = {k: _fill(v, values) for k, v in node.items()}
        return {k: v for k, v in filled.items() if v != ""}
    return node


def render_plist(spec: ServiceSpec, home: Path, template: str | None = None) -> bytes:
    """The agent's plist. The template is a plist itself, so fields are filled in its
    parsed form: an empty one disappears instead of leaving an empty string behind."""
    data = plistlib.loads((template if template is not None
                           else template_text(PLIST_TEMPLATE)).encode())
    python_dir = str(Path(spec.program[0]).parent)
    values: dict[str, str | list[str]] = {
        "@PYTHON@": spec.program[0],
        "@CONFIG_ARGS@": spec.program[4:],
        "@WORKING_DIRECTORY@": str(spec.working_directory),
        "@PATH@": ":".join([python_dir] + [d for d in _SEARCH_PATH if d != python_dir]),
        "@WM_HOME@": spec.environment.get("WM_HOME", ""),
        "@LOG_DIR@": str(launchd_log_dir(home)),
    }
    out = plistlib.dumps(_fill(data, values))
    check_filled(out.decode(), "plist")
    return out


def launchd_label() -> str:
    return plistlib.loads(template_text(PLIST_TEMPLATE).encode())["Label"]


def launchd_plist_path(home: Path | None = None) -> Path:
    return (home or Path.home()) / "Library" / "LaunchAgents" / f"{launchd_label()}.plist"


@dataclass(frozen=True)
class LaunchdAgent:
    """wm's agent as launchd sees it, looked at once per `wm service` command."""
    home: Path
    path: Path
    domain: str
    target: str
    shown: subprocess.CompletedProcess | None   # `launchctl print`; None without launchctl

    @classmethod
    def look(cls, home: Path) -> "LaunchdAgent":
        domain = f"gui/{os.getuid()}"
        target = f"{domain}/{launchd_label()}"
        return cls(home, launchd_plist_path(home), domain, target,
                   query(["launchctl", "print", target]))

    @property
    def loaded(self) -> bool:
        return self.shown is not None and self.shown.returncode == 0

    def _bootstrap(self, act: Actions) -> None:
        # bootout returns before launchd has quite let go of the label: retry briefly
        act.run(["launchctl", "bootstrap", self.domain, str(self.path)], retries=3)

    def install(self, spec: ServiceSpec, act: Actions) -> int:
        content = render_plist(spec, self.home)
        loaded = self.loaded
        act.mkdir(spec.data_root)
        act.mkdir(launchd_log_dir(self.home))
        if unchanged(self.path, content):
            print(f"{self.path} is already up to date")
        else:
            act.write(self.path, content)
            if loaded:  # launchd keeps the old definition until the job is booted out
                act.run(["launchctl", "bootout", self.target])
                loaded = False
        if loaded:
            act.run(["launchctl", "kickstart", self.target])
        else:
            act.run(["launchctl", "enable", self.target])
            self._bootstrap(act)
        if not act.dry_run:
            print(f"wm runs as a launchd agent and starts when you log in. {FOLLOW_HINT}")
        print(f"Note: macOS asks once to allow camera and microphone access for "
              f"{os.path.realpath(spec.program[0])}: allow both (System Settings > Privacy & "
              "Security > Camera and Microphone list what was granted).")
        return 0

    def uninstall(self, spec: ServiceSpec, act: Actions) -> int:
        if self.loaded:
            act.run(["launchctl", "bootout", self.target])
        if self.path.exists():
            act.remove(self.path)
        else:
            print(not_installed(self.path))
        keep_data_note(spec, (launchd_log_dir(self.home),))
        return 0

    def status(self) -> int:
        print(f"agent: {self.path}")
        if not self.loaded:
            print("not loaded (stopped): `wm service start` starts it")
            return 3
        facts: dict[str, str] = {}  # the job's own lines come first; nested sections repeat keys
        for ln in self.shown.stdout.splitlines():
            key, sep, value = ln.strip().partition(" = ")
            if sep and key in ("state", "pid", "runs", "last exit code"):
                facts.setdefault(key, value)
        print("\n".join(f"{k} = {v}" for k, v in facts.items()))
        return 0 if facts.get("state") == "running" else 3

    def control(self, action: str, act: Actions) -> int:
        """start, stop or restart the installed agent."""
        if action == "stop":
            # KeepAlive would bring a killed job back: unload it until start or the next login
            if self.loaded:
                act.run(["launchctl", "bootout", self.target])
        elif not self.loaded:
            self._bootstrap(act)
        elif action == "restart":
            act.run(["launchctl", "kickstart", "-k", self.target])
        else:
            act.run(["launchctl", "kickstart", self.target])
        return 0
