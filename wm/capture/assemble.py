"""One clip's media from the pieces the segmenter holds: its audio zero-padded to a whole
clip, its video on constant-rate slots, its stills, and the spans where each has nothing.
Pure: the segmenter decides what the pieces are and why a span is empty."""
from __future__ import annotations

import bisect
from operator import attrgetter

import numpy as np

from wm.capture import segments
from wm.capture.events import Frame

frame_time = attrgetter("t")


def audio_span(chunks: list[tuple[int, np.ndarray]], start: int, end: int, n: int
               ) -> tuple[np.ndarray | None, list[tuple[int, int]]]:
    """Samples [start, end) of a stream held as (position, samples) chunks, in a buffer of
    n samples from `start` (None when no chunk reaches the span), and the spans of
    positions no chunk covers."""
    buf = np.zeros(n, np.int16)
    covered = []
    for pos, arr in chunks:
        a, b = max(pos, start), min(pos + len(arr), end)
        if a < b:
            buf[a - start:b - start] = arr[a - pos:b - pos]
            covered.append((a, b))
    return (buf if covered else None), segments.uncovered(covered, start, end)


def video_span(frames: list[Frame], start: float, duration: float, *, fps: int,
               still_rate: int, reach: float, black: np.ndarray
               ) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[float, float]]]:
    """From frames sorted by time: the clip's frames on its `fps` slots (`black` where a
    slot has no frame within `reach`), its stills at `still_rate`, and the spans in seconds
    from `start` with no frame. No frame in reach of any slot: no video at all."""
    lo = bisect.bisect_left(frames, start - reach, key=frame_time)
    hi = bisect.bisect_right(frames, start + duration + reach, key=frame_time)
    near = frames[lo:hi]
    times = [f.t for f in near]
    slots = segments.slot_times(start, duration, fps)
    placed = segments.nearest(times, slots, reach) if near else []
    if not any(p is not None for p in placed):
        return [], [], [(0.0, duration)]
    video = [near[p].bgr if p is not None else black for p in placed]
    marks = segments.slot_times(start, duration, still_rate)
    stills = [near[p].bgr for p in segments.nearest(times, marks, float("inf"))]
    return video, stills, segments.missing_spans(slots, placed, 1 / fps, start)
