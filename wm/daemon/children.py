"""Child processes of the daemon (`wm sleep`, `wm ingest`): started at the lowest CPU and
IO priority so the recorder never waits for them, told to stop with SIGINT, and on Linux
sent SIGINT by the kernel if the daemon dies, so none trains on unsupervised (through
util-linux's `setpriv`; without it, the service manager's stop still ends them, as the
unit kills its whole control group)."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path


def detached_prefix(nice: int, death_signal: signal.Signals, idle_io: bool) -> list[str]:
    """argv prefix that sets the child's priority and, on Linux, the signal the kernel
    sends it when the daemon dies, with the platform's tools. Each tool execs the next,
    so the pid stays the child's own.

    Not a preexec_fn: Python code run between fork and exec deadlocked when a garbage
    collection there freed a PyAV frame converter whose worker threads were not forked
    (PyAV 18.1.1 hung the daemon's loop for good)."""
    prefix = ["nice", "-n", str(nice)] if shutil.which("nice") else []
    if idle_io and sys.platform.startswith("linux") and shutil.which("ionice"):
        prefix += ["ionice", "-c3"]
    elif idle_io and sys.platform == "darwin" and shutil.which("taskpolicy"):
        prefix += ["taskpolicy", "-b"]   # background: throttled CPU and IO
    if sys.platform.startswith("linux") and shutil.which("setpriv"):
        # Tied to the forking thread (the daemon forks from long-lived ones). When the
        # whole daemon dies the child may get it more than once, once per thread it is
        # handed to on the way: `wm sleep` treats every SIGINT after the first as the same.
        prefix += ["setpriv", f"--pdeathsig={death_signal.name}"]
    return prefix


def spawn(argv: list[str], nice: int = 19, death_signal: signal.Signals = signal.SIGINT,
          idle_io: bool = True, **kw) -> subprocess.Popen:
    """Start a child in its own session (a Ctrl-C at the terminal reaches the daemon,
    which decides when the child stops), by default at the lowest CPU and IO priority so
    the recorder never waits for it."""
    return subprocess.Popen(detached_prefix(nice, death_signal, idle_io) + argv,
                            stdin=subprocess.DEVNULL, start_new_session=True, **kw)


def stop_child(p: subprocess.Popen, sig: int, grace: float) -> bool:
    """Send `sig`, wait up to `grace` seconds, then kill. True when it stopped by itself."""
    try:
        p.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        p.wait(grace)
        return True
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return False



def same_command(pid: int, argv: list[str]) -> bool:
    """Is `pid` still running exactly `argv` (guards against a reused pid)?"""
    try:
        if Path("/proc/self").exists():
            raw = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            return raw.split("\0")[:-1] == argv
        out = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True,
                             text=True, timeout=5).stdout
        return out.split() == " ".join(argv).split()
    except (OSError, subprocess.TimeoutExpired):
        return False
