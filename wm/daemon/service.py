"""`wm service`: install and control `wm run` as a per-user service, a systemd user unit
on Linux and a launchd agent on macOS.

The templates ship inside the package (wm/daemon/templates/; the repository's top-level
systemd/ and launchd/ folders hold the same files). The service runs this very interpreter
with `-m wm`, by absolute path and not through a shell or PATH, so a virtual environment
works without being activated; its symlink is kept as is, since resolving it would leave
the environment."""
from __future__ import annotations

import os
import plistlib
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

from wm.base import config
from wm.base.errors import WmError
from wm.base.paths import Paths

UNIT_NAME = "wm.service"
PLIST_TEMPLATE = "io.wm.recorder.plist"
# Carried into the service because the data root and config location depend on them, and
# a service manager does not start with the login shell's environment.
CARRIED_ENV = ("WM_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


class ServiceError(WmError):
    pass


def template_text(name: str) -> str:
    return resources.files("wm.daemon").joinpath("templates", name).read_text(encoding="utf-8")


# -- what the service runs: pure, tested directly ----------------------------------------

@dataclass(frozen=True)
class ServiceSpec:
    program: list[str]            # absolute interpreter, then its arguments
    data_root: Path               # the working directory; also where uninstall says data is
    environment: dict[str, str]   # variables the service needs beyond the manager's own
    config_file: Path | None      # the settings file the service reads, if any


def service_spec(paths: Paths, config_path: str | os.PathLike | None,
                 environ: Mapping[str, str] | None = None,
                 python: str | None = None) -> ServiceSpec:
    environ = os.environ if environ is None else environ
    python = python or sys.executable
    if not python:
        raise ServiceError("cannot tell which Python runs wm (sys.executable is empty)")
    python = os.path.abspath(python)
    found, _ = config.user_config_path(config_path)
    config_file = found.absolute() if found is not None and found.exists() else None
    program = [python, "-m", "wm", "run"]
    if config_file is not None:
        program += ["--config", str(config_file)]
    env = {k: os.path.abspath(environ[k]) for k in CARRIED_ENV if environ.get(k)}
    if "WM_HOME" in env:
        env["WM_HOME"] = str(paths.root)
    return ServiceSpec(program, paths.root, env, config_file)


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
        "@WORKING_DIRECTORY@": str(spec.data_root).replace("%", "%%"),
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
    left = _PLACEHOLDER.findall(out)
    if left:
        raise ServiceError(f"unit template: unknown fields {sorted(set(left))}")
    return out


def launchd_log_dir(home: Path) -> Path:
    return home / "Library" / "Logs" / "wm"


def render_plist(spec: ServiceSpec, home: Path, template: str | None = None) -> bytes:
    """The agent's plist. The template is a plist itself: a string that is exactly a field
    expands to a list inside an array and disappears from a dict when it is empty."""
    data = plistlib.loads((template if template is not None
                           else template_text(PLIST_TEMPLATE)).encode())
    python_dir = str(Path(spec.program[0]).parent)
    search = [python_dir] + [d for d in ("/opt/homebrew/bin", "/usr/local/bin", "/usr/bin",
                                         "/bin", "/usr/sbin", "/sbin") if d != python_dir]
    values: dict[str, str | list[str]] = {
        "@PYTHON@": spec.program[0],
        "@CONFIG_ARGS@": spec.program[4:],
        "@WORKING_DIRECTORY@": str(spec.data_root),
        "@PATH@": ":".join(search),
        "@WM_HOME@": spec.environment.get("WM_HOME", ""),
        "@LOG_DIR@": str(launchd_log_dir(home)),
    }

    def fill(node):
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
                    out.append(fill(item))
            return out
        if isinstance(node, dict):
            filled = {k: fill(v) for k, v in node.items()}
            return {k: v for k, v in filled.items() if v != ""}
        return node

    out = plistlib.dumps(fill(data))
    left = _PLACEHOLDER.findall(out.decode())
    if left:
        raise ServiceError(f"plist template: unknown fields {sorted(set(left))}")
    return out


# -- side effects: files and commands, or their description under --dry-run -------------

class _Actions:
    def __init__(self, dry_run: bool):
        self.dry_run = dry_run

    def write(self, path: Path, content: bytes, mode: int = 0o644) -> None:
        if self.dry_run:
            print(f"# would write {path} (mode {mode:o}):")
            print(content.decode(), end="" if content.endswith(b"\n") else "\n")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_bytes(content)
        tmp.chmod(mode)
        os.replace(tmp, path)
        print(f"wrote {path}")

    def mkdir(self, path: Path) -> None:
        if path.is_dir():
            return
        if self.dry_run:
            print(f"# would create {path}/ (mode 700)")
            return
        path.mkdir(parents=True, mode=0o700, exist_ok=True)

    def remove(self, path: Path) -> None:
        if self.dry_run:
            print(f"# would remove {path}")
            return
        path.unlink(missing_ok=True)
        print(f"removed {path}")

    def run(self, cmd: list[str], hint: str = "", retries: int = 0) -> None:
        """A command that changes something: printed, run, and a failure is a WmError."""
        if self.dry_run:
            print(f"# would run: {shlex.join(cmd)}")
            return
        print(f"$ {shlex.join(cmd)}")
        for attempt in range(retries + 1):
            done = _call(cmd)
            if done.returncode == 0:
                return
            if attempt < retries:
                time.sleep(1.0)
        said = " ".join((done.stderr or done.stdout).split())
        reason = said or f"exit status {done.returncode}"
        raise ServiceError(f"`{shlex.join(cmd)}` failed: {reason}{hint}")


def _call(cmd: list[str], capture: bool = True) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        raise ServiceError(f"{cmd[0]}: command not found; `wm service` needs it to manage the "
                           "service (or start `wm run` yourself, e.g. from your session's autostart)")
    return subprocess.run(cmd, capture_output=capture, text=True, check=False)


def _query(cmd: list[str]) -> subprocess.CompletedProcess | None:
    """A read-only look (also under --dry-run); None when the tool is missing."""
    if shutil.which(cmd[0]) is None:
        return None
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _check_importable(python: str) -> None:
    """The service has neither this shell's PYTHONPATH nor its working directory: make sure
    the interpreter finds `wm` without them (it does when wm is pip-installed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([python, "-c", "import wm.cli"], cwd="/", env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise ServiceError(f"`{python} -m wm` would not start in the service "
                           f"({said[-1] if said else 'exit status ' + str(done.returncode)}): "
                           "install wm for that interpreter (`pip install .`) and try again")


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", str(os.getuid()))


def _unchanged(path: Path, content: bytes) -> bool:
    try:
        return path.read_bytes() == content
    except OSError:
        return False


def _keep_data_note(spec: ServiceSpec, extra: tuple[Path, ...] = ()) -> None:
    print(f"Your recordings, memory, models and logs are kept in {spec.data_root}.")
    if spec.config_file is not None:
        print(f"Your settings are kept in {spec.config_file}.")
    for p in extra:
        print(f"The service's console output is kept in {p}.")
    print("Delete those yourself if you want them gone.")


# -- Linux: systemd --user ---------------------------------------------------------------

def systemd_unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


_NO_MANAGER = (" (is a systemd user manager running for you? It starts when you log in; "
               "over ssh without a login session run `loginctl enable-linger` first)")


def _systemctl(*args: str) -> list[str]:
    return ["systemctl", "--user", *args]


def _linux_hints(user: str) -> None:
    linger = _query(["loginctl", "show-user", user, "--property=Linger", "--value"])
    if linger is None or linger.returncode != 0 or linger.stdout.strip() != "yes":
        print(f"Note: lingering is off for {user}: wm records only while you are logged in. "
              f"To record from boot without a login session: loginctl enable-linger {user}")
    groups = _query(["id", "-Gn", user])
    if groups is not None and groups.returncode == 0:
        missing = [g for g in ("video", "audio") if g not in groups.stdout.split()]
        if missing:
            print(f"Note: {user} is not in the {' and '.join(missing)} group"
                  f"{'s' if len(missing) > 1 else ''}. While you are logged in at this machine "
                  "the desktop grants the camera and sound devices to you; to record without a "
                  f"session: sudo usermod -aG {','.join(missing)} {user}, then log in again. "
                  "(A microphone reached through PipeWire or PulseAudio needs no audio group.)")


def _linux(action: str, spec: ServiceSpec, act: _Actions) -> int:
    unit = systemd_unit_path()
    user = _user_name()
    if action == "install":
        content = render_unit(spec).encode()
        existed = unit.exists()
        unchanged = _unchanged(unit, content)
        act.mkdir(spec.data_root)
        if unchanged:
            print(f"{unit} is already up to date")
        else:
            act.write(unit, content)
            act.run(_systemctl("daemon-reload"), _NO_MANAGER)
        act.run(_systemctl("enable", "--now", UNIT_NAME), _NO_MANAGER)
        if existed and not unchanged:
            act.run(_systemctl("restart", UNIT_NAME))  # the running one still has the old file
        if not act.dry_run:
            print("wm runs as a user service and starts with your session. "
                  "`wm service status` shows it, `wm logs -f` follows what it does.")
        _linux_hints(user)
        return 0
    if action == "uninstall":
        if not unit.exists():
            print(f"wm is not installed as a service (no {unit})")
        else:
            act.run(_systemctl("disable", "--now", UNIT_NAME), _NO_MANAGER)
            act.remove(unit)
            act.run(_systemctl("daemon-reload"), _NO_MANAGER)
        _keep_data_note(spec)
        return 0
    if action == "status":
        if not unit.exists():
            print(f"wm is not installed as a service (no {unit}); `wm service install` installs it")
            return 3
        print(f"unit: {unit}", flush=True)
        rc = _call(_systemctl("--no-pager", "status", UNIT_NAME), capture=False).returncode
        _linux_hints(user)
        return rc
    if not unit.exists():
        raise ServiceError(f"wm is not installed as a service (no {unit}): run `wm service install`")
    act.run(_systemctl(action, UNIT_NAME), _NO_MANAGER)
    return 0


# -- macOS: launchd ----------------------------------------------------------------------

def launchd_label() -> str:
    return plistlib.loads(template_text(PLIST_TEMPLATE).encode())["Label"]


def launchd_plist_path(home: Path | None = None) -> Path:
    return (home or Path.home()) / "Library" / "LaunchAgents" / f"{launchd_label()}.plist"


def _macos(action: str, spec: ServiceSpec, act: _Actions) -> int:
    home = Path.home()
    plist = launchd_plist_path(home)
    domain = f"gui/{os.getuid()}"
    target = f"{domain}/{launchd_label()}"
    shown = _query(["launchctl", "print", target])
    loaded = shown is not None and shown.returncode == 0
    bootstrap = ["launchctl", "bootstrap", domain, str(plist)]

    if action == "install":
        content = render_plist(spec, home)
        unchanged = _unchanged(plist, content)
        act.mkdir(spec.data_root)
        act.mkdir(launchd_log_dir(home))
        if unchanged:
            print(f"{plist} is already up to date")
        else:
            act.write(plist, content)
            if loaded:  # launchd keeps the old definition until the job is booted out
                act.run(["launchctl", "bootout", target])
                loaded = False
        if loaded:
            act.run(["launchctl", "kickstart", target])
        else:
            act.run(["launchctl", "enable", target])
            # bootout returns before launchd has quite let go of the label: retry briefly
            act.run(bootstrap, retries=3)
        if not act.dry_run:
            print("wm runs as a launchd agent and starts when you log in. "
                  "`wm service status` shows it, `wm logs -f` follows what it does.")
        print(f"Note: macOS asks once to allow camera and microphone access for "
              f"{os.path.realpath(spec.program[0])}: allow both (System Settings > Privacy & "
              "Security > Camera and Microphone list what was granted).")
        return 0
    if action == "uninstall":
        if loaded:
            act.run(["launchctl", "bootout", target])
        if plist.exists():
            act.remove(plist)
        else:
            print(f"wm is not installed as a service (no {plist})")
        _keep_data_note(spec, (launchd_log_dir(home),))
        return 0
    if action == "status":
        if not plist.exists():
            print(f"wm is not installed as a service (no {plist}); `wm service install` installs it")
            return 3
        print(f"agent: {plist}")
        if not loaded:
            print("not loaded (stopped): `wm service start` starts it")
            return 3
        facts: dict[str, str] = {}  # the job's own lines come first; nested sections repeat keys
        for ln in shown.stdout.splitlines():
            key, sep, value = ln.strip().partition(" = ")
            if sep and key in ("state", "pid", "runs", "last exit code"):
                facts.setdefault(key, value)
        print("\n".join(f"{k} = {v}" for k, v in facts.items()))
        return 0 if facts.get("state") == "running" else 3
    if not plist.exists():
        raise ServiceError(f"wm is not installed as a service (no {plist}): run `wm service install`")
    if action == "stop":
        # KeepAlive would bring a killed job back: unload it until start or the next login
        if loaded:
            act.run(["launchctl", "bootout", target])
        return 0
    if not loaded:
        act.run(bootstrap, retries=3)
    elif action == "restart":
        act.run(["launchctl", "kickstart", "-k", target])
    else:
        act.run(["launchctl", "kickstart", target])
    return 0


def run_service(settings, paths: Paths, action: str, dry_run: bool = False,
                config_path: str | os.PathLike | None = None,
                platform: str | None = None) -> int:
    """`wm service ACTION`: install, uninstall, status, start, stop or restart.
    `platform` stands in for sys.platform (tests render the macOS agent on Linux)."""
    platform = platform or sys.platform
    spec = service_spec(paths, config_path)
    if action == "install":
        _check_importable(spec.program[0])
    act = _Actions(dry_run)
    if platform == "darwin":
        return _macos(action, spec, act)
    if platform.startswith("linux"):
        return _linux(action, spec, act)
    raise ServiceError(f"`wm service` supports Linux (systemd) and macOS (launchd), not {platform}; "
                       "start `wm run` another way")
