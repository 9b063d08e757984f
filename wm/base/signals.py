"""Turning SIGINT/SIGTERM (and SIGHUP where asked) into a flag a loop polls, for the
commands that must stop cleanly between two steps instead of dying mid-write."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Callable: True once a stop signal has arrived."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self) -> bool:
        return self.event.is_set()

    def set(self, *_args) -> None:
        self.event.set()   # only this: logging from a signal handler can deadlock


@contextlib.contextmanager
def handling(handlers: dict[signal.Signals, Callable]) -> Iterator[None]:
    """Install `handlers` for the duration of the block, then put the previous ones back."""
    previous = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def stop_on_signals(stop: StopFlag) -> contextlib.AbstractContextManager[None]:
    """SIGINT and SIGTERM set `stop` inside the block."""
    return handling({s: stop.set for s in STOP_SIGNALS})
