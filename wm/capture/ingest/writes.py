"""Clips on their way to disk: handed to the writer threads in order, at most IN_FLIGHT
at once, and on a failure removed whole (a clip exists whole or not at all)."""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from wm.base.atomic import partials_of
from wm.base.paths import Paths
from wm.capture.diskfloor import check_room
from wm.capture.writer import ClipMedia, write_clip

IN_FLIGHT = 3              # clips built but not yet written (bounds memory)


class Writes:
    """The clips of one file handed to the writer pool and not yet known to be written."""

    def __init__(self, pool: ThreadPoolExecutor, paths: Paths, cap, min_free_gb: float,
                 reserved: set, logger):
        self.pool, self.paths, self.cap, self.min_free_gb = pool, paths, cap, min_free_gb
        self.reserved, self.log = reserved, logger
        self.inflight: deque[tuple[ClipMedia, Future]] = deque()
        self.clips = 0          # written so far
        self.seconds = 0.0      # of source content in them

    def submit(self, clip: ClipMedia) -> None:
        """Hand the clip to a writer; DiskLow, writing nothing more, when the disk is under
        retention.min_free_gb (the caller abandons: clips begun are finished or removed)."""
        while len(self.inflight) >= IN_FLIGHT:
            self._settle()
        check_room(self.paths.root, self.min_free_gb, "wm ingest stopped")
        fut = self.pool.submit(write_clip, self.paths, clip, clip_seconds=self.cap.clip_seconds,
                               sample_rate=self.cap.sample_rate, video_fps=self.cap.video_fps,
                               jpeg_quality=self.cap.jpeg_quality,
                               preset=self.cap.ingest_preset)
        self.inflight.append((clip, fut))

    def drain(self) -> None:
        while self.inflight:
            self._settle()

    def _settle(self) -> None:
        clip, fut = self.inflight[0]
        manifest = fut.result()   # a writer error surfaces here (and abandon cleans up)
        self.inflight.popleft()
        self.clips += 1
        self.seconds += manifest.duration
        self.log.debug("clip_written", clip=clip.cid, date=clip.date, flags=manifest.flags)

    def abandon(self) -> None:
        """After a failure: let the writer finish what it started (counting the clips it
        finished whole), then remove every file of a clip that has no manifest."""
        for clip, fut in self.inflight:
            fut.cancel()
        for clip, fut in self.inflight:
            if not fut.cancelled():
                try:
                    manifest = fut.result()
                    self.clips += 1
                    self.seconds += manifest.duration
                except BaseException:
                    pass
            if not self.paths.manifest(clip.date, clip.cid).exists():
                _discard_clip(self.paths, clip.date, clip.cid, len(clip.stills))
            self.reserved.discard((clip.date, clip.cid))
        self.inflight.clear()


def _discard_clip(paths: Paths, date: str, cid: str, stills: int) -> None:
    """Remove a clip's media files and this process's .partial files of them (not its
    manifest; another writer's .partial files are its own business)."""
    files = [paths.clip_video(date, cid), paths.audio(date, cid)]
    files += [paths.frame(date, cid, k) for k in range(stills)]
    for p in files:
        for q in (p, *partials_of(p, os.getpid())):
            q.unlink(missing_ok=True)
