"""Progress for long work: a bar on a terminal, a log line every few seconds otherwise."""
from __future__ import annotations

import sys
import time

from wm.base import log


class Progress:
    def __init__(self, total: float, desc: str, unit: str = "", every_seconds: float = 10.0,
                 stream=None):
        self.total = max(float(total), 1e-9)
        self.desc = desc
        self.unit = unit
        self.done = 0.0
        self.postfix = ""
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every_seconds
        self.start = self.last = time.monotonic()
        self.log = log.get("wm.base.progress")

    def update(self, n: float = 1, postfix: str = "") -> None:
        self.done += n
        if postfix:
            self.postfix = postfix
        now = time.monotonic()
        if self.tty and now - self.last >= 0.1:
            self._draw(now)
            self.last = now
        elif not self.tty and now - self.last >= self.every:
            self.log.info("progress", task=self.desc, done=round(self.done, 2),
                          total=round(self.total, 2), rate=round(self._rate(now), 2),
                          unit=self.unit, note=self.postfix or None)
            self.last = now

    def _rate(self, now: float) -> float:
        return self.done / max(now - self.start, 1e-9)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        width = 28
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        line = (f"\r{self.desc} [{bar}] {frac:6.1%} {self._rate(now):.1f} {self.unit}/s"
                f" {self.postfix}")
        self.stream.write(line[:200].ljust(80))
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
