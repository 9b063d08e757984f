"""Human durations on the command line: 90s, 30m, 1h30m, 2d; a bare number is seconds."""
from __future__ import annotations

import math
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Longer than anything a recorder plans for, short enough for datetime arithmetic.
LONGEST = 10 * 366 * 86400
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in `text`, more than zero and at most ten years; ValueError naming the
    text otherwise (NaN and infinity included)."""
    t = text.strip().lower()
    try:
        value = float(t)
    except ValueError:
        parts = _PART.findall(t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ValueError(f"'{text}' is not a duration (e.g. 90s, 30m, 1h30m)") from None
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{text}' is not a duration: it must be more than zero")
    if value > LONGEST:
        raise ValueError(f"'{text}' is longer than ten years")
    return value
