"""The recorder: camera + microphone (or a file played as if live) into clips on disk.

Threads: the camera's reader, the microphone's worker (behind PortAudio's callback) or the
file player push into one queue; the segmenter thread takes from it, watches the pause
switch and cuts clips; the writer thread writes them (an encode takes ~0.2 s, which must
not hold up the cutting). `wm record` runs one in the foreground; `wm run` keeps one
running inside the daemon."""
from __future__ import annotations

import queue
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from wm.base import log
from wm.base.atomic import PARTIAL
from wm.base.clipids import clip_id, local_date
from wm.base.errors import WmError
from wm.base.manifest import FINAL, Manifest, Source
from wm.base.paths import Paths
from wm.base.signals import StopFlag, stop_on_signals
from wm.capture.camera import OFF, Camera, disabled, open_error
from wm.capture.pause import is_paused
from wm.capture.segmenter import Cut, Segmenter
from wm.capture.writer import ClipMedia, write_clip

PAUSE_CHECK_SECONDS = 0.5
QUEUE_LIMIT = 2000   # ~40 s of frames and blocks: a segmenter that far behind is stuck
# A .partial file untouched this long belongs to a write that died (every write finishes
# in well under a second); a fresher one may be an ingest child's write in progress (the
# daemon restarts its recorder on a config reload while ingest runs beside it).
STALE_PARTIAL_SECONDS = 2.0


@dataclass
class RecorderHealth:
    camera: str            # "ok" | "reopening" | "off" | "paused"
    microphone: str
    last_clip_end: float | None    # wall time (time.time()) of the end of the last clip written
    last_progress: float | None    # time.monotonic() when a frame or audio block last arrived
    clips_written: int
    paused: bool
    disk_low: bool


@dataclass
class RecorderStats:
    """Counters for benchmarks and tests (not part of the daemon contract)."""
    samples: int               # audio samples received
    samples_lost: int          # overflow holes, late or dropped blocks
    overflows: int             # PortAudio input overflows
    frames_grabbed: int        # frames read from the camera (full rate)
    frames_kept: int           # frames decoded for the clip's rate
    frames_dropped: int        # kept frames that reached no clip (late or queue full)
    clips_written: int
    emission_delays: list[float] = field(default_factory=list)  # seconds after each clip's end


class Recorder:
    def __init__(self, settings, paths: Paths, camera: str | None = None,
                 microphone: str | None = None, source_file: Path | None = None,
                 speed: float = 1.0,
                 on_clip: Callable[[Manifest, Path], None] | None = None):
        self.settings, self.paths, self.c = settings, paths, settings.capture
        self.camera_spec = self.c.camera if camera is None else str(camera)
        self.mic_spec = self.c.microphone if microphone is None else str(microphone)
        self.source_file = Path(source_file) if source_file is not None else None
        self.speed = speed
        self.on_clip = on_clip
        self.log = log.get("wm.capture.recorder")
        self.cam: Camera | None = None
        self.mic = None
        self.file = None
        self.seg: Segmenter | None = None
        self.events: queue.Queue = queue.Queue(QUEUE_LIMIT)
        self.writes: queue.Queue = queue.Queue()
        self.paused = False
        self.disk_low = False
        self.clips_written = 0
        self.last_clip_end: float | None = None
        self.last_progress: float | None = None
        self.delays: list[float] = []
        self._dropped_samples = 0
        self._dropped_frames = 0
        self._audio_dropped = False
        self._recent_ids: deque[str] = deque(maxlen=64)
        self._file_started = False
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Open the sources and start recording. WmError when nothing can be recorded
        (listing the devices found), or the file cannot be played."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        stale = remove_stale_partials(self.paths)
        if stale:
            self.log.warning("stale_partials_removed", count=len(stale))
        self.paused = is_paused(self.paths)
        c = self.c
        if self.source_file is not None:
            from wm.capture.filesource import FileSource

            self.file = FileSource(self.source_file, speed=self.speed, rate=c.sample_rate,
                                   width=c.video_width, height=c.video_height, fps=c.video_fps,
                                   on_frame=self._on_frame, on_audio=self._on_audio)
            self.file.open()
            expect_audio, expect_video = self.file.has_audio, self.file.has_video
            clock, to_wall, watermark = self.file.clock, self.file.to_wall, True
        else:
            self._make_devices()
            if not self.paused:
                self._open_devices_now()
            expect_audio, expect_video = self.mic is not None, self.cam is not None
            clock, watermark = time.monotonic, False
            to_wall = lambda t: time.time() - (time.monotonic() - t)  # noqa: E731
        self._clock = clock
        self.seg = Segmenter(clip_seconds=c.clip_seconds, sample_rate=c.sample_rate,
                             video_fps=c.video_fps, frame_rate=c.frame_rate,
                             size=(c.video_width, c.video_height), expect_audio=expect_audio,
                             expect_video=expect_video, to_wall=to_wall, watermark=watermark)
        if not self.paused or self.file is not None:  # a file plays on while paused, like the world
            self._start_sources()
        for target, name in ((self._loop, "wm-segmenter"), (self._writer, "wm-writer")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self.log.info("recorder_started", camera=self._camera_name(), microphone=self._mic_name(),
                      paused=self.paused)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: the clip in flight is finished (short, flagged final), everything queued is
        written, the sources are closed."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self.log.error("recorder_stop_timeout", timeout=timeout)
        self._threads = []

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the recording is over (a file source played to its end, or stop());
        True if it is."""
        return self._done.wait(timeout)

    def health(self) -> RecorderHealth:
        return RecorderHealth(camera=self._state("video"), microphone=self._state("audio"),
                              last_clip_end=self.last_clip_end, last_progress=self.last_progress,
                              clips_written=self.clips_written, paused=self.paused,
                              disk_low=self.disk_low)

    def stats(self) -> RecorderStats:
        counters = self.seg.counters if self.seg else None
        lost = (counters.samples_lost if counters else 0) + self._dropped_samples
        return RecorderStats(
            samples=counters.samples if counters else 0, samples_lost=lost,
            overflows=self.mic.overflows if self.mic else 0,
            frames_grabbed=self.cam.grabbed if self.cam else 0,
            frames_kept=self.cam.kept if self.cam else (counters.frames if counters else 0),
            frames_dropped=(counters.frames_late if counters else 0) + self._dropped_frames,
            clips_written=self.clips_written, emission_delays=list(self.delays))

    # -- sources -----------------------------------------------------------------------

    def _make_devices(self) -> None:
        c = self.c
        if disabled(self.camera_spec) and disabled(self.mic_spec):
            raise WmError("nothing to record: camera and microphone are both switched off")
        if not disabled(self.camera_spec):
            self.cam = Camera(self.camera_spec, width=c.video_width, height=c.video_height,
                              fps=c.video_fps, stall_seconds=c.stall_seconds,
                              reopen_max_seconds=c.reopen_max_seconds, on_frame=self._on_frame,
                              on_state=lambda t, r: self._on_state("video", t, r))
        if not disabled(self.mic_spec):
            from wm.capture.microphone import Microphone

            self.mic = Microphone(self.mic_spec, rate=c.sample_rate, stall_seconds=c.stall_seconds,
                                  reopen_max_seconds=c.reopen_max_seconds, on_audio=self._on_audio,
                                  on_state=lambda t, r: self._on_state("audio", t, r))

    def _open_devices_now(self) -> None:
        """One attempt at each device; the one that fails is retried in the background,
        unless neither opens: then say what is there."""
        problems, opened = [], []
        if self.cam is not None:
            if self.cam.open():
                opened.append("camera")
            else:
                problems.append(open_error(self.cam.spec))
        if self.mic is not None:
            try:
                self.mic.open()
                opened.append("microphone")
            except WmError as e:
                if "PortAudio" in str(e):  # not coming back by retrying: record without it
                    if not opened:
                        raise
                    self.log.warning("microphone_unavailable", problem=str(e))
                    self.mic = None
                else:
                    problems.append(str(e))
        if not opened:
            from wm.capture.devices import found_summary

            raise WmError(f"nothing to record: {'; '.join(problems)} ({found_summary()}; "
                          "see `wm devices`)")
        for p in problems:
            self.log.warning("device_unavailable", problem=p, retrying=True)

    def _start_sources(self) -> None:
        if self.file is not None:
            if not self._file_started:  # once: it never stops playing
                self._file_started = True
                self.file.start()
            return
        for dev in (self.cam, self.mic):
            if dev is not None:
                dev.start()

    def _stop_sources(self) -> None:
        if self.file is not None:
            return  # a file plays on while paused, like the world; see _handle
        for dev in (self.cam, self.mic):
            if dev is not None:
                dev.stop()

    def _state(self, modality: str) -> str:
        if self.paused:
            return "paused"
        if self.file is not None:
            return self.file.video_state if modality == "video" else self.file.audio_state
        dev = self.cam if modality == "video" else self.mic
        return dev.state if dev is not None else OFF

    def _camera_name(self) -> str:
        if self.file is not None:
            return f"{self.file.path} {self.file.video_stream or '(no video)'}"
        return self.cam.description if self.cam else "off"

    def _mic_name(self) -> str:
        if self.file is not None:
            return f"{self.file.path} {self.file.audio_stream or '(no audio)'}"
        return self.mic.description if self.mic else "off"

    # callbacks from the source threads: queue and return
    def _on_frame(self, t, bgr) -> None:
        try:
            self.events.put_nowait(("f", t, bgr))
        except queue.Full:
            self._dropped_frames += 1

    def _on_audio(self, block, t_end, new_stream, overflow) -> None:
        try:
            # after a dropped block, the next one says so: the segmenter then measures the
            # hole by its time, as after a device overflow
            self.events.put_nowait(("a", block, t_end, new_stream, overflow or self._audio_dropped))
            self._audio_dropped = False
        except queue.Full:
            self._dropped_samples += len(block)
            self._audio_dropped = True

    def _on_state(self, modality, t, reason) -> None:
        self.events.put(("s", modality, t, reason))

    # -- the segmenter thread ------------------------------------------------------------

    def _handle(self, timeout: float) -> None:
        """Feed everything queued to the segmenter (dropped while paused)."""
        block = timeout > 0
        while True:
            try:
                ev = self.events.get(block, timeout) if block else self.events.get_nowait()
            except queue.Empty:
                return
            block = False
            if self.paused:
                continue
            kind = ev[0]
            if kind == "a":
                self.seg.audio(ev[1], ev[2], new_stream=ev[3], overflow=ev[4])
                self.last_progress = time.monotonic()
            elif kind == "f":
                self.seg.frame(ev[1], ev[2])
                self.last_progress = time.monotonic()
            else:
                self.seg.state(ev[1], ev[2], ev[3])

    def _cut_now(self) -> float:
        return self.file.end_time() if self.file is not None else self._clock()

    def _loop(self) -> None:
        next_check = 0.0
        try:
            while not self._stopping.is_set():
                self._handle(0.05)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + PAUSE_CHECK_SECONDS
                    self._check_pause()
                if self.file is not None and self.file.finished.is_set():
                    break
                for cut in self.seg.poll(self._clock()):
                    self.writes.put(cut)
            if self.file is not None:
                self.file.stop()
            self._stop_sources()
            self._handle(0)
            if not self.paused:
                for cut in self.seg.finish(self._cut_now(), [FINAL]):
                    self.writes.put(cut)
        except Exception as e:
            self.log.error("segmenter_failed", error=repr(e), exc_info=True)
            self._stop_sources()
        finally:
            self.writes.put(None)

    def _check_pause(self) -> None:
        paused = is_paused(self.paths)
        if paused and not self.paused:
            self._stop_sources()
            self._handle(0)
            for cut in self.seg.finish(self._cut_now(), [], tail_reason="paused"):
                self.writes.put(cut)
            self.paused = True
            self.log.info("recording_paused")
        elif not paused and self.paused:
            self.paused = False
            self._start_sources()
            self.log.info("recording_resumed")

    # -- the writer thread -----------------------------------------------------------------

    def _writer(self) -> None:
        try:
            while True:
                cut = self.writes.get()
                if cut is None:
                    return
                try:
                    self._write(cut)
                except Exception as e:  # one clip lost, not the recorder
                    self.log.error("clip_write_failed", error=repr(e), exc_info=True)
        finally:
            self.log.info("recorder_stopped", clips=self.clips_written)
            self._done.set()

    def _disk_ok(self) -> bool:
        free = shutil.disk_usage(self.paths.root).free
        low = free < self.settings.retention.min_free_gb * 1e9
        if low != self.disk_low:
            self.disk_low = low
            if low:
                self.log.warning("disk_low_recording_suspended", free_gb=round(free / 1e9, 2),
                                 min_free_gb=self.settings.retention.min_free_gb)
            else:
                self.log.info("disk_ok_recording_resumed", free_gb=round(free / 1e9, 2))
        return not low

    def _unique_id(self, start: datetime, date: str) -> str:
        suffix = 0
        while True:
            cid = clip_id(start, suffix)
            if cid not in self._recent_ids and not self.paths.manifest(date, cid).exists():
                self._recent_ids.append(cid)
                return cid
            suffix += 1

    def _source(self, cut: Cut) -> Source:
        if self.file is not None:
            return Source(kind="file", name=str(self.file.path), offset=round(cut.source_time, 6),
                          video_stream=self.file.video_stream, audio_stream=self.file.audio_stream)
        return Source(kind="live", name=f"camera {self.camera_spec}, microphone {self.mic_spec}",
                      offset=0.0, video_stream=self.cam.description if self.cam else None,
                      audio_stream=self.mic.description if self.mic else None)

    def _write(self, cut: Cut) -> None:
        if not self._disk_ok():
            return
        c = self.c
        start = datetime.fromtimestamp(cut.start, timezone.utc)
        date = local_date(start)
        cid = self._unique_id(start, date)
        media = ClipMedia(cid=cid, date=date, start=start, duration=cut.duration, audio=cut.audio,
                          video=cut.video, stills=cut.stills, source=self._source(cut),
                          gaps=cut.gaps, flags=cut.flags)
        manifest = write_clip(self.paths, media, clip_seconds=c.clip_seconds,
                              sample_rate=c.sample_rate, video_fps=c.video_fps,
                              jpeg_quality=c.jpeg_quality)
        end = cut.source_time + cut.duration
        now = self.file.playhead() if self.file is not None else time.monotonic()
        self.delays.append((now - end) / self.speed)
        self.clips_written += 1
        self.last_clip_end = cut.start + cut.duration
        self.log.debug("clip_written", clip=cid, date=date, duration=cut.duration,
                       gaps=len(cut.gaps), flags=cut.flags)
        if self.on_clip is not None:
            try:
                self.on_clip(manifest, self.paths.manifest(date, cid))
            except Exception as e:
                self.log.error("on_clip_failed", clip=cid, error=repr(e), exc_info=True)


def remove_stale_partials(paths: Paths, now: float | None = None) -> list[Path]:
    """Delete the `.partial` files a crash left behind (see STALE_PARTIAL_SECONDS)."""
    now = time.time() if now is None else now
    removed = []
    for folder in paths.media_dirs():
        for p in folder.rglob(f"*{PARTIAL}") if folder.exists() else []:
            try:
                if now - p.stat().st_mtime >= STALE_PARTIAL_SECONDS:
                    p.unlink()
                    removed.append(p)
            except FileNotFoundError:  # its writer just finished it
                pass
    return removed


def run_record(settings, paths, duration, camera, microphone) -> int:
    """`wm record`: record until Ctrl-C / SIGTERM or for `duration` seconds, then stop
    cleanly (the clip in flight is written, short and flagged final)."""
    from wm.base.progress import Progress

    rec = Recorder(settings, paths, camera=camera, microphone=microphone)
    stop = StopFlag()
    progress = None
    with stop_on_signals(stop):
        try:
            rec.start()
            print(f"wm: recording into {paths.data} (camera: {rec._camera_name()}, "
                  f"microphone: {rec._mic_name()}); Ctrl-C to stop", flush=True)
            began = time.monotonic()
            if duration:
                progress = Progress(duration, "recording", unit="s")
            while not stop.event.wait(0.25):
                elapsed = time.monotonic() - began
                if progress is not None:
                    h = rec.health()
                    progress.update(min(elapsed, duration) - progress.done,
                                    postfix=f"{h.clips_written} clips, camera {h.camera}, mic {h.microphone}")
                if duration and elapsed >= duration:
                    break
                if rec.wait(0):
                    break
        finally:
            rec.stop()
            if progress is not None:
                progress.close()
    h = rec.health()
    print(f"wm: stopped; {h.clips_written} clips written under {paths.data}")
    return 0
