"""The segmenter and the pure arithmetic under live capture, driven with synthetic device
timings (blocks, frames, arrival jitter, drift, outages) so every number is exact."""
from __future__ import annotations

import numpy as np
import pytest

from wm.base.manifest import FINAL, PADDED
from wm.capture import segments
from wm.capture.camera import backoff, fit
from wm.capture.segmenter import (
    AUDIO_WAIT,
    START_WAIT,
    VIDEO_REACH,
    MinWindow,
    Segmenter,
)

RATE, N, FPS = 16000, 48000, 10
BLOCK = 1600


def make(expect_audio=True, expect_video=True, watermark=False) -> Segmenter:
    return Segmenter(clip_seconds=3, sample_rate=RATE, video_fps=FPS, frame_rate=1,
                     size=(64, 48), expect_audio=expect_audio, expect_video=expect_video,
                     to_wall=lambda t: 1_700_000_000.0 + t, watermark=watermark)


def frame(i: int) -> np.ndarray:
    """A frame whose pixels say which one it is."""
    img = np.zeros((48, 64, 3), np.uint8)
    img[..., 0], img[..., 1] = i % 256, i // 256
    return img


def which(img: np.ndarray) -> int:
    return int(img[0, 0, 0]) + 256 * int(img[0, 0, 1])


def signal(start: int, n: int) -> np.ndarray:
    """The 'true' sound: sample number k has value k mod 30000, so a clip's samples tell
    exactly which part of the stream they are."""
    return (np.arange(start, start + n) % 30000).astype(np.int16)


class Feed:
    """Plays devices into a segmenter in arrival order and collects the cuts.
    Audio sample k is captured at true time t0 + k / (RATE * (1 + drift)); a block arrives
    `delay(i)` after its last sample, never before the block ahead of it. Frame j is
    captured at t0 + j / cam_fps. `run` plays true times [since, seconds) after t0."""

    def __init__(self, seg, t0=100.0, cam_fps=30.0, drift=0.0, delay=lambda i: 0.005):
        self.seg, self.t0, self.cam_fps, self.drift, self.delay = seg, t0, cam_fps, drift, delay
        self.cuts = []
        self.due = None

    def run(self, seconds, since=0.0, audio_ok=lambda t: True, video_ok=lambda t: True,
            overflow_after_hole=True):
        events = []
        rate = RATE * (1 + self.drift)
        was_ok, new, arrived = True, since > 0, 0.0
        for i in range(int(seconds * RATE / BLOCK)):
            t_last = self.t0 + ((i + 1) * BLOCK - 1) / rate
            if t_last < self.t0 + since:
                continue
            if not audio_ok(t_last):
                was_ok = False
                continue
            arrived = max(arrived, t_last + self.delay(i))
            events.append((arrived, "a", i, not was_ok and overflow_after_hole, new))
            was_ok, new = True, False
        for j in range(int(seconds * self.cam_fps)):
            t = self.t0 + j / self.cam_fps
            if t >= self.t0 + since and video_ok(t):
                events.append((t + 0.002, "f", j, t))
        events.sort(key=lambda e: e[0])
        for ev in events:
            if ev[1] == "a":
                _, _, i, overflow, new = ev
                self.seg.audio(signal(i * BLOCK, BLOCK), ev[0], new_stream=new, overflow=overflow)
            else:
                keep, self.due = segments.decimate(ev[3], self.due, 1 / FPS)
                if keep:
                    self.seg.frame(ev[3], frame(ev[2]))
            self.cuts += self.seg.poll(ev[0])
        return self.cuts


def audio_gaps(cut):
    return [g for g in cut.gaps if g.modality == "audio"]


def video_gaps(cut):
    return [g for g in cut.gaps if g.modality == "video"]


# -- pure functions --------------------------------------------------------------------

def test_uncovered_is_the_complement_of_the_spans():
    assert segments.uncovered([], 0, 10) == [(0, 10)]
    assert segments.uncovered([(0, 10)], 0, 10) == []
    assert segments.uncovered([(2, 4), (3, 5), (7, 12)], 0, 10) == [(0, 2), (5, 7)]
    assert segments.uncovered([(-5, 1), (9, 9.5)], 0, 10) == [(1, 9), (9.5, 10)]


@pytest.mark.parametrize("source_fps,kept_per_second", [(30, 10), (25, 10), (10, 10), (5, 5)])
def test_decimate_keeps_the_clip_rate_from_any_faster_source(source_fps, kept_per_second):
    rng = np.random.default_rng(0)
    due, kept = None, 0
    for j in range(source_fps * 20):
        t = j / source_fps + rng.uniform(0, 0.004)  # a little jitter
        keep, due = segments.decimate(t, due, 1 / FPS)
        kept += keep
    assert abs(kept - kept_per_second * 20) <= 2


def test_fit_letterboxes_without_stretching():
    wide = np.full((720, 1280, 3), 200, np.uint8)
    out = fit(wide, 640, 480)
    assert out.shape == (480, 640, 3)
    assert out[0, 320].max() == 0 and out[240, 320].min() == 200     # bars top and bottom
    assert out[59, 320].max() == 0 and out[60, 320].min() == 200     # 640x360 picture, centred
    assert out[419, 320].min() == 200 and out[420, 320].max() == 0
    same = np.zeros((480, 640, 3), np.uint8)
    assert fit(same, 640, 480) is same


def test_backoff_doubles_up_to_the_ceiling():
    assert [backoff(a, 5.0) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_min_window_forgets_old_values():
    w = MinWindow(10.0)
    for t, v in [(0, 5.0), (1, 3.0), (2, 4.0)]:
        w.push(t, v)
    assert w.min() == 3.0
    w.push(12.5, 6.0)   # t=1 and t=2 fall out of the window
    assert w.min() == 6.0


def test_stream_resampler_matches_resampling_the_whole_signal():
    torchaudio = pytest.importorskip("torchaudio")
    import torch

    from wm.capture.microphone import StreamResampler

    rng = np.random.default_rng(1)
    x = (rng.standard_normal(48000 * 2) * 3000).astype(np.float32)
    whole = torchaudio.functional.resample(torch.from_numpy(x), 48000, 16000).numpy()
    r = StreamResampler(48000, 16000)
    parts = [r(x[i:i + 4410]) for i in range(0, len(x), 4410)]   # blocks not a multiple of 3
    got = np.concatenate(parts).astype(np.float32)
    assert len(whole) - len(got) <= 100      # only the held-back tail is missing
    assert np.abs(got[:-10] - np.round(whole[:len(got) - 10])).max() <= 1


# -- the segmenter ------------------------------------------------------------------------

def test_jittery_audio_gives_exact_contiguous_clips_without_gaps():
    rng = np.random.default_rng(2)
    delays = rng.uniform(0.0, 0.05, 1000)
    delays[50:53] = [0.4, 0.3, 0.2]      # a late burst: arrives late, nothing lost
    cuts = Feed(make(), delay=lambda i: delays[i]).run(31)
    assert [c.index for c in cuts] == list(range(10))
    for k, c in enumerate(cuts):
        assert len(c.audio) == N
        assert np.array_equal(c.audio, signal(k * N, N)), f"clip {k} holds the wrong samples"
        assert c.gaps == [] and c.flags == []
        assert len(c.video) == 30 and len(c.stills) == 3
        assert c.start == pytest.approx(1_700_000_000.0 + 100.0 + 3 * k, abs=0.06)


def test_frames_are_placed_by_their_timestamps():
    cuts = Feed(make(), cam_fps=30).run(10)
    for c in cuts:
        for i, img in enumerate(c.video):
            slot_t = c.source_time + i / FPS
            j = which(img)                 # which camera frame filled the slot
            assert abs(j / 30 + 100.0 - slot_t) <= 0.05 + 1e-9
        for k, still in enumerate(c.stills):
            assert abs(which(still) / 30 + 100.0 - (c.source_time + k)) <= 0.05 + 1e-9


@pytest.mark.parametrize("drift", [300e-6, -300e-6])
def test_sound_card_drift_is_followed_without_gaps(drift):
    # the card's clock runs 300 ppm fast (slow): after 10 minutes that is 180 ms
    cuts = Feed(make(), drift=drift, cam_fps=10).run(600)
    assert len(cuts) == 200
    assert all(c.gaps == [] for c in cuts)
    last = cuts[-1]
    assert np.array_equal(last.audio, signal(last.index * N, N))
    # the frame in the last clip's first slot was taken when that clip's first sample was
    truth = 100.0 + last.index * N / (RATE * (1 + drift))
    j = which(last.video[0])
    assert abs((100.0 + j / 10) - truth) <= 0.06
    # and the clip is dated by the wall clock, not by the card's count of seconds
    assert last.start == pytest.approx(1_700_000_000.0 + truth, abs=0.02)


def test_lost_audio_after_overflow_is_a_gap_not_a_shift():
    # 0.5 s of blocks never arrive (buffer overflow); the next block says so
    lost = lambda t: not (104.0 <= t < 104.5)  # noqa: E731
    seg = make()
    cuts = Feed(seg).run(10, audio_ok=lost)
    c = cuts[1]                                # 103..106
    [gap] = audio_gaps(c)
    assert gap.reason == "overflow"
    assert gap.start == pytest.approx(1.0, abs=0.11) and gap.end == pytest.approx(1.5, abs=0.11)
    # what comes after the hole is where it belongs: clip 2 holds exactly its own samples
    assert np.array_equal(cuts[2].audio, signal(2 * N, N))
    assert seg.counters.samples_lost == pytest.approx(0.5 * RATE, abs=BLOCK)


def test_microphone_lost_and_back_gives_a_gap_and_a_video_only_clip():
    seg = make()
    feed = Feed(seg)
    feed.run(4.5)
    seg.state("audio", 104.5, "device_lost")    # as the microphone reports it
    cuts = feed.run(15, since=4.5, audio_ok=lambda t: t >= 110.2, overflow_after_hole=False)
    by_index = {c.index: c for c in feed.cuts}
    [gap] = audio_gaps(by_index[1])
    assert gap.reason == "device_lost" and gap.start == pytest.approx(1.5, abs=0.11)
    two = by_index[2]                           # 106..109: no audio at all
    assert two.audio is None and len(two.video) == 30
    assert [(g.start, g.end, g.reason) for g in audio_gaps(two)] == [(0, 3.0, "device_lost")]
    three = by_index[3]                         # 109..112: back at 110.2
    assert audio_gaps(three)[0].end == pytest.approx(1.2, abs=0.11)
    # samples after the outage sit where their capture time says
    k = round((110.5 - 100.0) * RATE)
    assert three.audio[k - 3 * N] == signal(k, 1)[0]
    assert cuts


def test_audio_down_still_cuts_video_only_clips_on_time():
    seg = make()
    seg.state("audio", 99.0, "device_lost")
    cuts = Feed(seg).run(9.6, audio_ok=lambda t: False)
    assert len(cuts) == 3
    assert all(c.audio is None and len(c.video) == 30 for c in cuts)
    assert all(audio_gaps(c)[0].reason == "device_lost" for c in cuts)


def test_camera_outage_becomes_a_video_gap_with_its_reason():
    seg = make()
    feed = Feed(seg)
    feed.run(4.0)
    seg.state("video", 104.0, "device_lost")   # as the camera reports it
    feed.run(12, since=4.0, video_ok=lambda t: t >= 108.0)
    cuts = feed.cuts
    c1, c2, c3 = cuts[1], cuts[2], cuts[3]
    [g] = video_gaps(c1)
    # frames stopped at 104.0 (1.0 into clip 1) and came back at 108.0 (2.0 into clip 2);
    # the slots within VIDEO_REACH of a frame still show it
    assert g.reason == "device_lost" and g.end == 3.0
    assert g.start == pytest.approx(1.0 + VIDEO_REACH, abs=0.11)
    assert video_gaps(c2)[0].end == pytest.approx(2.0 - VIDEO_REACH, abs=0.11)
    assert video_gaps(c3) == []
    assert all(len(c.audio) == N for c in cuts)


def test_no_audio_waits_audio_wait_past_the_end_then_cuts():
    seg = make()
    for j in range(40):
        seg.frame(100.0 + j / 10, frame(j))
    assert seg.poll(100.0 + START_WAIT - 0.1) == []    # still waiting for the microphone
    assert seg.poll(100.0 + START_WAIT + 0.01) == []   # anchored on video, clip 0 not over
    [c] = seg.poll(103.0 + AUDIO_WAIT + 0.01)
    assert c.audio is None and audio_gaps(c)[0].reason == "stall"


def test_clip_is_cut_as_soon_as_its_audio_is_in():
    seg = make(expect_video=False)
    for i in range(30):
        seg.audio(signal(i * BLOCK, BLOCK), 100.0 + (i + 1) * 0.1)
        cuts = seg.poll(100.0 + (i + 1) * 0.1)
        assert (len(cuts) == 1) == (i == 29)


def test_late_audio_for_a_cut_clip_is_dropped_and_counted():
    seg = make(expect_video=False)
    for i in range(25):
        seg.audio(signal(i * BLOCK, BLOCK), 100.1 + i * 0.1)
    [c] = seg.poll(100.1 + 3.0 + AUDIO_WAIT)        # the rest never came in time
    assert audio_gaps(c)[0].start == pytest.approx(2.5)
    for i in range(25, 40):                         # ...then it does
        seg.audio(signal(i * BLOCK, BLOCK), 103.7)
    assert seg.counters.samples_lost == 5 * BLOCK


def test_finish_cuts_a_short_final_clip_padded_to_full_length():
    seg = make()
    cuts = Feed(seg).run(7.45)
    cuts += seg.finish(107.5, [FINAL])
    assert len(cuts) == 3
    last = cuts[-1]
    assert FINAL in last.flags and PADDED in last.flags
    assert last.duration == pytest.approx(1.4, abs=0.11)
    assert len(last.audio) == N
    assert not last.audio[round(last.duration * RATE):].any()       # zero padding
    assert len(last.video) == round(last.duration * FPS)
    assert len(last.stills) == 1          # whole seconds inside the clip: k = 0
    assert not seg.anchored


def test_a_stop_just_past_an_already_cut_clip_writes_nothing_and_says_so():
    seg = make()
    cuts = Feed(seg).run(6.05)                  # blocks end at 6.0 s: clip 1 is cut whole
    assert [c.duration for c in cuts] == [3.0, 3.0] and seg.tail_dropped is None
    assert seg.finish(106.03, [FINAL]) == []
    assert seg.tail_dropped == pytest.approx(0.0, abs=0.01)
    assert FINAL not in cuts[-1].flags          # already handed to the writer, left alone


def test_pause_leaves_a_paused_gap_and_a_fresh_timeline_after():
    seg = make()
    feed = Feed(seg)
    feed.run(4.0)
    [c] = seg.finish(104.05, [], tail_reason="paused")[-1:]
    assert c.duration == pytest.approx(1.0, abs=0.11)
    assert {(g.modality, g.reason, g.end) for g in c.gaps} == {("audio", "paused", 3.0),
                                                               ("video", "paused", 3.0)}
    # resume 10 s later: a new timeline starts at the first new sample
    later = Feed(seg, t0=114.0)
    cuts = later.run(3.5)
    assert cuts[0].index == 0 and cuts[0].start == pytest.approx(1_700_000_000.0 + 114.0, abs=0.01)


def test_watermark_mode_cuts_exactly_at_the_end():
    seg = make(watermark=True)
    for i in range(31):
        seg.audio(signal(i * BLOCK, BLOCK), (i + 1) * 0.1)
    for j in range(31):
        seg.frame(j / 10, frame(j))
    assert seg.poll(2.99) == []
    [c] = seg.poll(3.0)
    assert np.array_equal(c.audio, signal(0, N)) and c.gaps == []
