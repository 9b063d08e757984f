"""`wm query` as the command line runs it: asked of the query service of `wm run` when one
answers on the socket in the data root (it keeps the encoders loaded: no torch import,
no model load), done in this process otherwise, with the same output either way.

No service, a stale socket file left by a crash, a service of another protocol or one
that fails mid-answer: the query is done here, as if there were none. Only a service
that is alive but has not answered within REPLY_SECONDS costs the wait before that."""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from wm.base import log
from wm.base.config import Settings
from wm.base.paths import Paths
from wm.memory.query_wire import Reply, WireError, emit, read_reply, receive, request_message
from wm.memory.request import QueryRequest

# A live service accepts at once (the kernel queues the connection); a stale socket file
# refuses at once. This only bounds a wedged one.
CONNECT_SECONDS = 1.0
# A service loads a new model version's encoders on first use (seconds on a busy CPU).
REPLY_SECONDS = 60.0
# sockaddr_un holds 104 bytes on macOS, 108 on Linux: a longer path is reached relatively.
MAX_SOCKET_PATH = 100

_log = log.get("wm.query")


def run_query_command(settings: Settings, paths: Paths, req: QueryRequest) -> int:
    reply = ask_service(paths, req, settings.memory.topk)
    if reply is None:
        from wm.memory.query import run_query   # the heavy part: only without a service

        return run_query(settings, paths, req)
    return emit(reply)


def ask_service(paths: Paths, req: QueryRequest, default_topk: int,
                reply_seconds: float = REPLY_SECONDS) -> Reply | None:
    """The service's reply, or None when no service answered (then do it in-process)."""
    path = paths.query_socket
    if not path.is_socket():
        return None
    try:
        message = request_message(req, default_topk, os.getcwd())
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_SECONDS)
            with unix_address(path) as address:
                sock.connect(address)
            sock.settimeout(reply_seconds)
            sock.sendall(message)
            sock.shutdown(socket.SHUT_WR)
            return read_reply(receive(sock))
    except (OSError, WireError) as e:   # refused (stale file), timed out, closed mid-answer
        _log.debug("query_service_unused", socket=str(path), reason=f"{type(e).__name__}: {e}")
        return None


@contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """The address to bind or connect to for `path`: the path itself, or for a path too
    long for sockaddr_un its name, from inside its folder (the caller is single-threaded
    while it binds or connects; the working folder is put back at once)."""
    if len(os.fsencode(str(path))) <= MAX_SOCKET_PATH:
        yield str(path)
        return
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        yield path.name
    finally:
        os.chdir(here)
