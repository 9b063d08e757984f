"""The privacy switch. `wm pause` writes paths.pause_file; every recorder (`wm record`,
`wm run`) checks it twice a second and, while it holds, closes camera and microphone and
writes nothing. The file survives restarts; `--for` puts an end time in it. A file that
cannot be read (or is empty) counts as paused: failing closed is the safe side of a
privacy switch, and on a full disk `wm pause` still pauses through an empty file."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime

from wm.base import log
from wm.base.atomic import atomic_write_bytes
from wm.base.errors import WmError
from wm.base.paths import Paths


@dataclass(frozen=True)
class PauseState:
    since: float             # epoch seconds
    until: float | None      # epoch seconds, None = until `wm resume`


def read_state(paths: Paths) -> PauseState | None:
    """The pause in force (possibly expired), or None."""
    try:
        text = paths.pause_file.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return PauseState(since=0.0, until=None)
    try:
        d = json.loads(text)
        until = d.get("until")
        return PauseState(since=float(d["since"]), until=None if until is None else float(until))
    except (ValueError, KeyError, TypeError, AttributeError):
        return PauseState(since=0.0, until=None)


def is_paused(paths: Paths, now: float | None = None) -> bool:
    state = read_state(paths)
    if state is None:
        return False
    now = time.time() if now is None else now
    return state.until is None or now < state.until


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def pause(paths: Paths, for_seconds: float | None) -> int:
    """`wm pause [--for D]`: from now on nothing is recorded, until resumed or D is over.
    When the pause cannot be written with its end time (a full disk), an empty pause
    file is: it needs no data block, and recorders read it as paused until `wm resume`."""
    now = time.time()
    until = now + for_seconds if for_seconds else None
    data = {"since": now, "until": until}
    try:
        atomic_write_bytes(paths.pause_file, json.dumps(data).encode())
    except OSError as e:
        _pause_without_end(paths, e)
        log.get("wm.capture.pause").warning("pause_set_without_end", until=None, error=e.strerror)
        print(f"wm: recording paused until `wm resume` (could not save "
              f"{'the end time' if until else 'the pause'}: {e.strerror}; an empty pause file "
              "holds it)")
        return 0
    log.get("wm.capture.pause").info("pause_set", until=until)
    if until is None:
        print("wm: recording paused until `wm resume`")
    else:
        print(f"wm: recording paused until {_clock(until)}")
    return 0


def _pause_without_end(paths: Paths, cause: OSError) -> None:
    """Fail closed: an empty (or emptied) pause file, which reads as paused with no end.
    WmError when not even that can be made, so the user knows recording goes on."""
    try:
        paths.pause_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(paths.pause_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
    except OSError as e:
        raise WmError(f"cannot pause: {paths.pause_file}: {e.strerror} "
                      f"(writing it failed first with: {cause.strerror}); "
                      "recording goes on") from None


def resume(paths: Paths) -> int:
    """`wm resume`: recording goes on (within half a second in a running recorder)."""
    was = is_paused(paths)
    paths.pause_file.unlink(missing_ok=True)
    log.get("wm.capture.pause").info("pause_cleared", was_paused=was)
    print("wm: recording resumed" if was else "wm: recording was not paused")
    return 0
