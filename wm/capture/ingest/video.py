"""The picture side of one file's ingest: decoded frames go into the clip video's slots
and the stills' slots by their timestamps; only the frames a slot keeps are scaled (by
swscale, in C, staying in YUV), and a picture no slot can take that no other picture
refers to is not decoded at all."""
from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from wm.base.manifest import Gap
from wm.capture.ingest.probe import frame_rate
from wm.capture.ingest.timeline import Slots, fill_nearest, fit_size, near_a_slot
from wm.capture.segments import Segment, missing_spans, slot_times

# A picture further than this many source frame periods from every slot is no slot's
# nearest: half a period, with room for the jitter of variable-rate phone recordings.
SLOT_WINDOW = 0.75


class VideoPart:
    """The chosen video stream's frames on the timeline, until each clip takes its own."""

    kind = "video"

    def __init__(self, stream, cap):
        self.cap = cap
        self.period = 1.0 / (frame_rate(stream) or 30.0)
        maxd = 1.5 * self.period   # a slot further than this from any frame is a gap
        self.clip_slots = Slots(cap.video_fps, maxd, self._small)
        self.still_slots = Slots(cap.frame_rate, maxd, self._still)
        self._slot_rates = ((self.clip_slots, cap.video_fps), (self.still_slots, cap.frame_rate))
        self.prev: tuple[float, object] | None = None   # (timeline seconds, frame) placed last
        self.position = 0.0   # seconds of the timeline decoded so far
        self.done = False     # the demuxer has flushed this stream
        self._size: tuple[int, int] | None = None   # from the first frame kept
        self._cache: list[tuple[av.VideoFrame, av.VideoFrame]] = []
        # one swscale context each, kept for the whole file: a fresh one per frame
        # (what frame.reformat does) costs ~1 ms to set up, 4x the scaling itself
        self._scaler = VideoReformatter()
        self._to_bgr = VideoReformatter()
        self._previous: set[int] = set()   # ids of the frames in the clip cut last
        self._codec = stream.codec_context
        self._window = SLOT_WINDOW * self.period
        self._rates = (cap.video_fps, cap.frame_rate)

    def skip_unneeded(self, packet, t0: float | None) -> None:
        """Before `packet` is decoded: a picture no slot will take and no later picture
        refers to (a non-reference B-frame: half of them in a typical x264 file) is not
        decoded at all. Reference pictures always are, and so is every picture until
        timeline zero is known."""
        mode = "DEFAULT"
        if t0 is not None and packet.pts is not None and packet.time_base is not None:
            t = float(packet.pts * packet.time_base) - t0
            if not near_a_slot(t, self._rates, self._window):
                mode = "NONREF"
        if self._codec.skip_frame != mode:   # frame threads copy it at each packet
            self._codec.skip_frame = mode

    def place(self, frame, t0: float) -> None:
        t = frame.time
        tl = (t - t0) if t is not None else (self.prev[0] + self.period if self.prev else 0.0)
        if self.prev is not None and tl <= self.prev[0]:
            return   # out of order or duplicate timestamp
        cur = (tl, frame)
        self.clip_slots.offer(self.prev, cur)
        self.still_slots.offer(self.prev, cur)
        self.prev = cur
        self.position = tl + self.period

    def ready(self, k: int) -> bool:
        """Whether clip k's slots are all decided."""
        return self.done or all(slots.next >= self._slots_before(k + 1, rate)
                                for slots, rate in self._slot_rates)

    def settle(self, seg: Segment) -> None:
        """Once the stream is over no frame will come: the last one decides the slots of
        `seg` it is near to."""
        if self.done:
            for slots, rate in self._slot_rates:
                slots.close(self.prev, self._slots_before(seg.index + 1, rate))

    def cut(self, seg: Segment) -> tuple[list[av.VideoFrame], list[np.ndarray], list[Gap]]:
        """The clip video's frames, the stills and the gaps of `seg`; no frames (and no
        stills) when no slot found a frame."""
        vtimes, placed = self._pop(self.clip_slots, seg, self.cap.video_fps)
        stimes, still_placed = self._pop(self.still_slots, seg, self.cap.frame_rate)
        gaps = [Gap("video", round(s, 3), round(min(e, seg.duration), 3), "no_frames")
                for s, e in missing_spans(vtimes, placed, 1.0 / self.cap.video_fps, seg.start)]
        if not any(p is not None for p in placed):
            return [], [], gaps
        video = self._unshared(fill_nearest(placed))
        # a still with no frame near it takes the clip video's frame at that instant
        stills = [p if p is not None else self._bgr(video[
                      min(len(video) - 1, round((t - seg.start) * self.cap.video_fps))])
                  for p, t in zip(still_placed, stimes)]
        return video, stills, gaps

    def _slots_before(self, clip: int, rate: int) -> int:
        return clip * self.cap.clip_seconds * rate

    def _pop(self, slots: Slots, seg: Segment, rate: int) -> tuple[list[float], list]:
        times = slot_times(seg.start, seg.duration, rate)
        return times, slots.pop(self._slots_before(seg.index, rate), len(times))

    def _unshared(self, video: list[av.VideoFrame]) -> list[av.VideoFrame]:
        """Copies of frames the previous clip also holds: the encoder stamps each frame with
        its pts, and two clips may be encoding at once."""
        previous, self._previous = self._previous, {id(f) for f in video}
        return [av.VideoFrame.from_ndarray(f.to_ndarray(), format="yuv420p")
                if id(f) in previous else f for f in video]

    def _small(self, frame) -> av.VideoFrame:
        """The frame at the clip's size, kept in YUV: the encoder takes it as it is (no
        round trip through BGR)."""
        # the clip video and the stills often pick the same frame: scale it once
        for f, small in self._cache:
            if f is frame:
                return small
        if self._size is None:
            self._size = fit_size(frame.width, frame.height, self.cap.video_width,
                                  self.cap.video_height)
        w, h = self._size
        small = self._scaler.reformat(frame, width=w, height=h, format="yuv420p")
        self._cache = [self._cache[-1], (frame, small)] if self._cache else [(frame, small)]
        return small

    def _still(self, frame) -> np.ndarray:
        return self._bgr(self._small(frame))

    def _bgr(self, frame: av.VideoFrame) -> np.ndarray:
        return self._to_bgr.reformat(frame, format="bgr24").to_ndarray()
