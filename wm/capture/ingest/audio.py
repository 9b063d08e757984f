"""The sound side of one file's ingest: decoded audio resampled to 16 kHz mono and placed
on the clip timeline by its timestamps."""
from __future__ import annotations

import av
import numpy as np

from wm.base.manifest import Gap
from wm.capture.ingest.timeline import AudioTrack, clip_holes
from wm.capture.segments import Segment


class AudioPart:
    """The chosen audio stream's samples on the timeline, until each clip takes its own."""

    kind = "audio"

    def __init__(self, cap):
        self.rate = cap.sample_rate
        self.clip_samples = cap.clip_samples
        self.track = AudioTrack(self.rate)
        self.resampler = self._new_resampler()
        self.done = False   # the demuxer has flushed this stream; flush() is still to come

    @property
    def position(self) -> float:
        """Seconds of the timeline decoded so far."""
        return self.track.end / self.rate

    def place(self, frame, t0: float) -> None:
        try:
            out = self.resampler.resample(frame)
        except ValueError:   # the stream changed format mid-way: start a new resampler
            self.resampler = self._new_resampler()
            out = self.resampler.resample(frame)
        pos = None if frame.time is None else round((frame.time - t0) * self.rate)
        self._put(out, pos)

    def flush(self) -> None:
        """The resampler's last samples, at the end of the file."""
        self._put(self.resampler.resample(None), None)

    def ready(self, k: int) -> bool:
        """Whether clip k's samples have all arrived."""
        return self.done or self.track.end >= (k + 1) * self.clip_samples

    def cut(self, seg: Segment) -> tuple[np.ndarray | None, list[Gap]]:
        """The clip's samples (zero past its real duration) and its gaps; None when it
        has no sound at all."""
        a = seg.index * self.clip_samples
        real = round(seg.duration * self.rate)
        samples, holes = self.track.take(a, a + self.clip_samples)
        samples[real:] = 0
        holes = clip_holes(holes, a, real, self.track.tolerance)
        gaps = [Gap("audio", round(s / self.rate, 3), round(e / self.rate, 3), "no_samples")
                for s, e in holes]
        missing = sum(e - s for s, e in holes)
        return (samples if missing < real else None), gaps

    def _new_resampler(self):
        return av.AudioResampler(format="s16", layout="mono", rate=self.rate)

    def _put(self, frames, pos: int | None) -> None:
        for f in frames:
            # packed s16 mono: read the plane directly (to_ndarray costs ~20x more here)
            self.track.put(pos, np.frombuffer(f.planes[0], np.int16, count=f.samples).copy())
            pos = None   # later frames of the same input continue where this one ended
