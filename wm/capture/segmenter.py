"""The segmenter: live audio blocks and video frames in, finished clips out.

It owns one timeline. The audio sample counter is the master clock: sample n sits at
source time `offset + n / rate`, and clip k holds samples [k*N, (k+1)*N). Frames carry the
source time at which they were read and are placed on the timeline through `offset`.
The offset is the least delay seen over the last DRIFT_WINDOW seconds of audio blocks
(a block can arrive late, never early), so it follows the drift between the sound card's
clock and the host's. Lost audio (an overflow, a device that went away) and lost video
become gaps in the manifest; nothing is stretched or shifted to hide them. When no audio
is coming, clips are cut by the clock instead (video-only clips), and a clip with neither
is not written at all.

No threads and no clocks here: time is passed in, so tests drive it directly."""
from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from wm.base.manifest import PADDED, Gap
from wm.capture import assemble, segments
from wm.capture.events import Cut, Frame

# A video slot takes the nearest frame within this many seconds; farther is a gap. Wider
# than one slot so jitter and cameras down to ~2 fps never make gaps, narrow enough that
# an outage shows within a quarter second of where it happened.
VIDEO_REACH = 0.25
# How long past a clip's end to wait for audio before cutting without it: above the
# largest block delay seen on a busy 2-core machine, and short enough that clip + write
# (~0.2 s) still lands within a second of the clip's end.
AUDIO_WAIT = 0.6
# The same when no audio is expected: just time for the last frames to arrive.
VIDEO_WAIT = 0.25
# A new timeline waits this long for the first audio block before anchoring on video
# (a PulseAudio stream delivers its first block ~1.2 s after opening).
START_WAIT = 3.0
# A delay this small after an overflow flag is jitter, not lost samples.
HOLE_MIN = 0.2
# Seconds of audio blocks whose least delay defines the clock offset.
DRIFT_WINDOW = 30.0
# A final clip shorter than this is not written.
MIN_FINAL = 0.1


class MinWindow:
    """Minimum of the values pushed during the last `seconds` (a monotonic deque)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.items: deque[tuple[float, float]] = deque()

    def push(self, t: float, value: float) -> None:
        while self.items and self.items[-1][1] >= value:
            self.items.pop()
        self.items.append((t, value))
        while self.items[0][0] < t - self.seconds:
            self.items.popleft()

    def min(self) -> float:
        return self.items[0][1]

    def clear(self) -> None:
        self.items.clear()


@dataclass(frozen=True)
class Outage:
    """When a device was down, in source time."""
    start: float
    end: float | None     # None: still down
    reason: str


@dataclass
class Counters:
    samples: int = 0            # audio samples received
    samples_lost: int = 0       # in overflow holes, or arriving after their clip was cut
    frames: int = 0             # video frames received
    frames_late: int = 0        # arriving after their clip was cut


class Segmenter:
    def __init__(self, *, clip_seconds: int, sample_rate: int, video_fps: int,
                 frame_rate: int, size: tuple[int, int], expect_audio: bool,
                 expect_video: bool, to_wall: Callable[[float], float], watermark: bool = False):
        self.clip_seconds = clip_seconds
        self.rate = sample_rate
        self.n = clip_seconds * sample_rate
        self.fps = video_fps
        self.frame_rate = frame_rate
        self.black = np.zeros((size[1], size[0], 3), np.uint8)
        self.expect_audio = expect_audio
        self.expect_video = expect_video
        self.to_wall = to_wall
        # `now` is a watermark (a file source): everything before it has been delivered,
        # so a clip is cut once now passes its end, neither sooner nor later
        self.watermark = watermark
        self.audio_up = expect_audio
        # survives timeline resets because the devices' states do
        self.down: dict[str, list[Outage]] = {"audio": [], "video": []}
        self.counters = Counters()
        self.reset()

    def reset(self) -> None:
        """Forget the timeline: the next data anchors a new one at clip 0."""
        self.anchored = False
        self.offset = 0.0           # source time of sample 0
        self.clip = 0               # the clip being filled
        self.audio_n: int | None = None  # position after the current stream's last sample
        self.chunks: list[tuple[int, np.ndarray]] = []
        self.frames: list[Frame] = []    # on the timeline (t in its seconds), sorted
        self.pending: list[Frame] = []   # before anchoring, in source time
        self.window = MinWindow(DRIFT_WINDOW)
        # Set by finish() when the recording ended just past a clip that had already been
        # cut: the seconds after it, too short to be a clip and not written.
        self.tail_dropped: float | None = None

    # -- input -----------------------------------------------------------------------

    def state(self, modality: str, t: float, reason: str | None) -> None:
        """A device went down at source time t (`reason`), or came back (None)."""
        spans = self.down[modality]
        if reason is None:
            if spans and spans[-1].end is None:
                spans[-1] = replace(spans[-1], end=t)
        elif not spans or spans[-1].end is not None:
            spans.append(Outage(t, None, reason))
        if modality == "audio":
            self.audio_up = reason is None
            if reason is not None:
                self.audio_n = None

    def audio(self, block: np.ndarray, t_end: float, new_stream: bool = False,
              overflow: bool = False) -> None:
        """int16 mono samples whose last one was read at source time t_end. The first block
        of a (re)opened stream is placed by its time; later ones follow on contiguously."""
        f = len(block)
        if f == 0:
            return
        self.counters.samples += f
        self.state("audio", t_end - f / self.rate, None)
        if not self.anchored:
            self._anchor(t_end - f / self.rate)
            new_stream = True
        if new_stream or self.audio_n is None:
            pos = round((t_end - self.offset) * self.rate) - f
            self.window.clear()
        else:
            pos = self.audio_n
            late = t_end - (pos + f) / self.rate - self.offset
            if overflow and late > HOLE_MIN:
                hole = round(late * self.rate)
                self.down["audio"].append(Outage(self.offset + pos / self.rate,
                                                 self.offset + (pos + hole) / self.rate, "overflow"))
                self.counters.samples_lost += hole
                pos += hole
        self.audio_n = pos + f
        self.window.push(t_end, t_end - self.audio_n / self.rate)
        self.offset = self.window.min()
        first = self.clip * self.n
        if pos < first:  # belongs (partly) to a clip already cut
            cut = min(first - pos, f)
            self.counters.samples_lost += cut
            block, pos = block[cut:], pos + cut
        if len(block):
            self.chunks.append((pos, block))

    def frame(self, t: float, bgr: np.ndarray) -> None:
        """A video frame read at source time t."""
        self.counters.frames += 1
        self.state("video", t, None)
        if not self.anchored:
            self.pending.append(Frame(t, bgr))
            while self.pending[0].t < t - START_WAIT - 1.0:
                self.pending.pop(0)
            return
        self._place(t, bgr)

    def _place(self, t: float, bgr: np.ndarray) -> None:
        ts = t - self.offset
        if ts < self.clip * self.clip_seconds - VIDEO_REACH:
            self.counters.frames_late += 1
            return
        if self.frames and ts < self.frames[-1].t:
            bisect.insort(self.frames, Frame(ts, bgr), key=assemble.frame_time)
        else:
            self.frames.append(Frame(ts, bgr))

    # -- output ----------------------------------------------------------------------

    def poll(self, now: float) -> list[Cut]:
        """Clips whose end has passed at source time `now`: cut when the audio has reached
        the end, or, when it has not, AUDIO_WAIT later with the missing audio as a gap."""
        if not self.anchored:
            if not self.pending:
                return []
            audio_coming = self.expect_audio and self.audio_up
            if audio_coming and now - self.pending[0].t < START_WAIT:
                return []
            self._anchor(self.pending[0].t)
        cuts = []
        while True:
            end = (self.clip + 1) * self.n
            end_t = self.offset + end / self.rate
            if self.watermark:
                ready = now >= end_t
            else:
                audio_done = self.audio_n is not None and self.audio_n >= end
                wait = AUDIO_WAIT if self.expect_audio and self.audio_up else VIDEO_WAIT
                ready = audio_done or now >= end_t + wait
            if not ready:
                return cuts
            cut = self._cut(float(self.clip_seconds), [])
            if cut is not None:
                cuts.append(cut)

    def finish(self, now: float, flags: list[str], tail_reason: str | None = None) -> list[Cut]:
        """Cut everything up to now, the clip in flight as a short one carrying `flags`
        (its missing remainder a gap with `tail_reason`, if given), and end the timeline."""
        cuts = self.poll(now)
        dropped = None
        if self.anchored:
            start = self.clip * self.clip_seconds
            if self.audio_n is not None and self.audio_up:
                frontier = self.audio_n / self.rate
            elif self.frames:
                frontier = self.frames[-1].t + 1 / self.fps
            else:
                frontier = start
            duration = min(frontier - start, float(self.clip_seconds))
            if duration >= MIN_FINAL:
                cut = self._cut(duration, list(flags))
                if cut is not None:
                    if tail_reason and duration < self.clip_seconds:
                        for modality, has in (("audio", cut.audio is not None),
                                               ("video", bool(cut.video))):
                            if has:
                                cut.gaps.append(Gap(modality, round(duration, 3),
                                                    float(self.clip_seconds), tail_reason))
                    cuts.append(cut)
            elif cuts:  # the recording ended on a clip boundary
                cuts[-1].flags.extend(f for f in flags if f not in cuts[-1].flags)
            elif self.clip > 0:
                # The clip before the boundary is already on its way to disk, whole and
                # without `flags`; the few samples after it are too short to be a clip.
                dropped = max(duration, 0.0)
        self.reset()
        self.tail_dropped = dropped
        return cuts

    # -- internals -------------------------------------------------------------------

    def _anchor(self, t: float) -> None:
        self.anchored = True
        self.offset = t
        self.clip = 0
        self.window.clear()
        pending, self.pending = self.pending, []
        for f in pending:
            if f.t >= t - VIDEO_REACH:
                self._place(f.t, f.bgr)

    def _reason(self, modality: str, a: float, b: float) -> str:
        """Why a modality has no data over timeline seconds [a, b): the down span that
        overlaps it most, else a stall (the device was open but sent nothing)."""
        a, b = a + self.offset, b + self.offset
        best, reason = 0.0, "stall"
        for span in self.down[modality]:
            overlap = min(b, span.end if span.end is not None else b) - max(a, span.start)
            if overlap > best:
                best, reason = overlap, span.reason
        return reason

    def _cut(self, duration: float, flags: list[str]) -> Cut | None:
        k = self.clip
        s, e = segments.clip_span(k, self.n)
        s_sec = s / self.rate
        audio, holes = assemble.audio_span(self.chunks, s, s + round(duration * self.rate), self.n)
        video, stills, missing = assemble.video_span(
            self.frames, s_sec, duration, fps=self.fps, still_rate=self.frame_rate,
            reach=VIDEO_REACH, black=self.black)
        gaps = self._audio_gaps(s, holes) + self._video_gaps(s_sec, duration, missing)
        self._forget(e, s_sec)
        self.clip += 1
        if audio is None and not video:
            return None
        if duration < self.clip_seconds - 1e-9:
            flags.append(PADDED)
        # dated through the current offset, so a sound card's drift never drags the clips'
        # times away from the wall clock
        return Cut(index=k, start=self.to_wall(self.offset + s_sec), source_time=self.offset + s_sec,
                   duration=duration, audio=audio, video=video, stills=stills,
                   gaps=gaps, flags=flags)

    def _audio_gaps(self, s: int, holes: list[tuple[int, int]]) -> list[Gap]:
        """Gaps, in seconds from the clip's first sample s, for the samples that never came."""
        if not self.expect_audio:
            return []
        return [Gap("audio", round((a - s) / self.rate, 3), round((b - s) / self.rate, 3),
                    self._reason("audio", a / self.rate, b / self.rate)) for a, b in holes]

    def _video_gaps(self, s_sec: float, duration: float,
                    missing: list[tuple[float, float]]) -> list[Gap]:
        """Gaps for the empty slots of the clip starting at timeline second s_sec."""
        if not self.expect_video:
            return []
        spans = [(a, min(b, duration)) for a, b in missing]
        return [Gap("video", round(a, 3), round(b, 3), self._reason("video", s_sec + a, s_sec + b))
                for a, b in spans]

    def _forget(self, end: int, s_sec: float) -> None:
        """Drop what no clip after the one ending at sample `end` can use."""
        self.chunks = [(p, arr) for p, arr in self.chunks if p + len(arr) > end]
        self.frames = self.frames[bisect.bisect_left(self.frames, end / self.rate - VIDEO_REACH,
                                                     key=assemble.frame_time):]
        horizon = self.offset + s_sec - 60.0
        for spans in self.down.values():
            spans[:] = [x for x in spans if x.end is None or x.end > horizon]
