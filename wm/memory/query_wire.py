"""What `wm query` and the query service of `wm run` say to each other over the Unix
socket in the data root, and how a reply is shown.

One request per connection: the client sends one JSON object and shuts its side down,
the service answers with one JSON object and closes. The reply carries exactly what
`wm query` would have printed itself (stdout text, a note for stderr, the error and its
exit status, the clip to open), so the output is the same whichever process did the
work. Nothing heavy is imported here: the client's start-up is part of every answer."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from wm.base.errors import WmError
from wm.memory.request import QueryRequest

# Raised when either side changes what a message holds; a mismatch is answered in-process.
PROTOCOL = 1
MAX_MESSAGE = 1 << 20        # a request is a few hundred bytes, a --json reply some kB
_PATHS = ("image", "audio", "show")


class WireError(Exception):
    """A message that is not one of ours (too large, not JSON, another protocol)."""


class ServiceError(WmError):
    """The service's answer to a bad query: shown exactly as the in-process error."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Reply:
    rc: int = 0
    out: str = ""                   # what goes to stdout
    note: str = ""                  # a line for stderr that is not an error
    open: str | None = None         # the clip video to open in the player (--open)
    error: str | None = None        # the WmError's message, printed by the command line
    exception: WmError | None = None  # in-process only: re-raised (tracebacks under --debug)


@dataclass(frozen=True)
class Asked:
    """A request as the service reads it: the query, the client's default --topk (its
    settings file may say another than the service's) and the folder the client ran in
    (relative file names and the messages naming them read as the user typed them)."""
    request: QueryRequest
    default_topk: int
    cwd: str


def request_message(req: QueryRequest, default_topk: int, cwd: str) -> bytes:
    body = {f.name: getattr(req, f.name) for f in fields(QueryRequest)}
    for key in _PATHS:
        if body[key] is not None:
            body[key] = str(body[key])
    return json.dumps({"protocol": PROTOCOL, "request": body, "default_topk": default_topk,
                       "cwd": cwd}).encode()


def read_request(data: bytes) -> Asked:
    msg = _load(data)
    try:
        body = dict(msg["request"])
        for key in _PATHS:
            if body.get(key) is not None:
                body[key] = Path(body[key])
        return Asked(QueryRequest(**body), int(msg["default_topk"]), str(msg["cwd"]))
    except (KeyError, TypeError, ValueError) as e:
        raise WireError(f"not a query request ({e})") from None


def reply_message(reply: Reply) -> bytes:
    return json.dumps({"protocol": PROTOCOL, "rc": reply.rc, "out": reply.out,
                       "note": reply.note, "open": reply.open, "error": reply.error}).encode()


def read_reply(data: bytes) -> Reply:
    msg = _load(data)
    try:
        return Reply(rc=int(msg["rc"]), out=str(msg["out"]), note=str(msg["note"]),
                     open=msg["open"], error=msg["error"])
    except (KeyError, TypeError, ValueError) as e:
        raise WireError(f"not a query reply ({e})") from None


def _load(data: bytes) -> dict:
    try:
        msg = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"not JSON ({e})") from None
    if not isinstance(msg, dict) or msg.get("protocol") != PROTOCOL:
        raise WireError(f"protocol {msg.get('protocol') if isinstance(msg, dict) else '?'},"
                        f" expected {PROTOCOL}")
    return msg


def receive(sock: socket.socket) -> bytes:
    """Everything the peer sends until it shuts down its side; WireError past MAX_MESSAGE.
    socket.timeout when the peer says nothing for the socket's timeout."""
    chunks, size = [], 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_MESSAGE:
            raise WireError(f"message larger than {MAX_MESSAGE} bytes")
        chunks.append(chunk)


def emit(reply: Reply) -> int:
    """Show a reply as `wm query` does: results on stdout, a note on stderr, the best clip
    opened; an error is raised for the command line to print (one line, its exit status)."""
    if reply.out:
        sys.stdout.write(reply.out)
        sys.stdout.flush()
    if reply.note:
        print(reply.note, file=sys.stderr)
    if reply.exception is not None:
        raise reply.exception
    if reply.error is not None:
        raise ServiceError(reply.error, reply.rc)
    if reply.open is not None:
        open_in_player(Path(reply.open))
    return reply.rc


def open_in_player(path: Path) -> None:
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    exe = shutil.which(opener)
    if exe is None:
        raise WmError(f"cannot open {path}: '{opener}' was not found")
    subprocess.Popen([exe, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
