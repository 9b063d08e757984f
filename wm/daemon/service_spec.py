"""What the per-user service runs (interpreter, arguments, working directory, extra
environment), and the templates its unit or agent is written from.

The templates ship inside the package (wm/daemon/templates/), so an installed wheel can
write them. The service runs this very interpreter with `-m wm`, by absolute path and not
through a shell or PATH, so a virtual environment works without being activated; its
symlink is kept as is, since resolving it would leave the environment.

`python -m` puts its working directory first on the import path: a `wm/` folder or a
`structlog.py` there would run instead of the real modules. So the service runs in `/`
(which a user cannot write to), never in the data root, and with PYTHONSAFEPATH=1 set
in the templates (Python 3.11 and later then leave the working directory out)."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

from wm.base import config
from wm.base.errors import WmError
from wm.base.paths import Paths

# Carried into the service because the data root and config location depend on them, and
# a service manager does not start with the login shell's environment.
CARRIED_ENV = ("WM_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")
# Where the service runs: nothing in it can shadow a module (see above).
SERVICE_CWD = Path("/")


class ServiceError(WmError):
    pass


def template_text(name: str) -> str:
    return resources.files("wm.daemon").joinpath("templates", name).read_text(encoding="utf-8")


def check_filled(text: str, template: str) -> None:
    """A field left in the output is one the template has and the renderer does not."""
    left = _PLACEHOLDER.findall(text)
    if left:
        raise ServiceError(f"{template} template: unknown fields {sorted(set(left))}")


@dataclass(frozen=True)
class ServiceSpec:
    program: list[str]            # absolute interpreter, then its arguments
    data_root: Path               # where uninstall says the data is
    environment: dict[str, str]   # variables the service needs beyond the manager's own
    config_file: Path | None      # the settings file the service reads, if any
    working_directory: Path = SERVICE_CWD


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
