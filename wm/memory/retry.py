"""What to do with a clip whose files could not be read now: the choices, as pure
functions the commit applies and tests call directly."""
from __future__ import annotations

RETRY, PARTIAL, GIVE_UP = "retry", "partial", "give up"
FIRST_DELAY_S = 3600.0      # an hour: a busy drive or a short outage has passed by then
MAX_DELAY_S = 86400.0       # at least once a day


def after_failure(attempts_before: int, max_attempts: int, partly_read: bool) -> str:
    """RETRY at a later cycle while attempts remain; on the last one, keep what could be
    read (PARTIAL) rather than nothing, or GIVE_UP when nothing could (the clip is set
    aside, its files untouched)."""
    if attempts_before + 1 < max_attempts:
        return RETRY
    return PARTIAL if partly_read else GIVE_UP


def retry_delay(attempts: int) -> float:
    """Seconds before attempt `attempts` + 1, doubling from an hour up to a day, so that
    tries spread over more than one night."""
    return min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** max(0, attempts - 1))
