"""`wm service`: install and control `wm run` as a per-user service, a systemd user unit
on Linux (service_systemd) and a launchd agent on macOS (service_launchd)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from wm.base.paths import Paths
from wm.daemon.service_actions import Actions, not_installed
from wm.daemon.service_launchd import LaunchdAgent
from wm.daemon.service_spec import ServiceError, ServiceSpec, service_spec
from wm.daemon.service_systemd import SystemdUnit


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


def _manage(side: SystemdUnit | LaunchdAgent, action: str, spec: ServiceSpec,
            act: Actions) -> int:
    if action == "install":
        return side.install(spec, act)
    if action == "uninstall":
        return side.uninstall(spec, act)
    if not side.path.exists():
        if action == "status":
            print(f"{not_installed(side.path)}; `wm service install` installs it")
            return 3
        raise ServiceError(f"{not_installed(side.path)}: run `wm service install`")
    if action == "status":
        return side.status()
    return side.control(action, act)


def run_service(settings, paths: Paths, action: str, dry_run: bool = False,
                config_path: str | os.PathLike | None = None,
                platform: str | None = None) -> int:
    """`wm service ACTION`: install, uninstall, status, start, stop or restart.
    `platform` stands in for sys.platform (tests render the macOS agent on Linux)."""
    platform = platform or sys.platform
    spec = service_spec(paths, config_path)
    if action == "install":
        _check_importable(spec.program[0])
    act = Actions(dry_run)
    if platform == "darwin":
        return _manage(LaunchdAgent.look(Path.home()), action, spec, act)
    if platform.startswith("linux"):
        return _manage(SystemdUnit(), action, spec, act)
    raise ServiceError(f"`wm service` supports Linux (systemd) and macOS (launchd), not {platform}; "
                       "start `wm run` another way")
