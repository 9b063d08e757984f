"""Shared fixtures: an isolated data root and config dir per test, and two ways to run the
command line (in-process for speed, as a subprocess where exit codes and stderr must be
exactly what a user sees)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from wm.base import config
from wm.base.paths import Paths

REPO = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Paths:
    """WM_HOME in a temp dir, and no user config can leak in (XDG_CONFIG_HOME points to an
    empty temp dir, WM_CONFIG is unset)."""
    root = tmp_path / "wm-home"
    monkeypatch.setenv("WM_HOME", str(root))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("WM_CONFIG", raising=False)
    return Paths(root)


@pytest.fixture
def settings(home) -> config.Settings:
    """The shipped defaults (nothing from the user's machine)."""
    return config.load()


@pytest.fixture
def run_cli(home, capsys):
    """Run `wm ARGS...` in this process; returns CliResult(code, out, err)."""
    from wm import cli

    def run(*argv) -> CliResult:
        code = cli.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    yield run
    _close_log_handlers()


@pytest.fixture
def run_wm(home):
    """Run `python -m wm ARGS...` as a child process with this test's environment."""

    def run(*argv, env: dict | None = None, timeout: float = 120) -> CliResult:
        full = dict(os.environ, **(env or {}))
        p = subprocess.run([sys.executable, "-m", "wm", *map(str, argv)], cwd=REPO, env=full,
                           capture_output=True, text=True, timeout=timeout)
        return CliResult(p.returncode, p.stdout, p.stderr)

    return run


def _close_log_handlers() -> None:
    # cli.main attaches handlers writing into this test's temp dir and capture streams
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
