"""`wm ingest`: recorded video files -> 3-second clips (H.264+AAC mp4, 1-FPS JPEG stills,
16 kHz mono WAV of exactly clip_seconds * sample_rate samples, manifest last).

One pass over each file: PyAV demuxes the chosen video and audio streams, frames are
placed on the clip timeline by their timestamps (never by counting), and a clip is handed
to a writer thread as soon as both streams have passed its end, so the encoder of clip k
runs while clip k+1 is being decoded. Only the decoded frames a clip keeps (the
video_fps slots and the stills) are converted to pixels.

Timeline: zero is the earliest start of the chosen streams; audio that leads the video by
less than PRIMING_SLACK is AAC priming, not sound, and does not move zero."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from wm.base import log
from wm.base.atomic import partial_name
from wm.base.clipids import clip_id, local_date
from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.manifest import FINAL, PADDED, Gap, Manifest, Source
from wm.base.paths import Paths
from wm.base.progress import Progress
from wm.capture.segments import Segment, missing_spans, nearest, segments, slot_times
from wm.capture.writer import ClipMedia, write_clip

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                  ".3gp"}
PRIMING_SLACK = 0.1        # s: audio starting this little before the video is encoder priming
RESYNC_SECONDS = 0.04      # audio timestamps further than this from the running count: gap/overlap
PENDING_SECONDS = 1.0      # how long to wait for the other stream's first frame
FINGERPRINT_BYTES = 1 << 20
IN_FLIGHT = 3              # clips built but not yet written (bounds memory)
WRITERS = 2                # clips encoded at once: both cores stay busy when decoding is ahead
TRUNCATION_SLACK = 1.0     # s: decoded content this much shorter than the header says: truncated


class BadMedia(WmError):
    """A file that cannot be ingested (the message is the reason)."""


@dataclass
class IngestSummary:
    files: int = 0          # files ingested by this call (not skipped, not failed)
    clips: int = 0          # clips written
    seconds: float = 0.0    # seconds of source content in those clips
    skipped: int = 0        # files already ingested earlier
    errors: list[str] = field(default_factory=list)  # "FILE: reason", one per failed file
    dropped: float = 0.0    # seconds of final remainders shorter than capture.min_tail_seconds

    def line(self) -> str:
        text = (f"ingest: {self.files} file{'s' * (self.files != 1)}, {self.clips} clips, "
                f"{self.seconds:.1f} s; skipped {self.skipped} already ingested")
        if round(self.dropped, 1) > 0:
            text += f"; dropped {self.dropped:.1f} s of short final remainders"
        if self.errors:
            text += f"; {len(self.errors)} failed"
        return text


# -- pure helpers -------------------------------------------------------------------------

def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest even size within max_width x max_height with the source's aspect ratio;
    never larger than the source."""
    scale = min(1.0, max_width / width, max_height / height)
    w = min(max_width, round(width * scale)) // 2 * 2
    h = min(max_height, round(height * scale)) // 2 * 2
    return max(2, w), max(2, h)


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


def parse_creation_time(text: str | None) -> datetime | None:
    """A container's creation_time as an aware UTC datetime; None when absent, unparsable
    or before 2000 (cameras with an unset clock write 1904 or 1970)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)   # MP4/MOV store UTC
    return when if when.year >= 2000 else None


def fingerprint(path: Path) -> str:
    """Identifies a file's content cheaply: its size and a hash of its first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            f.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            h.update(f.read(FINGERPRINT_BYTES))
    return f"{size}:{h.hexdigest()[:32]}"


def _rate(stream) -> float | None:
    r = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(r) if r else None


def pick_video(streams) -> tuple[object | None, str | None]:
    """The best video stream (most pixels, then highest frame rate, then first) and a
    description saying which and why. Cover art (attached pictures) is not video."""
    cands = [s for s in streams if s.type == "video" and s.codec_context is not None
             and not (s.disposition & av.stream.Disposition.attached_pic)]
    if not cands:
        return None, None
    best = max(cands, key=lambda s: (s.codec_context.width * s.codec_context.height,
                                     _rate(s) or 0, -s.index))
    cc = best.codec_context
    desc = f"#{best.index} {cc.name} {cc.width}x{cc.height} {_rate(best) or 0:.4g} fps"
    if len(cands) > 1:
        desc += f" (largest frame of {len(cands)} video streams)"
    return best, desc


def pick_audio(streams) -> tuple[object | None, str | None]:
    """The best audio stream (highest sample rate x channels, then bit rate, then first)."""
    cands = [s for s in streams if s.type == "audio" and s.codec_context is not None
             and s.codec_context.sample_rate]
    if not cands:
        return None, None
    best = max(cands, key=lambda s: (s.codec_context.sample_rate * _channels(s),
                                     s.codec_context.bit_rate or 0, -s.index))
    cc = best.codec_context
    desc = f"#{best.index} {cc.name} {cc.sample_rate} Hz {_channels(best)} ch"
    if len(cands) > 1:
        desc += f" (highest rate x channels of {len(cands)} audio streams)"
    return best, desc


def _channels(stream) -> int:
    return stream.codec_context.layout.nb_channels or 1


# -- placing decoded media on the clip timeline ----------------------------------------------

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
        holes, cursor = [], a
        for s, e in covered:
            if s > cursor:
                holes.append((cursor, s))
            cursor = max(cursor, e)
        if cursor < b:
            holes.append((cursor, b))
        return out, holes


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


def _fill(placed: list) -> list:
    """Empty slots take the nearest filled one (they are reported as gaps)."""
    filled = [i for i, p in enumerate(placed) if p is not None]
    return [p if p is not None else placed[min(filled, key=lambda j: abs(j - i))]
            for i, p in enumerate(placed)]


# -- the index of ingested files ----------------------------------------------------------------

def _already_ingested(paths: Paths, fp: str) -> dict | None:
    """The index entry for this fingerprint, if its first clip still exists (a file whose
    clips were deleted may be ingested again)."""
    try:
        lines = paths.ingest_index.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue   # a line cut short by a crash
        if entry.get("fingerprint") != fp:
            continue
        first = entry.get("first")
        if first is None or paths.manifest(first[0], first[1]).exists():
            return entry
    return None


def _remember(paths: Paths, fp: str, path: Path, first: tuple[str, str] | None,
              clips: int) -> None:
    paths.ingest_index.parent.mkdir(parents=True, exist_ok=True)
    entry = {"fingerprint": fp, "file": str(path), "first": first, "clips": clips,
             "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with open(paths.ingest_index, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


# -- one file ------------------------------------------------------------------------------------

@dataclass
class _Result:
    clips: int = 0
    seconds: float = 0.0
    dropped: float = 0.0
    first: tuple[str, str] | None = None   # (date, id) of the file's first clip
    problem: str | None = None   # the file was only partly readable (clips so far are kept)


class _FileIngest:
    def __init__(self, settings: Settings, paths: Paths, path: Path, date: str | None,
                 fp: str, pool: ThreadPoolExecutor, reserved: set, progress: Progress | None):
        self.cap = settings.capture
        self.paths, self.path, self.date, self.fp = paths, path, date, fp
        self.pool, self.reserved, self.progress = pool, reserved, progress
        self.log = log.get("wm.ingest").bind(file=str(path))
        self.result = _Result()
        self.inflight: deque[tuple[ClipMedia, Future]] = deque()
        self.held: ClipMedia | None = None     # built, waiting to learn whether it is the last
        self.next_clip = 0
        self._previous: set[int] = set()   # ids of the frames in the clip built last

    # -- driving ---------------------------------------------------------------------------
    def run(self) -> _Result:
        try:
            container = av.open(str(self.path))
        except av.error.FFmpegError as e:
            raise BadMedia(f"not a readable media file ({_why(e)})") from None
        try:
            with container:
                self._setup(container)
                self._decode(container)
                self._finish()
            self._drain()
        except BaseException:
            self._abandon()
            raise
        return self.result

    def _setup(self, container) -> None:
        self.vstream, vdesc = pick_video(container.streams)
        self.astream, adesc = pick_audio(container.streams)
        if self.vstream is None and self.astream is None:
            raise BadMedia("no video or audio stream")
        self.log.info("streams", video=vdesc, audio=adesc)
        self.chosen = [s for s in (self.vstream, self.astream) if s is not None]
        for s in self.chosen:
            s.thread_type = "AUTO"   # frame threads: decoding keeps pace with the writers
        self.source = Source(kind="file", name=str(self.path.resolve()), video_stream=vdesc,
                             audio_stream=adesc, fingerprint=self.fp)

        self.header_seconds = container.duration / av.time_base if container.duration else None
        container_start = container.start_time / av.time_base if container.start_time else 0.0
        meta = [container.metadata] + [s.metadata for s in self.chosen]
        created = next((c for c in (parse_creation_time(m.get("creation_time")) for m in meta)
                        if c is not None), None)
        if created is None:
            mtime = datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc)
            created = mtime - timedelta(seconds=self.header_seconds or 0.0)
        # wall time of container time 0; the timeline zero is placed from it once known
        self.wall_zero = created - timedelta(seconds=container_start)

        self.t0: float | None = None
        self.pending: list[tuple[str, object]] = []
        self.first: dict[str, float] = {}
        self.decode_errors = 0

        if self.vstream is not None:
            self.out_size: tuple[int, int] | None = None   # from the first frame kept
            self.period = 1.0 / (_rate(self.vstream) or 30.0)
            maxd = 1.5 * self.period   # a slot further than this from any frame is a gap
            self.vslots = Slots(self.cap.video_fps, maxd, self._small)
            self.sslots = Slots(self.cap.frame_rate, maxd, self._still)
            self.prev: tuple[float, object] | None = None
            self.video_end = 0.0
            self._cache: list[tuple[av.VideoFrame, av.VideoFrame]] = []
            # one swscale context each, kept for the whole file: a fresh one per frame
            # (what frame.reformat does) costs ~1 ms to set up, 4x the scaling itself
            self._scaler = VideoReformatter()
            self._to_bgr = VideoReformatter()
        self.video_done = self.vstream is None
        if self.astream is not None:
            self.track = AudioTrack(self.cap.sample_rate)
            self.resampler = self._new_resampler()
        self.audio_done = self.astream is None

    def _decode(self, container) -> None:
        demux = container.demux(*self.chosen)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as e:   # the container itself breaks off
                self.result.problem = f"unreadable after {self._position():.1f} s ({_why(e)})"
                for s in self.chosen:
                    self._frames(s, None)
                break
            self._frames(packet.stream, packet)
            self._emit_ready()

    def _frames(self, stream, packet) -> None:
        try:
            frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
        except av.error.FFmpegError as e:
            self.decode_errors += 1
            if self.decode_errors == 1:
                self.log.warning("decode_error", stream=stream.index, error=_why(e))
            return
        kind = "video" if stream is self.vstream else "audio"
        for frame in frames:
            self._feed(kind, frame)
        if packet is not None and packet.size == 0:   # the demuxer's flush packet: stream over
            self._stream_done(kind)

    def _stream_done(self, kind: str) -> None:
        if kind == "audio":
            self.audio_done = True   # the resampler's last few samples come in _finish
        else:
            self.video_done = True

    # -- the timeline ----------------------------------------------------------------------------
    def _feed(self, kind: str, frame) -> None:
        if self.t0 is None:
            t = frame.time
            if kind not in self.first and t is not None:
                self.first[kind] = t
            self.pending.append((kind, frame))
            times = [f.time for _, f in self.pending if f.time is not None]
            waited = max(times) - min(times) if times else 0.0
            if len(self.first) == len(self.chosen) or waited > PENDING_SECONDS:
                self._fix_zero()
            return
        if kind == "video":
            self._place_video(frame)
        else:
            self._place_audio(frame)

    def _fix_zero(self) -> None:
        self.t0 = timeline_start(self.first.get("video"), self.first.get("audio"))
        pending, self.pending = self.pending, []
        for kind, frame in pending:
            self._feed(kind, frame)

    def _position(self) -> float:
        """Seconds of the timeline decoded so far."""
        ends = []
        if self.vstream is not None:
            ends.append(self.video_end)
        if self.astream is not None:
            ends.append(self.track.end / self.cap.sample_rate)
        return max(ends)

    def _place_video(self, frame) -> None:
        t = frame.time
        tl = (t - self.t0) if t is not None else (self.prev[0] + self.period if self.prev else 0.0)
        if self.prev is not None and tl <= self.prev[0]:
            return   # out of order or duplicate timestamp
        cur = (tl, frame)
        self.vslots.offer(self.prev, cur)
        self.sslots.offer(self.prev, cur)
        self.prev = cur
        self.video_end = tl + self.period

    def _small(self, frame) -> av.VideoFrame:
        """The frame at the clip's size, scaled by swscale in C and kept in YUV: the encoder
        takes it as it is (no round trip through BGR)."""
        # the clip video and the stills often pick the same frame: scale it once
        for f, small in self._cache:
            if f is frame:
                return small
        if self.out_size is None:
            self.out_size = fit_size(frame.width, frame.height, self.cap.video_width,
                                     self.cap.video_height)
        w, h = self.out_size
        small = self._scaler.reformat(frame, width=w, height=h, format="yuv420p")
        self._cache = [self._cache[-1], (frame, small)] if self._cache else [(frame, small)]
        return small

    def _still(self, frame) -> np.ndarray:
        return self._bgr(self._small(frame))

    def _bgr(self, frame: av.VideoFrame) -> np.ndarray:
        return self._to_bgr.reformat(frame, format="bgr24").to_ndarray()

    def _new_resampler(self):
        return av.AudioResampler(format="s16", layout="mono", rate=self.cap.sample_rate)

    def _place_audio(self, frame) -> None:
        try:
            out = self.resampler.resample(frame)
        except ValueError:   # the stream changed format mid-way: start a new resampler
            self.resampler = self._new_resampler()
            out = self.resampler.resample(frame)
        pos = None if frame.time is None else round((frame.time - self.t0) * self.cap.sample_rate)
        self._audio_out(out, pos)

    def _audio_out(self, frames, pos: int | None) -> None:
        for f in frames:
            # packed s16 mono: read the plane directly (to_ndarray costs ~20x more here)
            self.track.put(pos, np.frombuffer(f.planes[0], np.int16, count=f.samples).copy())
            pos = None   # later frames of the same input continue where this one ended

    # -- cutting -----------------------------------------------------------------------------------
    def _emit_ready(self) -> None:
        if self.t0 is None or (self.audio_done and self.video_done):
            return
        cs, fps, fr = self.cap.clip_seconds, self.cap.video_fps, self.cap.frame_rate
        while True:
            k = self.next_clip
            audio_ready = self.audio_done or self.track.end >= (k + 1) * self.cap.clip_samples
            video_ready = self.video_done or (self.vslots.next >= (k + 1) * cs * fps
                                               and self.sslots.next >= (k + 1) * cs * fr)
            if not (audio_ready and video_ready):
                return
            self._emit(Segment(k, float(k * cs), float(cs), False))

    def _finish(self) -> None:
        if self.t0 is None:
            if not self.pending:
                raise BadMedia(self.result.problem or
                               f"no decodable audio or video ({self.decode_errors} bad packets)")
            self._fix_zero()
        self.audio_done = self.video_done = True
        if self.astream is not None:
            self._audio_out(self.resampler.resample(None), None)
        total = self._position()
        segs = segments(total, self.cap.clip_seconds, self.cap.min_tail_seconds)
        covered = segs[-1].start + segs[-1].duration if segs else 0.0
        self.result.dropped = max(0.0, total - covered)
        if self.result.dropped >= 0.05:   # less is codec padding, not content
            self.log.info("tail_dropped", seconds=round(self.result.dropped, 3),
                          min_tail_seconds=self.cap.min_tail_seconds)
        for seg in segs[self.next_clip:]:
            self._emit(seg)
        if self.held is not None:
            self.held.flags.append(FINAL)
            self._submit(self.held)
            self.held = None
        if self.decode_errors:
            self.log.warning("decode_errors", packets=self.decode_errors)
        if self.header_seconds and self.result.problem is None and (
                total < self.header_seconds - max(TRUNCATION_SLACK, 0.02 * self.header_seconds)):
            self.result.problem = f"truncated: media ends at {total:.1f} s of {self.header_seconds:.1f} s"

    def _emit(self, seg: Segment) -> None:
        self.next_clip = seg.index + 1
        if self.vstream is not None and self.video_done:
            # no frame will come: the last one decides the slots it is near to
            cs = self.cap.clip_seconds
            self.vslots.close(self.prev, (seg.index + 1) * cs * self.cap.video_fps)
            self.sslots.close(self.prev, (seg.index + 1) * cs * self.cap.frame_rate)
        if self.held is not None:   # a later segment exists: the held clip is not the last
            self._submit(self.held)
        self.held = self._build(seg)
        if self.progress is not None:
            self.progress.update(seg.duration, postfix=self.path.name)

    def _build(self, seg: Segment) -> ClipMedia | None:
        cap = self.cap
        gaps: list[Gap] = []
        video: list[av.VideoFrame] = []
        stills: list[np.ndarray] = []
        if self.vstream is not None:
            vtimes = slot_times(seg.start, seg.duration, cap.video_fps)
            placed = self.vslots.pop(seg.index * cap.clip_seconds * cap.video_fps, len(vtimes))
            stimes = slot_times(seg.start, seg.duration, cap.frame_rate)
            still_placed = self.sslots.pop(seg.index * cap.clip_seconds * cap.frame_rate,
                                           len(stimes))
            for s, e in missing_spans(vtimes, placed, 1.0 / cap.video_fps, seg.start):
                gaps.append(Gap("video", round(s, 3), round(min(e, seg.duration), 3), "no_frames"))
            if any(p is not None for p in placed):
                video = self._unshared(_fill(placed))
                # a still with no frame near it takes the clip video's frame at that instant
                stills = [p if p is not None else self._bgr(video[
                              min(len(video) - 1, round((t - seg.start) * cap.video_fps))])
                          for p, t in zip(still_placed, stimes)]
        audio = None
        if self.astream is not None:
            a = seg.index * cap.clip_samples
            real = round(seg.duration * cap.sample_rate)
            samples, holes = self.track.take(a, a + cap.clip_samples)
            samples[real:] = 0
            holes = [(max(s, a) - a, min(e, a + real) - a) for s, e in holes]
            holes = [(s, e) for s, e in holes if e - s > self.track.tolerance]
            missing = sum(e - s for s, e in holes)
            for s, e in holes:
                gaps.append(Gap("audio", round(s / cap.sample_rate, 3),
                                round(e / cap.sample_rate, 3), "no_samples"))
            if missing < real:
                audio = samples
        if not video and audio is None:
            self.log.info("clip_empty", offset=round(self.t0 + seg.start, 3))
            return None
        offset = round(self.t0 + seg.start, 6)
        start = self.wall_zero + timedelta(seconds=self.t0 + seg.start)
        date = self.date or local_date(start)
        cid, there = self._unique_id(date, start, offset)
        if self.result.first is None:
            self.result.first = (date, cid)
        if there:
            return None   # this clip of this file is already on disk (an interrupted earlier run)
        src = dataclasses.replace(self.source, offset=offset)
        return ClipMedia(cid=cid, date=date, start=start, duration=seg.duration, audio=audio,
                         video=video, stills=stills, source=src, gaps=gaps,
                         flags=[PADDED] if seg.padded else [])

    def _unshared(self, video: list[av.VideoFrame]) -> list[av.VideoFrame]:
        """Copies of frames the previous clip also holds: the encoder stamps each frame with
        its pts, and two clips may be encoding at once."""
        previous, self._previous = self._previous, {id(f) for f in video}
        return [av.VideoFrame.from_ndarray(f.to_ndarray(), format="yuv420p")
                if id(f) in previous else f for f in video]

    def _unique_id(self, date: str, start: datetime, offset: float) -> tuple[str, bool]:
        """A free id for this clip, or the id under which it is already on disk (True)."""
        suffix = 0
        while True:
            cid = clip_id(start, suffix)
            suffix += 1
            if (date, cid) in self.reserved:
                continue
            path = self.paths.manifest(date, cid)
            if path.exists():
                try:
                    there = Manifest.read(path)
                except (OSError, ValueError, TypeError, KeyError):
                    continue   # not ours to judge: never overwrite it
                if there.source.fingerprint == self.fp and abs(there.source.offset - offset) < 1e-3:
                    return cid, True
                continue
            self.reserved.add((date, cid))
            return cid, False

    # -- writing -------------------------------------------------------------------------------
    def _submit(self, clip: ClipMedia) -> None:
        while len(self.inflight) >= IN_FLIGHT:
            self._settle()
        fut = self.pool.submit(write_clip, self.paths, clip, clip_seconds=self.cap.clip_seconds,
                               sample_rate=self.cap.sample_rate, video_fps=self.cap.video_fps,
                               jpeg_quality=self.cap.jpeg_quality,
                               preset=self.cap.ingest_preset)
        self.inflight.append((clip, fut))

    def _settle(self) -> None:
        clip, fut = self.inflight[0]
        manifest = fut.result()   # a writer error surfaces here (and _abandon cleans up)
        self.inflight.popleft()
        self.result.clips += 1
        self.result.seconds += manifest.duration
        self.log.debug("clip_written", clip=clip.cid, date=clip.date, flags=manifest.flags)

    def _drain(self) -> None:
        while self.inflight:
            self._settle()

    def _abandon(self) -> None:
        """After a failure: let the writer finish what it started, then remove every file
        of a clip that has no manifest (a clip exists whole or not at all)."""
        for clip, fut in self.inflight:
            fut.cancel()
        for clip, fut in self.inflight:
            if not fut.cancelled():
                try:
                    fut.result()
                except BaseException:
                    pass
            if not self.paths.manifest(clip.date, clip.cid).exists():
                _discard_clip(self.paths, clip.date, clip.cid, len(clip.stills))
            self.reserved.discard((clip.date, clip.cid))
        self.inflight.clear()


def _discard_clip(paths: Paths, date: str, cid: str, stills: int) -> None:
    """Remove a clip's media files and their .partial files (not its manifest)."""
    files = [paths.clip_video(date, cid), paths.audio(date, cid)]
    files += [paths.frame(date, cid, k) for k in range(stills)]
    for p in files:
        for q in (p, partial_name(p)):
            q.unlink(missing_ok=True)


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BadMedia("no such file")
    if path.is_dir():
        raise BadMedia("is a folder, not a file")
    if path.stat().st_size == 0:
        raise BadMedia("empty file")


def _estimate_seconds(path: Path) -> float:
    try:
        with av.open(str(path)) as c:
            return c.duration / av.time_base if c.duration else 0.0
    except (av.error.FFmpegError, OSError):
        return 0.0


# -- the entry points -------------------------------------------------------------------------

def ingest_files(settings: Settings, paths: Paths, files: list[Path], date: str | None,
                 show_progress: bool = True) -> IngestSummary:
    """Ingest each file into clips filed under `date` (or each clip's local start date).
    A file that fails is reported in `errors` (and the log) and the others still go in;
    a file already ingested is skipped."""
    summary = IngestSummary()
    logger = log.get("wm.ingest")
    files = [Path(f) for f in files]
    expected = {f: _estimate_seconds(f) for f in files} if show_progress else {}
    progress = Progress(sum(expected.values()), "ingest", unit="s") if show_progress else None
    reserved: set[tuple[str, str]] = set()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="wm-ingest-writer") as pool:
        for path in files:
            before = progress.done if progress is not None else 0.0
            try:
                _ingest_one(settings, paths, path, date, pool, reserved, progress, summary)
            finally:
                if progress is not None:   # a skipped or failed file counts as done on the bar
                    progress.update(max(0.0, expected[path] - (progress.done - before)))
    if progress is not None:
        progress.close()
    logger.info("ingest_done", files=summary.files, clips=summary.clips,
                seconds=round(summary.seconds, 3), skipped=summary.skipped,
                failed=len(summary.errors), wall=round(time.monotonic() - started, 3))
    return summary


def _ingest_one(settings: Settings, paths: Paths, path: Path, date: str | None,
                pool: ThreadPoolExecutor, reserved: set, progress: Progress | None,
                summary: IngestSummary) -> None:
    logger = log.get("wm.ingest")
    try:
        _check_file(path)
        fp = fingerprint(path)
        if _already_ingested(paths, fp) is not None:
            summary.skipped += 1
            logger.info("already_ingested", file=str(path))
            return
        result = _FileIngest(settings, paths, path, date, fp, pool, reserved, progress).run()
    except (BadMedia, av.error.FFmpegError, OSError) as e:
        reason = str(e) if isinstance(e, BadMedia) else _why(e)
        _failed(summary, path, reason, progress)
        return
    except Exception as e:
        if logging.getLogger().isEnabledFor(logging.DEBUG):   # --debug: the traceback
            raise
        _failed(summary, path, f"internal error: {type(e).__name__}: {e} "
                "(run with --debug for the traceback)", progress)
        return
    summary.clips += result.clips
    summary.seconds += result.seconds
    summary.dropped += result.dropped
    if result.problem:
        kept = f"kept {result.clips} clip{'s' * (result.clips != 1)}"
        _failed(summary, path, f"{result.problem}; {kept}", progress)
        return
    _remember(paths, fp, path, result.first, result.clips)
    summary.files += 1
    logger.info("ingested", file=str(path), clips=result.clips,
                seconds=round(result.seconds, 3), dropped=round(result.dropped, 3))


def _failed(summary: IngestSummary, path: Path, reason: str, progress: Progress | None) -> None:
    summary.errors.append(f"{path}: {reason}")
    if progress is not None and progress.tty:   # the error gets a line of its own
        progress.stream.write("\r" + " " * 80 + "\r")
    log.get("wm.ingest").error("ingest_failed", file=str(path), reason=reason)


def run_ingest(settings: Settings, paths: Paths, files: list[Path], date: str | None) -> int:
    """`wm ingest [FILE...] [--date D]`: exit 0 when every file went in (or was already
    in), 1 when any failed."""
    if not files:
        if date is None:
            raise WmError("give video files to ingest, or --date DATE to ingest everything "
                          "in data/raw/DATE/")
        raw = paths.raw_dir(date)
        if not raw.is_dir():
            raise WmError(f"{raw}: no such folder (nothing recorded for {date})")
        files = [p for p in sorted(raw.iterdir())
                 if p.is_file() and not p.name.startswith(".")
                 and p.suffix.lower() in VIDEO_SUFFIXES]
    level = logging.getLogger().level
    if level > logging.DEBUG:
        # the bar and the summary are the console's story: the per-file details
        # (streams chosen, tails dropped) go to the log file, warnings and errors to both
        log.setup(paths.log_file, logging.getLevelName(level).lower(),
                  settings.logging.max_bytes, settings.logging.backups, console=False)
    summary = ingest_files(settings, paths, files, date, show_progress=sys.stderr.isatty())
    print(summary.line())
    return 1 if summary.errors else 0
