"""`wm status`: is it recording, what is queued, when it last slept and when it may sleep
next, in lines for a person or as JSON (the report itself is built in status_report).

Exit status: 0 running and recording, 1 running but not recording (paused, devices off,
no recent clip, not responding), 3 not running."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import datetime

from wm.base.config import Settings
from wm.base.paths import Paths
from wm.daemon.status_report import Report, build_report


def _age(seconds: float) -> str:
    s = int(round(seconds))
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%a %Y-%m-%d %H:%M")


def render(r: Report, now: float) -> str:
    lines = []
    if r.running:
        up = f", up {_age(now - r.since)}" if r.since else ""
        lines.append(f"wm run:      running (pid {r.pid}{up})")
    else:
        lines.append("wm run:      not running")
    if r.running and r.camera is not None:
        clip = (f"last clip {_age(r.last_clip_age)} ago" if r.last_clip_age is not None
                else "no clip yet")
        lines.append(f"recording:   {'yes' if r.recording else 'NO'} (camera {r.camera}, "
                     f"microphone {r.microphone}; {clip}; {r.clips_written} clips this run)")
    else:
        lines.append(f"recording:   {'yes' if r.recording else 'no'}")
    if r.problem and r.running:
        lines.append(f"problem:     {r.problem}")
    lines.append(f"paused:      {'yes' if r.paused else 'no'}")
    lines.append("queue:       " + (", ".join(f"{n} {state}" for state, n in r.queue.items())
                                    or "unknown (the database cannot be read)"))
    lines.append(f"disk:        data {_size(r.data_bytes)}, {_size(r.free_bytes)} free")
    if r.last_sleep is None:
        lines.append("last sleep:  never")
    else:
        ls = r.last_sleep
        took = f" ({_age(ls.seconds)})" if ls.seconds is not None else ""
        started = _when(ls.started) if ls.started else "?"
        lines.append(f"last sleep:  {started}{took}, {ls.result or 'unknown'}")
        stages = {k: v for k, v in ls.stages.items() if k != "evaluation"}
        if stages:
            lines.append("             " + "; ".join(f"{k}: {v}" for k, v in stages.items()))
        if "evaluation" in ls.stages:
            lines.append(f"verdict:     {ls.stages['evaluation']}")
    lines.append(f"models:      {r.models or 'unknown (the database cannot be read)'} in use")
    if r.sleeping_pid:
        since = f", for {_age(now - r.sleeping_since)}" if r.sleeping_since else ""
        lines.append(f"sleeping:    now (pid {r.sleeping_pid}{since})")
    lines.append(f"next window: {_when(r.next_window_opens)} - "
                 f"{datetime.fromisoformat(r.next_window_closes):%H:%M}")
    if r.scheduler:
        lines.append(f"scheduler:   {r.scheduler}")
    if r.retention:
        lines.append(f"retention:   {r.retention}")
    lines += fault_lines(r.faults, now)
    return "\n".join(lines)


def fault_lines(faults: dict[str, dict], now: float) -> list[str]:
    """One line per part of the daemon that failed since it started."""
    out = []
    for name, f in sorted(faults.items()):
        times = "once" if f["failures"] == 1 else f"{f['failures']} times"
        retry = (f", retrying in {_age(f['retry_at'] - now)}"
                 if f.get("retry_at") and f["retry_at"] > now else "")
        out.append(f"{'restarted:' if not out else '':<13}{name} failed {times}, last "
                   f"{_age(max(0.0, now - f['last_at']))} ago: {f['last_error']}{retry}")
    return out


def show_status(settings: Settings, paths: Paths, as_json: bool) -> int:
    now = time.time()
    r = build_report(settings, paths, now)
    if as_json:
        d = asdict(r)
        d["exit_code"] = r.exit_code
        print(json.dumps(d, indent=1))
    else:
        print(render(r, now))
    return r.exit_code


