"""Clip ids and dates. An id is the clip's start in UTC (wall-clock names repeat once a
year at the end of daylight saving; UTC does not), so ids sort by time. The date a clip
is filed under is the local calendar day of its start."""
from __future__ import annotations

import os
from datetime import date, datetime, timezone, tzinfo
from zoneinfo import ZoneInfo

ID_FORMAT = "%Y%m%dT%H%M%SZ"


def clip_id(start: datetime, suffix: int = 0) -> str:
    """`20250115T143012Z`; a second clip starting in the same second gets `-1`, `-2`..."""
    base = start.astimezone(timezone.utc).strftime(ID_FORMAT)
    return base if suffix == 0 else f"{base}-{suffix}"


def parse_clip_id(cid: str) -> datetime:
    """The UTC start second an id names; ValueError if it is not an id."""
    return datetime.strptime(cid.split("-", 1)[0], ID_FORMAT).replace(tzinfo=timezone.utc)


def local_date(start: datetime) -> str:
    """The local calendar day (YYYY-MM-DD) a clip starting at `start` is filed under."""
    return start.astimezone().date().isoformat()


def parse_date(text: str) -> str:
    """Validate a YYYY-MM-DD date; ValueError with a readable reason otherwise."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"'{text}' is not a date (YYYY-MM-DD)") from None


def local_tz() -> tzinfo:
    """The system's time zone with its daylight-saving rules (datetime's own local zone
    is a fixed offset, wrong across a change)."""
    key = os.environ.get("TZ", "").lstrip(":")
    try:
        if key.startswith("/"):
            with open(key, "rb") as f:
                return ZoneInfo.from_file(f)
        if key:
            return ZoneInfo(key)
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f)
    except (OSError, ValueError):
        return datetime.now().astimezone().tzinfo or timezone.utc



def on_date(instant: datetime, day: str, tz: tzinfo | None = None) -> datetime:
    """`instant` moved to local day `day`, keeping its local time of day (the UTC instant
    of that wall-clock time; in a daylight-saving gap, the time as the earlier offset
    reads it). What `wm ingest --date` does to a recording's start."""
    tz = local_tz() if tz is None else tz
    local = instant.astimezone(tz)
    moved = datetime.combine(date.fromisoformat(day), local.time().replace(tzinfo=None),
                             tzinfo=tz)
    return moved.astimezone(timezone.utc)
