"""What the last sleep cycle did: state/last_sleep.json, written by the nightly cycle when
it ends (however it ends) and read by `wm status` and by the next cycle."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from wm.base.atomic import atomic_write_bytes
from wm.base.clipids import local_tz

COMPLETED, INTERRUPTED, FAILED, NOTHING = "completed", "interrupted", "failed", "nothing_to_do"


@dataclass(frozen=True)
class LastSleep:
    started: str | None           # ISO times
    finished: str | None
    seconds: float | None
    result: str | None            # completed | interrupted | failed | nothing_to_do
    stages: dict[str, str] = field(default_factory=dict)   # stage name -> what happened
    date: str | None = None       # the day trained on
    version: str | None = None    # the model version the night recorded, if any

    def write(self, path: Path) -> None:
        atomic_write_bytes(path, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def read(cls, path: Path) -> "LastSleep | None":
        """The record, or None when there is none or it cannot be read."""
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(d, dict):
            return None
        stages = d.get("stages") or {}
        seconds = d.get("seconds")
        return cls(started=_iso(d.get("started")), finished=_iso(d.get("finished")),
                   seconds=seconds if isinstance(seconds, (int, float)) else None,
                   result=d.get("result"),
                   stages={str(k): str(v) for k, v in stages.items()} if isinstance(stages, dict) else {},
                   date=d.get("date"), version=d.get("version"))

    @property
    def started_epoch(self) -> float | None:
        try:
            return datetime.fromisoformat(self.started).timestamp() if self.started else None
        except ValueError:
            return None


def _iso(value) -> str | None:
    """Times as local ISO text (an older record may hold epoch seconds)."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).astimezone(local_tz()).isoformat(timespec="seconds")
    return str(value) if value else None
