"""Child processes of the daemon (`wm sleep`, `wm ingest`): started at the lowest CPU and
IO priority so the recorder never waits for them, told to stop with SIGINT, and on Linux
sent SIGINT by the kernel if the daemon dies, so none trains on unsupervised."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path



def low_priority_prefix() -> list[str]:
    """argv prefix that puts the child in the idle IO class where the platform has a tool
    for it (it execs the command, so the pid stays the child's own)."""
    if sys.platform.startswith("linux") and shutil.which("ionice"):
        return ["ionice", "-c3"]
    if sys.platform == "darwin" and shutil.which("taskpolicy"):
        return ["taskpolicy", "-b"]   # background: throttled CPU and IO
    return []


def _preexec() -> None:
    os.nice(19)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        # Tied to the forking thread (the daemon forks from long-lived ones). When the
        # whole daemon dies the child may get it more than once, once per thread it is
        # handed to on the way: `wm sleep` treats every SIGINT after the first as the same.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGINT), 0, 0, 0)


def spawn(argv: list[str], **kw) -> subprocess.Popen:
    """Start a low-priority child in its own session (a Ctrl-C at the terminal reaches the
    daemon, which decides when the child stops)."""
    return subprocess.Popen(low_priority_prefix() + argv, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_preexec, **kw)


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
