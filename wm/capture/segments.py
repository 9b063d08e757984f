"""The arithmetic of cutting a stream into clips, kept pure so tests hit it directly.

The audio sample counter is the master clock: clip k holds samples
[k * clip_samples, (k + 1) * clip_samples) after the stream's anchor. Video frames carry
their own timestamps (seconds on the same timeline) and are placed by time, never by
counting."""
from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    index: int
    start: float      # seconds on the stream's timeline
    duration: float   # seconds of real content
    padded: bool      # shorter than a full clip (final remainder)


def clip_span(index: int, clip_samples: int) -> tuple[int, int]:
    """Sample range [start, end) of clip `index`."""
    return index * clip_samples, (index + 1) * clip_samples


def clip_index(sample: int, clip_samples: int) -> int:
    """The clip that holds sample number `sample`."""
    return sample // clip_samples


def segments(total_seconds: float, clip_seconds: float, min_tail_seconds: float) -> list[Segment]:
    """Cut a recording of `total_seconds` into clips. A final remainder is kept (and padded)
    when it lasts at least `min_tail_seconds`, dropped otherwise."""
    out: list[Segment] = []
    full = int(total_seconds // clip_seconds + 1e-9)
    for i in range(full):
        out.append(Segment(i, i * clip_seconds, float(clip_seconds), False))
    tail = total_seconds - full * clip_seconds
    if tail >= min_tail_seconds and tail > 1e-6:
        out.append(Segment(full, full * clip_seconds, tail, True))
    return out


def slot_times(start: float, duration: float, rate: float) -> list[float]:
    """Times of the frame slots of a clip: start, start + 1/rate, ... while inside duration.
    Used both for the clip video (rate = video fps) and the stills (rate = frame_rate)."""
    n = max(1, int(duration * rate + 1e-9))
    return [start + i / rate for i in range(n)]


def nearest(times: list[float], targets: list[float], max_distance: float) -> list[int | None]:
    """For each target time the index of the nearest time in sorted `times`, or None when
    nothing lies within max_distance (that slot is a gap, never filled from far away)."""
    out: list[int | None] = []
    for t in targets:
        i = bisect.bisect_left(times, t)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(times) and abs(times[j] - t) <= max_distance:
                if best is None or abs(times[j] - t) < abs(times[best] - t):
                    best = j
        out.append(best)
    return out


def missing_spans(slots: list[float], placed: list[int | None], slot_length: float,
                  clip_start: float) -> list[tuple[float, float]]:
    """Merge the empty slots into [start, end) spans in seconds from the clip's start."""
    spans: list[tuple[float, float]] = []
    for t, p in zip(slots, placed):
        if p is not None:
            continue
        s, e = t - clip_start, t - clip_start + slot_length
        if spans and abs(spans[-1][1] - s) < 1e-6:
            spans[-1] = (spans[-1][0], e)
        else:
            spans.append((s, e))
    return spans


def uncovered(covered: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    """The parts of [start, end) that no span in `covered` reaches, as sorted [s, e) spans
    (where a clip has no data: its gaps)."""
    out: list[tuple[float, float]] = []
    at = start
    for s, e in sorted(covered):
        if e <= at:
            continue
        if s > at:
            out.append((at, min(s, end)))
        at = max(at, e)
        if at >= end:
            break
    if at < end:
        out.append((at, end))
    return [(s, e) for s, e in out if e > s]


def decimate(stamp: float, due: float | None, period: float) -> tuple[bool, float]:
    """Keep a frame from a faster source when it is (nearly) due. Returns (keep, next due).
    Frames within a quarter period before their due time are kept, so a source at the
    keep rate with jitter loses none; a source that falls behind restarts the grid."""
    if due is None:
        return True, stamp + period
    if stamp < due - 0.25 * period:
        return False, due
    nxt = due + period
    if nxt <= stamp:
        nxt = stamp + period
    return True, nxt
