"""The daemon's children (`wm sleep`, `wm ingest`, the query service) are real processes
here: started at the priority asked for, and told by the kernel when the daemon dies."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon_harness import wait_for

REPO = Path(__file__).resolve().parents[1]

# The child: says its nice value, then waits; a SIGINT or SIGTERM is written down.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    out = sys.argv[1]
    def got(sig, _):
        open(out, "a").write(f"signal {signal.Signals(sig).name}\\n")
        sys.exit(0)
    signal.signal(signal.SIGINT, got)
    signal.signal(signal.SIGTERM, got)
    open(out, "a").write(f"nice {os.nice(0)}\\n")
    time.sleep(60)
""")

# The daemon stand-in: spawns the child the way the daemon does, prints its pid, waits.
PARENT = textwrap.dedent("""
    import signal, sys, time
    from wm.daemon.children import spawn
    kind, out = sys.argv[1], sys.argv[2]
    if kind == "service":
        from wm.daemon.query_service import spawn_service
        p = spawn_service([sys.executable, "-c", {child!r}, out])
    else:
        p = spawn([sys.executable, "-c", {child!r}, out])
    print(p.pid, flush=True)
    time.sleep(60)
""").format(child=CHILD)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("kind,nice,sig", [("batch", 19, "SIGINT"), ("service", 10, "SIGTERM")])
def test_a_child_runs_at_its_priority_and_hears_when_the_daemon_is_killed(tmp_path, kind, nice, sig):
    out = tmp_path / "child.txt"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, kind, str(out)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        wait_for(lambda: out.exists() and "nice" in out.read_text(), 20, "the child to start")
        assert f"nice {nice}\n" in out.read_text()
        parent.kill()                      # kill -9: the daemon has no chance to stop it
        parent.wait(10)
        wait_for(lambda: f"signal {sig}" in out.read_text(), 10, f"the child's {sig}")
        wait_for(lambda: not Path(f"/proc/{child}").exists()
                 or "State:\tZ" in Path(f"/proc/{child}/status").read_text(), 10,
                 "the child to exit")
    finally:
        parent.kill()
        parent.wait(10)


def test_no_python_runs_between_fork_and_exec(tmp_path, monkeypatch):
    """A preexec_fn runs Python in the forked copy of a many-threaded daemon: a garbage
    collection there once freed a PyAV converter whose threads were not forked, and the
    daemon's loop hung for good. The children are started without one."""
    seen = {}
    real = subprocess.Popen

    def record(argv, **kw):
        seen.update(kw)
        return real(argv, **kw)

    from wm.daemon import children, query_service
    monkeypatch.setattr(children.subprocess, "Popen", record)
    for p in (children.spawn([sys.executable, "-c", "pass"]),
              query_service.spawn_service([sys.executable, "-c", "pass"])):
        assert p.wait(10) == 0
    assert seen.get("preexec_fn") is None and seen["start_new_session"] is True
