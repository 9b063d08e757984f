"""What `wm service` does to the machine: files written and removed, service-manager
commands run, or under --dry-run a description of each instead; and the read-only looks
and notes shared by the systemd and launchd sides."""
from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from wm.daemon.service_spec import ServiceError, ServiceSpec

FOLLOW_HINT = "`wm service status` shows it, `wm logs -f` follows what it does."


class Actions:
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
            done = call(cmd)
            if done.returncode == 0:
                return
            if attempt < retries:
                time.sleep(1.0)
        said = " ".join((done.stderr or done.stdout).split())
        reason = said or f"exit status {done.returncode}"
        raise ServiceError(f"`{shlex.join(cmd)}` failed: {reason}{hint}")


def call(cmd: list[str], capture: bool = True) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        raise ServiceError(f"{cmd[0]}: command not found; `wm service` needs it to manage the "
                           "service (or start `wm run` yourself, e.g. from your session's autostart)")
    return subprocess.run(cmd, capture_output=capture, text=True, check=False)


def query(cmd: list[str]) -> subprocess.CompletedProcess | None:
    """A read-only look (also under --dry-run); None when the tool is missing."""
    if shutil.which(cmd[0]) is None:
        return None
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", str(os.getuid()))


def unchanged(path: Path, content: bytes) -> bool:
    try:
        return path.read_bytes() == content
    except OSError:
        return False


def not_installed(path: Path) -> str:
    return f"wm is not installed as a service (no {path})"


def keep_data_note(spec: ServiceSpec, extra: tuple[Path, ...] = ()) -> None:
    print(f"Your recordings, memory, models and logs are kept in {spec.data_root}.")
    if spec.config_file is not None:
        print(f"Your settings are kept in {spec.config_file}.")
    for p in extra:
        print(f"The service's console output is kept in {p}.")
    print("Delete those yourself if you want them gone.")
