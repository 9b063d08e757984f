"""Where decoded pictures and sound go on the clip timeline: pure arithmetic on stream
timestamps, never on frame or sample counts.

Zero is the earliest start of the chosen streams; audio that leads the video by less than
PRIMING_SLACK is AAC priming, not sound, and does not move zero."""
from __future__ import annotations

from collections import deque

import numpy as np

from wm.capture.segments import nearest

PRIMING_SLACK = 0.1        # s: audio starting this little before the video is encoder priming
RESYNC_SECONDS = 0.04      # audio timestamps further than this from the running count: gap/overlap


def timeline_start(video_start: float | None, audio_start: float | None,
                   slack: float = PRIMING_SLACK) -> float:
    """Zero of the clip timeline (seconds on the container's clock): the earliest stream
    start, except that audio leading by less than `slack` (AAC priming, or a negative start)
    does not count."""
    if video_start is None and audio_start is None:
        return 0.0
    if video_start is None:
        return 0.0 if -slack <= audio_start < 0 else audio_start
    if audio_start is None:
        return video_start
    if video_start - slack <= audio_start < video_start:
        return video_start
    return min(video_start, audio_start)


def near_a_slot(t: float, rates: tuple[int, ...], window: float) -> bool:
    """Whether timeline second t is within `window` of a slot (j / rate) of any rate."""
    return any(abs(t - round(t * r) / r) <= window for r in rates)


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest even size within max_width x max_height with the source's aspect ratio;
    never larger than the source."""
    scale = min(1.0, max_width / width, max_height / height)
    w = min(max_width, round(width * scale)) // 2 * 2
    h = min(max_height, round(height * scale)) // 2 * 2
    return max(2, w), max(2, h)


class AudioTrack:
    """16 kHz mono samples on the clip timeline (sample 0 = timeline zero). Samples are
    placed where their timestamps say; timestamps within RESYNC_SECONDS of the running
    count are taken as contiguous (resampler delay, rounding), larger jumps leave a gap
    (filled with silence and reported) or an overlap (the later copy is cut)."""

    def __init__(self, rate: int):
        self.rate = rate
        self.tolerance = int(RESYNC_SECONDS * rate)
        self.chunks: deque[tuple[int, np.ndarray]] = deque()
        self.end = 0          # timeline sample after the last one held
        self.started = False

    def put(self, pos: int | None, samples: np.ndarray) -> None:
        if pos is None:
            pos = self.end
        elif self.started and abs(pos - self.end) <= self.tolerance:
            pos = self.end
        cut = max(self.end - pos, 0)   # overlap, or samples before timeline zero
        samples, pos = samples[cut:], pos + cut
        if len(samples):
            self.chunks.append((pos, samples))
            self.end = pos + len(samples)
            self.started = True

    def take(self, a: int, b: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Samples [a, b) (silence where none) and the spans [s, e) that had none; forgets
        everything before b."""
        out = np.zeros(b - a, np.int16)
        covered: list[tuple[int, int]] = []
        for pos, arr in self.chunks:
            s, e = max(a, pos), min(b, pos + len(arr))
            if s < e:
                out[s - a:e - a] = arr[s - pos:e - pos]
                covered.append((s, e))
        while self.chunks and self.chunks[0][0] + len(self.chunks[0][1]) <= b:
            self.chunks.popleft()
        return out, _holes(covered, a, b)


def _holes(covered: list[tuple[int, int]], a: int, b: int) -> list[tuple[int, int]]:
    """The spans of [a, b) outside the sorted spans `covered`."""
    holes, cursor = [], a
    for s, e in covered:
        if s > cursor:
            holes.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < b:
        holes.append((cursor, b))
    return holes


def clip_holes(holes: list[tuple[int, int]], a: int, real: int,
               tolerance: int) -> list[tuple[int, int]]:
    """`holes` (timeline samples) of the clip starting at sample a, as samples into its
    first `real` samples; holes no longer than `tolerance` are rounding, not gaps."""
    holes = [(max(s, a) - a, min(e, a + real) - a) for s, e in holes]
    return [(s, e) for s, e in holes if e - s > tolerance]


class Slots:
    """Slot j sits at j / rate seconds on the timeline; each gets the converted frame
    nearest to it within max_distance, or None. Frames are offered in time order and a
    slot is decided as soon as a frame at or after it arrives, so only the previous frame
    is ever held undecoded."""

    def __init__(self, rate: int, max_distance: float, convert):
        self.rate = rate
        self.max_distance = max_distance
        self.convert = convert
        self.next = 0
        self.chosen: dict[int, object | None] = {}

    def offer(self, prev: tuple[float, object] | None, cur: tuple[float, object]) -> None:
        cands = [c for c in (prev, cur) if c is not None]
        while self.next / self.rate <= cur[0]:
            self._decide(cands)

    def close(self, last: tuple[float, object] | None, until: int) -> None:
        """End of the stream: decide slots up to `until` from the last frame alone."""
        while self.next < until:
            self._decide([last] if last is not None else [])

    def _decide(self, cands) -> None:
        i = nearest([c[0] for c in cands], [self.next / self.rate], self.max_distance)[0]
        self.chosen[self.next] = None if i is None else self.convert(cands[i][1])
        self.next += 1

    def pop(self, first: int, count: int) -> list:
        return [self.chosen.pop(j, None) for j in range(first, first + count)]


def fill_nearest(placed: list) -> list:
    """Empty slots take the nearest filled one (they are reported as gaps)."""
    filled = [i for i, p in enumerate(placed) if p is not None]
    return [p if p is not None else placed[min(filled, key=lambda j: abs(j - i))]
            for i, p in enumerate(placed)]


class StartWait:
    """Frames that arrive before timeline zero is known. Zero is fixed once every chosen
    stream has shown a timestamp, or once the frames held span more than `patience`
    seconds (a stream that has not started by then starts late)."""

    def __init__(self, streams: int, patience: float):
        self.streams = streams
        self.patience = patience
        self.first: dict[str, float] = {}
        self.frames: list[tuple[object, object]] = []

    def hold(self, part, frame) -> bool:
        """Keep the frame of `part` (its `kind` is "video" or "audio"); True when zero can be
        fixed now."""
        t = frame.time
        if part.kind not in self.first and t is not None:
            self.first[part.kind] = t
        self.frames.append((part, frame))
        times = [f.time for _, f in self.frames if f.time is not None]
        waited = max(times) - min(times) if times else 0.0
        return len(self.first) == self.streams or waited > self.patience

    def zero(self) -> float:
        return timeline_start(self.first.get("video"), self.first.get("audio"))

    def release(self) -> list[tuple[object, object]]:
        frames, self.frames = self.frames, []
        return frames
