"""The daemon's recorder, kept recording: one that stops by itself (its segmenter raised)
is counted as a failure in `wm status` and, after the back-off, replaced by a new one;
a reload that changes the capture settings swaps it for one with the new devices, or
keeps the old ones when the new cannot open."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.daemon.faults import Faults

RECORDER = "recorder"


def recorder_ended(rec) -> BaseException | None:
    """Why a recorder that should be recording has stopped by itself, or None while it
    records. A live camera and microphone never end on their own; a file played as the
    camera (tests) ends at its end, which is not a failure unless the recorder says so
    (its `failure`, where it keeps one)."""
    if not rec.wait(0):
        return None
    failure = getattr(rec, "failure", None)
    if failure is not None:
        return failure
    sources = getattr(rec, "sources", None)
    if sources is not None and getattr(sources, "file", None) is not None:
        return None
    return RuntimeError("the recorder stopped by itself (see segmenter_failed in the log)")


class RecorderGuard:
    def __init__(self, factory: Callable[[Settings, Paths], object], paths: Paths,
                 faults: Faults, logger):
        self.factory = factory
        self.paths = paths
        self.faults = faults
        self.log = logger
        self.recorder = None
        self._down = False
        self.clips_before = 0        # written by the recorders this one replaced

    def start(self, settings: Settings) -> None:
        self.recorder = self.factory(settings, self.paths)
        self.recorder.start()

    def watch(self, settings: Settings) -> None:
        """Call often. Raises when a replacement fails to start (the caller counts it)."""
        if self.recorder is None:
            return
        failure = recorder_ended(self.recorder)
        if failure is None:
            return
        if not self._down:            # noticed now: counted, replaced after the back-off
            self._down = True
            self.faults.failed(RECORDER, failure)
            return
        if self.faults.waiting(RECORDER):
            return
        self._replace(settings, timeout=1.0)
        self._down = False
        self.log.info("part_restarted", part=RECORDER)

    def swap(self, old: Settings, new: Settings) -> Settings:
        """New capture settings (SIGHUP); returns the settings now in use."""
        try:
            self._replace(new)
            return new
        except WmError as e:
            self.log.error("reload_capture_failed", error=str(e), kept="the previous devices")
            kept = replace(new, capture=old.capture)
            self._replace(kept)
            return kept

    def _replace(self, settings: Settings, timeout: float = 10.0) -> None:
        """Stop the recorder (its devices are free then) and start a new one; when that
        fails the old one stays in place, stopped, and is replaced at the next try."""
        old = self.recorder
        old.stop(timeout=timeout)
        fresh = self.factory(settings, self.paths)
        fresh.start()
        self.clips_before += old.health().clips_written
        self.recorder = fresh

    def health(self):
        """The recorder's health, its clip count running on across replacements."""
        if self.recorder is None:
            return None
        h = self.recorder.health()
        return replace(h, clips_written=h.clips_written + self.clips_before)

    def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
