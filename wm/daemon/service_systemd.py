"""`wm service` on Linux: `wm run` as a systemd user unit, written from the packaged
template wm/daemon/templates/wm.service."""
from __future__ import annotations

import os
from pathlib import Path

from wm.daemon.service_actions import (
    FOLLOW_HINT,
    Actions,
    call,
    keep_data_note,
    not_installed,
    query,
    unchanged,
    user_name,
)
from wm.daemon.service_spec import (
    ServiceError,
    ServiceSpec,
    check_filled,
    template_text,
)

UNIT_NAME = "wm.service"
_NO_MANAGER = (" (is a systemd user manager running for you? It starts when you log in; "
               "over ssh without a login session run `loginctl enable-linger` first)")


def _unit_word(word: str, exec_line: bool) -> str:
    """One double-quoted word for a unit file: backslashes and quotes escaped, `%` (a
    specifier) doubled, and on Exec lines `$` (a variable) doubled too."""
    if "\n" in word:
        raise ServiceError(f"{word!r}: a path with a line break cannot go into a unit file")
    word = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if exec_line:
        word = word.replace("$", "$$")
    return f'"{word}"'


def render_unit(spec: ServiceSpec, template: str | None = None) -> str:
    text = template if template is not None else template_text(UNIT_NAME)
    env_line = ""
    if spec.environment:
        env_line = "Environment=" + " ".join(
            _unit_word(f"{k}={v}", exec_line=False) for k, v in spec.environment.items())
    values = {
        "@EXEC_START@": " ".join(_unit_word(w, exec_line=True) for w in spec.program),
        "@WORKING_DIRECTORY@": str(spec.working_directory).replace("%", "%%"),
    }
    lines = []
    for line in text.splitlines():
        if line.strip() == "@ENVIRONMENT@":
            if env_line:
                lines.append(env_line)
            continue
        for key, value in values.items():
            line = line.replace(key, value)
        lines.append(line)
    out = "\n".join(lines) + "\n"
    check_filled(out, "unit")
    return out


def systemd_unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def _systemctl(*args: str) -> list[str]:
    return ["systemctl", "--user", *args]


def _hints(user: str) -> None:
    linger = query(["loginctl", "show-user", user, "--property=Linger", "--value"])
    if linger is None or linger.returncode != 0 or linger.stdout.strip() != "yes":
        print(f"Note: lingering is off for {user}: wm records only while you are logged in. "
              f"To record from boot without a login session: loginctl enable-linger {user}")
    groups = query(["id", "-Gn", user])
    if groups is not None and groups.returncode == 0:
        missing = [g for g in ("video", "audio") if g not in groups.stdout.split()]
        if missing:
            print(f"Note: {user} is not in the {' and '.join(missing)} group"
                  f"{'s' if len(missing) > 1 else ''}. While you are logged in at this machine "
                  "the desktop grants the camera and sound devices to you; to record without a "
                  f"session: sudo usermod -aG {','.join(missing)} {user}, then log in again. "
                  "(A microphone reached through PipeWire or PulseAudio needs no audio group.)")


class SystemdUnit:
    """wm's unit in the user's systemd configuration."""

    def __init__(self) -> None:
        self.path = systemd_unit_path()

    def install(self, spec: ServiceSpec, act: Actions) -> int:
        unit = self.path
        content = render_unit(spec).encode()
        existed = unit.exists()
        same = unchanged(unit, content)
        act.mkdir(spec.data_root)
        if same:
            print(f"{unit} is already up to date")
        else:
            act.write(unit, content)
            act.run(_systemctl("daemon-reload"), _NO_MANAGER)
        act.run(_systemctl("enable", "--now", UNIT_NAME), _NO_MANAGER)
        if existed and not same:
            act.run(_systemctl("restart", UNIT_NAME))  # the running one still has the old file
        if not act.dry_run:
            print(f"wm runs as a user service and starts with your session. {FOLLOW_HINT}")
        _hints(user_name())
        return 0

    def uninstall(self, spec: ServiceSpec, act: Actions) -> int:
        if not self.path.exists():
            print(not_installed(self.path))
        else:
            act.run(_systemctl("disable", "--now", UNIT_NAME), _NO_MANAGER)
            act.remove(self.path)
            act.run(_systemctl("daemon-reload"), _NO_MANAGER)
        keep_data_note(spec)
        return 0

    def status(self) -> int:
        print(f"unit: {self.path}", flush=True)
        rc = call(_systemctl("--no-pager", "status", UNIT_NAME), capture=False).returncode
        _hints(user_name())
        return rc

    def control(self, action: str, act: Actions) -> int:
        """start, stop or restart the installed unit."""
        act.run(_systemctl(action, UNIT_NAME), _NO_MANAGER)
        return 0
