"""The arithmetic of cutting a stream into clips and placing frames (pure functions)."""
from __future__ import annotations

import pytest

from wm.capture.segments import (
    Segment,
    clip_index,
    clip_span,
    missing_spans,
    nearest,
    segments,
    slot_times,
)


def test_clip_span_and_index_agree_at_the_boundaries():
    assert clip_span(0, 48000) == (0, 48000)
    assert clip_span(2, 48000) == (96000, 144000)
    assert [clip_index(s, 48000) for s in (0, 47999, 48000, 95999, 96000)] == [0, 0, 1, 1, 2]


def test_full_clips_and_a_kept_remainder():
    assert segments(7.5, 3, 1.0) == [
        Segment(0, 0.0, 3.0, False), Segment(1, 3.0, 3.0, False), Segment(2, 6.0, 1.5, True)]


def test_a_remainder_under_min_tail_is_dropped():
    assert [s.index for s in segments(6.5, 3, 1.0)] == [0, 1]
    assert segments(0.5, 3, 1.0) == []
    assert segments(1.0, 3, 1.0) == [Segment(0, 0.0, 1.0, True)]   # exactly min_tail: kept


def test_whole_multiples_have_no_remainder_despite_float_noise():
    assert segments(6.0, 3, 0.0) == [Segment(0, 0.0, 3.0, False), Segment(1, 3.0, 3.0, False)]
    assert len(segments(3 * 0.1 * 30, 3, 0.0)) == 3      # 9.000000000000002
    assert len(segments(8.999999999999, 3, 0.5)) == 3
    assert segments(0.0, 3, 0.0) == []


def test_slot_times():
    assert slot_times(3.0, 3.0, 1) == [3.0, 4.0, 5.0]
    ten = slot_times(3.0, 3.0, 10)
    assert len(ten) == 30 and ten[0] == 3.0 and ten[-1] == pytest.approx(5.9)
    assert slot_times(6.0, 1.5, 1) == [6.0]         # a padded 1.5 s clip has one still
    assert len(slot_times(6.0, 1.5, 10)) == 15
    assert slot_times(0.0, 0.05, 10) == [0.0]       # never zero slots


def test_nearest_picks_the_closest_frame_by_time():
    fps = 30000 / 1001
    times = [i / fps for i in range(200)]
    picked = nearest(times, [0.0, 1.0, 2.0, 3.0], max_distance=0.5 / fps)
    assert picked == [0, 30, 60, 90]                # 1.001, 2.002, 3.003 s: the nearest
    assert nearest([0.0, 0.1], [0.06], 1.0) == [1]
    assert nearest([0.0, 0.1], [0.04], 1.0) == [0]


def test_nearest_leaves_a_gap_rather_than_reach_far():
    times = [0.0, 0.1, 0.2, 1.5, 1.6]                # nothing between 0.2 and 1.5
    assert nearest(times, [0.0, 0.5, 1.0, 1.5], max_distance=0.15) == [0, None, None, 3]
    assert nearest([], [0.0], 1.0) == [None]


def test_missing_spans_merge_neighbouring_empty_slots():
    slots = [3.0, 3.1, 3.2, 3.3, 3.4, 3.5]
    placed = [0, None, None, 3, None, 5]
    spans = missing_spans(slots, placed, 0.1, clip_start=3.0)
    assert [(round(s, 6), round(e, 6)) for s, e in spans] == [(0.1, 0.3), (0.4, 0.5)]
    assert missing_spans(slots, [1] * 6, 0.1, 3.0) == []
