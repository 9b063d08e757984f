"""The query service: `python -m wm.daemon.query_server [--config FILE]`, a child of `wm run`
(wm.daemon.query_service starts, restarts and stops it) that keeps the encoders loaded and
answers `wm query` on the Unix socket paths.query_socket, so a query costs an embedding and
a search instead of a torch import and a model load.

A process of its own, not a thread of the recorder's: a query's torch and NumPy work never
holds the recorder's GIL, its memory (torch, the models, mapped shards) is not the
recorder's, and a crash here loses no clip. It runs below the recorder's priority
(wm.daemon.query_service) on one thread, so a query never takes both cores.

One query at a time, in arrival order (one person asks). The socket is 0600 in the 0700
data root; on Linux a peer of another uid is refused as well (SO_PEERCRED). Each model
version's encoders are loaded once and kept (a version's models never change, so a newly
promoted version is a name not seen yet); the version in use is loaded ahead of the first
query, at start and whenever a newer one is promoted (one SQLite look a minute)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from wm.base import config, log
from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import PRIVATE_UMASK, Paths
from wm.base.signals import STOP_SIGNALS, StopFlag
from wm.learn.versions import usable_promoted
from wm.memory.query import compose
from wm.memory.query_client import unix_address
from wm.memory.query_vectors import default_encoders
from wm.memory.query_wire import Asked, Reply, WireError, read_request, receive, reply_message

ACCEPT_SECONDS = 0.5     # how often the loop looks at its stop flag
READ_SECONDS = 5.0       # a client has this long to send its request
WARM_SECONDS = 60.0      # how often an idle service looks for a newly promoted version
CACHED_VERSIONS = 2      # the version in use and the one before it (both hold clips for a while)
BACKLOG = 8

_log = log.get("wm.daemon.query")


class EncoderCache:
    """`load_encoders(settings, paths, version=)` for wm.memory.answer, keeping the last
    CACHED_VERSIONS versions' encoders loaded."""

    def __init__(self, load=default_encoders, keep: int = CACHED_VERSIONS):
        self.load, self.keep = load, keep
        self.loaded: OrderedDict[str, object] = OrderedDict()

    def __call__(self, settings: Settings, paths: Paths, version: str):
        if version in self.loaded:
            self.loaded.move_to_end(version)
            return self.loaded[version]
        t = time.perf_counter()
        enc = self.load(settings, paths, version=version)
        self.loaded[version] = enc
        while len(self.loaded) > self.keep:
            self.loaded.popitem(last=False)
        _log.info("query_encoders_loaded", version=version,
                  seconds=round(time.perf_counter() - t, 2))
        return enc

    def warm(self, settings: Settings, paths: Paths) -> None:
        """Load the version in use if it is not loaded yet (a file that fails is logged by
        the loader; the query that needs it reports it)."""
        if not paths.memory_db.exists():
            return
        promoted = usable_promoted(paths)
        if promoted and promoted[0].version not in self.loaded:
            try:
                self(settings, paths, promoted[0].version)
            except WmError as e:
                _log.warning("query_encoders_unloadable", version=promoted[0].version,
                             error=str(e))


def peer_uid(conn: socket.socket) -> int | None:
    """The connecting process's uid where the platform tells it cheaply (Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option,
                                                          struct.calcsize("3i")))
    return uid


class QueryServer:
    def __init__(self, settings: Settings, paths: Paths, encoders: EncoderCache | None = None):
        self.settings, self.paths = settings, paths
        self.encoders = encoders or EncoderCache()
        self.sock: socket.socket | None = None
        self._inode: int | None = None
        self.answered = 0

    def bind(self) -> None:
        """Listen on the socket path: a file left there by a service that died is replaced;
        WmError when a live service already answers on it."""
        path = self.paths.query_socket
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.is_socket() and _answers(path):
            raise WmError(f"{path}: another query service answers there")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with unix_address(path) as address:
                sock.bind(address)
            os.chmod(path, 0o600)
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
        sock.settimeout(ACCEPT_SECONDS)
        self.sock, self._inode = sock, path.stat().st_ino
        _log.info("query_service_listening", socket=str(path), pid=os.getpid())

    def serve(self, stop: threading.Event) -> None:
        next_warm = time.monotonic() + WARM_SECONDS
        while not stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                if time.monotonic() >= next_warm:
                    self.encoders.warm(self.settings, self.paths)
                    next_warm = time.monotonic() + WARM_SECONDS
                continue
            with conn:
                self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        uid = peer_uid(conn)
        if uid is not None and uid != os.getuid():
            _log.warning("query_refused", reason=f"peer uid {uid} is not {os.getuid()}")
            return
        conn.settimeout(READ_SECONDS)
        try:
            data = receive(conn)
            if not data:        # a look whether anyone listens (the client's is a connect)
                return
            asked = read_request(data)
        except (OSError, WireError) as e:
            _log.warning("query_unreadable", error=f"{type(e).__name__}: {e}")
            return
        reply = self.answer(asked)
        if reply is None:       # closed unanswered: the client does the query itself
            return
        try:
            conn.sendall(reply_message(reply))
        except OSError as e:    # the client gave up (Ctrl-C): nothing to tell anyone
            _log.info("query_reply_unsent", error=f"{type(e).__name__}: {e}")
        self.answered += 1

    def answer(self, asked: Asked) -> Reply | None:
        """The reply to one request; None when the service itself failed."""
        req = asked.request
        if req.topk is None:
            req = dataclasses.replace(req, topk=asked.default_topk)
        t, here = time.perf_counter(), os.getcwd()
        try:
            # File names as the user typed them, and messages naming them likewise: the
            # service answers one query at a time, so its working folder is the asker's
            # meanwhile.
            os.chdir(asked.cwd)
            reply = compose(self.settings, self.paths, req, self.encoders)
        except Exception as e:
            _log.error("query_failed", error=repr(e), exc_info=True)
            return None
        finally:
            os.chdir(here)
        reply.exception = None
        _log.debug("query_answered", rc=reply.rc, seconds=round(time.perf_counter() - t, 3))
        return reply

    def close(self) -> None:
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        path = self.paths.query_socket
        with contextlib.suppress(OSError):
            if path.stat().st_ino == self._inode:   # not a successor's socket
                path.unlink()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            with unix_address(path) as address:
                probe.connect(address)
            return True
        except OSError:
            return False


def main(argv: list[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)
    # One core for a query: the other stays the recorder's (read by torch and faiss when
    # they load, so set before either is imported).
    os.environ["OMP_NUM_THREADS"] = "1"
    parser = argparse.ArgumentParser(prog="wm.daemon.query_server")
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    stop = StopFlag()
    for sig in STOP_SIGNALS:      # the service's own process: its handlers for good
        signal.signal(sig, stop.set)
    try:
        settings = config.load(args.config)
        paths = Paths.from_settings(settings)
        lg = settings.logging
        log.setup(paths.log_file, lg.level, lg.max_bytes, lg.backups, console=False)
        server = QueryServer(settings, paths)
        server.bind()
    except (WmError, OSError) as e:
        print(f"wm: query service: {e}", file=sys.stderr)
        return 2
    try:
        server.encoders.warm(settings, paths)
        server.serve(stop.event)
    except Exception as e:   # the supervisor restarts the service; the traceback goes to the log
        log.get(log.CRASH_LOGGER).error("query_service_failed", error=repr(e), exc_info=True)
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
