"""One file into clips, in one pass: PyAV demuxes the chosen video and audio streams, the
parts place their frames on the clip timeline, and a clip goes to a writer thread as soon
as both streams have passed its end, so the encoder of clip k runs while clip k+1 is
being decoded."""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import av
import numpy as np

from wm.base import log
from wm.base.clipids import local_date, on_date
from wm.base.config import Settings
from wm.base.manifest import FINAL, PADDED, Gap
from wm.base.paths import Paths
from wm.base.progress import Progress
from wm.capture.diskfloor import DiskLow
from wm.capture.ingest.audio import AudioPart
from wm.capture.ingest.index import FileId, claim_id, earlier_zero, note_start
from wm.capture.ingest.probe import BadMedia, Probe, open_media, probe, why
from wm.capture.ingest.timeline import StartWait
from wm.capture.ingest.video import VideoPart
from wm.capture.ingest.writes import Writes
from wm.capture.segments import Segment, segments
from wm.capture.writer import ClipMedia

PENDING_SECONDS = 1.0      # how long to wait for the other stream's first frame
STILL_WRITTEN = ("still being written: it changed while it was read; ingest it again once "
                 "it is complete")
TRUNCATION_SLACK = 1.0     # s: decoded content this much shorter than the header says: truncated


class StoppedLow(DiskLow):
    """The disk fell under its floor in the middle of a file: `clips` whole clips of it
    (`seconds` of content) were written before the ingest stopped."""

    def __init__(self, message: str, clips: int, seconds: float):
        super().__init__(message)
        self.clips, self.seconds = clips, seconds


@dataclass
class FileResult:
    clips: int = 0
    seconds: float = 0.0
    dropped: float = 0.0
    first: tuple[str, str] | None = None   # (date, id) of the file's first clip
    problem: str | None = None   # the file was only partly readable (clips so far are kept)


def ingest_file(settings: Settings, paths: Paths, path: Path, date: str | None, fid: FileId,
                pool: ThreadPoolExecutor, reserved: set,
                progress: Progress | None) -> FileResult:
    """Cut one file into clips (with `date`, moved onto that local day); BadMedia when it
    cannot be read at all, or is still being written (it changed since `fid` was taken)."""
    logger = log.get("wm.ingest").bind(file=str(path))
    container = open_media(path)
    writes = Writes(pool, paths, settings.capture, settings.retention.min_free_gb, reserved,
                    logger)
    try:
        with container:
            found = probe(container, path, fid.fingerprint, fid.head, logger)
            if fid.changed(path):
                raise BadMedia(STILL_WRITTEN)
            job = _FileIngest(settings.capture, paths, path, date, found, writes, reserved,
                              progress, logger, fid)
            job.decode(container)
            job.finish()
        writes.drain()
    except DiskLow as e:
        writes.abandon()
        raise StoppedLow(str(e), writes.clips, writes.seconds) from None
    except BaseException:
        writes.abandon()
        raise
    job.result.clips, job.result.seconds = writes.clips, writes.seconds
    return job.result


class _FileIngest:
    """The decoding of one open file: frames go to its video and audio parts (None where
    the file has no such stream) and every clip both have passed is cut and written."""

    def __init__(self, cap, paths: Paths, path: Path, date: str | None, found: Probe,
                 writes: Writes, reserved: set, progress: Progress | None, logger,
                 fid: FileId):
        self.cap, self.paths, self.path, self.date, self.found = cap, paths, path, date, found
        self.fid = fid
        self.writes, self.reserved, self.progress, self.log = writes, reserved, progress, logger
        self.result = FileResult()
        self.video = VideoPart(found.video, cap) if found.video is not None else None
        self.audio = AudioPart(cap) if found.audio is not None else None
        self.parts = [p for p in (self.video, self.audio) if p is not None]
        self.wait = StartWait(len(self.parts), PENDING_SECONDS)
        self.t0: float | None = None   # container seconds of timeline zero, once known
        self._wall_zero = None         # the wall time of timeline zero, once t0 is known
        self.decode_errors = 0
        self.held: ClipMedia | None = None     # built, waiting to learn whether it is the last
        self.next_clip = 0

    def decode(self, container) -> None:
        demux = container.demux(*self.found.chosen)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as e:   # the container itself breaks off
                self.result.problem = f"unreadable after {self._position():.1f} s ({why(e)})"
                for s in self.found.chosen:
                    self._frames(s, None)
                break
            self._frames(packet.stream, packet)
            self._emit_ready()

    def _frames(self, stream, packet) -> None:
        if packet is not None and stream is self.found.video:
            self.video.skip_unneeded(packet, self.t0)
        try:
            frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
        except av.error.FFmpegError as e:
            self.decode_errors += 1
            if self.decode_errors == 1:
                self.log.warning("decode_error", stream=stream.index, error=why(e))
            return
        part = self.video if stream is self.found.video else self.audio
        for frame in frames:
            self._feed(part, frame)
        if packet is not None and packet.size == 0:   # the demuxer's flush packet: stream over
            part.done = True

    def _feed(self, part, frame) -> None:
        if self.t0 is None:
            if self.wait.hold(part, frame):
                self._fix_zero()
            return
        part.place(frame, self.t0)

    def _fix_zero(self) -> None:
        self.t0 = self.wait.zero()
        for part, frame in self.wait.release():
            self._feed(part, frame)

    def _position(self) -> float:
        """Seconds of the timeline decoded so far."""
        return max(p.position for p in self.parts)

    def _emit_ready(self) -> None:
        if self.t0 is None or all(p.done for p in self.parts):
            return
        cs = self.cap.clip_seconds
        while all(p.ready(self.next_clip) for p in self.parts):
            k = self.next_clip
            self._emit(Segment(k, float(k * cs), float(cs), False))

    def finish(self) -> None:
        if self.t0 is None:
            if not self.wait.frames:
                raise BadMedia(self.result.problem or
                               f"no decodable audio or video ({self.decode_errors} bad packets)")
            self._fix_zero()
        for part in self.parts:
            part.done = True
        if self.audio is not None:
            self.audio.flush()
        total = self._position()
        for seg in self._last_segments(total):
            self._emit(seg)
        self._drop_last_if_growing()
        if self.held is not None:
            self.held.flags.append(FINAL)
            self.writes.submit(self.held)
            self.held = None
        if self.decode_errors:
            self.log.warning("decode_errors", packets=self.decode_errors)
        self._check_length(total)

    def _drop_last_if_growing(self) -> None:
        """A file that grew while it was read: its last clip is not its last, and may be
        short, so it is not written; the clips before it are whole (a later ingest of the
        finished file keeps them and adds the rest)."""
        if self.fid.changed(self.path):
            self.log.warning("still_being_written", dropped=self.held.cid if self.held else None)
            self.result.problem = STILL_WRITTEN
            self.held = None

    def _last_segments(self, total: float) -> list[Segment]:
        """The segments of a `total`-second timeline not yet emitted; notes (and logs) the
        final remainder too short for a clip."""
        segs = segments(total, self.cap.clip_seconds, self.cap.min_tail_seconds)
        covered = segs[-1].start + segs[-1].duration if segs else 0.0
        self.result.dropped = max(0.0, total - covered)
        if self.result.dropped >= 0.05:   # less is codec padding, not content
            self.log.info("tail_dropped", seconds=round(self.result.dropped, 3),
                          min_tail_seconds=self.cap.min_tail_seconds)
        return segs[self.next_clip:]

    def _check_length(self, total: float) -> None:
        header = self.found.header_seconds
        if header and self.result.problem is None and (
                total < header - max(TRUNCATION_SLACK, 0.02 * header)):
            self.result.problem = f"truncated: media ends at {total:.1f} s of {header:.1f} s"

    def _emit(self, seg: Segment) -> None:
        self.next_clip = seg.index + 1
        if self.video is not None:
            self.video.settle(seg)
        if self.held is not None:   # a later segment exists: the held clip is not the last
            self.writes.submit(self.held)
        self.held = self._build(seg)
        if self.progress is not None:
            self.progress.update(seg.duration, postfix=self.path.name)

    def _build(self, seg: Segment) -> ClipMedia | None:
        video, stills, gaps = self.video.cut(seg) if self.video is not None else ([], [], [])
        audio = None
        if self.audio is not None:
            audio, audio_gaps = self.audio.cut(seg)
            gaps += audio_gaps
        if not video and audio is None:
            self.log.info("clip_empty", offset=round(self.t0 + seg.start, 3))
            return None
        return self._clip(seg, video, stills, audio, gaps)

    def _zero(self):
        """The wall time of timeline zero: the one an earlier ingest of this file (before
        it grew) used, else the recording's own. With --date, moved onto that local day
        at the same local time of day: a clip's day and its time always agree (a
        recording that runs past midnight goes on into the next day)."""
        if self._wall_zero is None:
            zero = earlier_zero(self.paths, self.found.source)
            if zero is None:
                zero = self.found.wall_zero + timedelta(seconds=self.t0)
                note_start(self.paths, self.found.source, zero)
            self._wall_zero = on_date(zero, self.date) if self.date else zero
        return self._wall_zero

    def _clip(self, seg: Segment, video: list, stills: list, audio: np.ndarray | None,
              gaps: list[Gap]) -> ClipMedia | None:
        """The clip of `seg` under a fresh id; None when it is already on disk (from an
        interrupted earlier run)."""
        offset = round(self.t0 + seg.start, 6)
        start = self._zero() + timedelta(seconds=seg.start)
        date = local_date(start)
        source = self.found.source
        cid, there = claim_id(self.paths, self.reserved, source, date, start, offset)
        if self.result.first is None:
            self.result.first = (date, cid)
        if there:
            return None
        return ClipMedia(cid=cid, date=date, start=start, duration=seg.duration, audio=audio,
                         video=video, stills=stills,
                         source=dataclasses.replace(source, offset=offset), gaps=gaps,
                         flags=[PADDED] if seg.padded else [])
