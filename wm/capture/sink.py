"""Where the recorder's cuts become clips on disk: below the disk floor nothing is written,
every clip gets an id no other clip has, and each one written is counted, timed against
its end and handed to the `on_clip` hook."""
from __future__ import annotations

from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from wm.base.clipids import clip_id, local_date
from wm.base.manifest import Manifest
from wm.base.paths import Paths
from wm.capture.diskfloor import below_floor, free_bytes
from wm.capture.encoder import VideoCodec, x264
from wm.capture.events import Cut
from wm.capture.sources import Sources
from wm.capture.writer import ClipMedia, write_clip

# Emission delays kept for the stats (benchmarks, tests): the last ~50 minutes of clips,
# not one float per clip for as long as the recorder runs.
DELAYS_KEPT = 1000


class ClipSink:
    def __init__(self, settings, paths: Paths, sources: Sources, speed: float,
                 on_clip: Callable[[Manifest, Path], None] | None, logger):
        self.settings, self.paths, self.c = settings, paths, settings.capture
        self.sources, self.speed, self.on_clip = sources, speed, on_clip
        self.log = logger
        self.disk_low = False
        self.clips_written = 0
        self.last_clip_end: float | None = None
        self.delays: deque[float] = deque(maxlen=DELAYS_KEPT)
        self._recent_ids: deque[str] = deque(maxlen=64)
        # the Recorder probes for a hardware encoder at start and replaces this
        self.codec: VideoCodec = x264(self.c.preset, self.c.crf)

    def write(self, cut: Cut) -> None:
        if not self._disk_ok():
            return
        c = self.c
        start = datetime.fromtimestamp(cut.start, timezone.utc)
        date = local_date(start)
        cid = self._unique_id(start, date)
        media = ClipMedia(cid=cid, date=date, start=start, duration=cut.duration, audio=cut.audio,
                          video=cut.video, stills=cut.stills,
                          source=self.sources.manifest_source(cut), gaps=cut.gaps, flags=cut.flags)
        manifest = write_clip(self.paths, media, clip_seconds=c.clip_seconds,
                              sample_rate=c.sample_rate, video_fps=c.video_fps,
                              jpeg_quality=c.jpeg_quality, codec=self.codec)
        end = cut.source_time + cut.duration
        self.delays.append((self.sources.playhead() - end) / self.speed)
        self.clips_written += 1
        self.last_clip_end = cut.start + cut.duration
        self.log.debug("clip_written", clip=cid, date=date, duration=cut.duration,
                       gaps=len(cut.gaps), flags=cut.flags)
        if self.on_clip is not None:
            try:
                self.on_clip(manifest, self.paths.manifest(date, cid))
            except Exception as e:
                self.log.error("on_clip_failed", clip=cid, error=repr(e), exc_info=True)

    def _disk_ok(self) -> bool:
        free = free_bytes(self.paths.root)
        low = below_floor(free, self.settings.retention.min_free_gb)
        if low != self.disk_low:
            self.disk_low = low
            if low:
                self.log.warning("disk_low_recording_suspended", free_gb=round(free / 1e9, 2),
                                 min_free_gb=self.settings.retention.min_free_gb)
            else:
                self.log.info("disk_ok_recording_resumed", free_gb=round(free / 1e9, 2))
        return not low

    def _unique_id(self, start: datetime, date: str) -> str:
        """An id no clip written lately or on disk has: ids name the start second, and
        after a pause or a restart two clips can start within one."""
        suffix = 0
        while True:
            cid = clip_id(start, suffix)
            if cid not in self._recent_ids and not self.paths.manifest(date, cid).exists():
                self._recent_ids.append(cid)
                return cid
            suffix += 1
