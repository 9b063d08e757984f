"""The recorder: camera + microphone (or a file played as if live) into clips on disk.

Threads: the camera's reader, the microphone's worker (behind PortAudio's callback) or the
file player push into one queue; the segmenter thread takes from it, watches the pause
switch and cuts clips; the writer thread writes them (an encode takes ~0.2 s, which must
not hold up the cutting). `wm record` runs one in the foreground; `wm run` keeps one
running inside the daemon."""
from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from wm.base import log
from wm.base.manifest import FINAL, Manifest
from wm.base.lock import refuse_beside_daemon
from wm.base.paths import Paths
from wm.base.signals import StopFlag, stop_on_signals
from wm.capture.encoder import choose as choose_encoder
from wm.capture.events import AudioBlock, Cut, DeviceState, Event, Frame
from wm.capture.orphans import remove_orphan_media, remove_partials
from wm.capture.pause import is_paused
from wm.capture.segmenter import Segmenter
from wm.capture.sink import ClipSink
from wm.capture.sources import Sources

PAUSE_CHECK_SECONDS = 0.5
QUEUE_LIMIT = 2000   # ~40 s of frames and blocks: a segmenter that far behind is stuck
# A .partial file untouched this long belongs to a write that died (every write finishes
# in well under a second); a fresher one may be an ingest child's write in progress (the
# daemon restarts its recorder on a config reload while ingest runs beside it).
STALE_PARTIAL_SECONDS = 2.0
# A crash leaves its orphan media in the days it was writing: a start looks at the last
# two day folders only (`wm check` looks at all of them).
ORPHAN_DAYS = 2


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
        c = settings.capture
        self.paths, self.c = paths, c
        self.log = log.get("wm.capture.recorder")
        self.sources = Sources(c, c.camera if camera is None else str(camera),
                               c.microphone if microphone is None else str(microphone),
                               Path(source_file) if source_file is not None else None, speed,
                               on_frame=self._on_frame, on_audio=self._on_audio,
                               on_state=self._on_state, logger=self.log)
        self.sink = ClipSink(settings, paths, self.sources, speed, on_clip, self.log)
        self.seg: Segmenter | None = None
        self.events: queue.Queue[Event] = queue.Queue(QUEUE_LIMIT)
        self.writes: queue.Queue[Cut | None] = queue.Queue()
        self.paused = False
        self.last_progress: float | None = None
        self._dropped_samples = 0
        self._dropped_frames = 0
        self._audio_dropped = False
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Open the sources and start recording. WmError when nothing can be recorded
        (listing the devices found), or the file cannot be played."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self._sweep()
        c = self.c
        self.sink.codec = choose_encoder(c.encoder, c.preset, c.crf, self.log,
                                         size=(c.video_width, c.video_height))
        self.paused = is_paused(self.paths)
        timing = self.sources.open(self.paused)
        self._clock = timing.clock
        self.seg = Segmenter(clip_seconds=c.clip_seconds, sample_rate=c.sample_rate,
                             video_fps=c.video_fps, frame_rate=c.frame_rate,
                             size=(c.video_width, c.video_height),
                             expect_audio=timing.expect_audio, expect_video=timing.expect_video,
                             to_wall=timing.to_wall, watermark=timing.watermark)
        # a file plays on while paused, like the world
        if not self.paused or self.sources.file is not None:
            self.sources.start()
        for target, name in ((self._loop, "wm-segmenter"), (self._writer, "wm-writer")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self.log.info("recorder_started", camera=self.sources.camera_name(),
                      microphone=self.sources.mic_name(), paused=self.paused)

    def _sweep(self) -> None:
        """Remove what a crash left: stale `.partial` files, and clip media without a
        manifest (never queued, yet counted against retention.max_gb)."""
        stale = remove_partials(self.paths, min_age=STALE_PARTIAL_SECONDS)
        if stale:
            self.log.warning("stale_partials_removed", count=len(stale))
        orphans = remove_orphan_media(self.paths, days=ORPHAN_DAYS)
        if orphans:
            self.log.warning("orphan_media_removed", count=len(orphans),
                             clips=sorted({o.clip_id for o in orphans})[:20])

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
        sink = self.sink
        return RecorderHealth(camera=self._state("video"), microphone=self._state("audio"),
                              last_clip_end=sink.last_clip_end, last_progress=self.last_progress,
                              clips_written=sink.clips_written, paused=self.paused,
                              disk_low=sink.disk_low)

    def stats(self) -> RecorderStats:
        counters = self.seg.counters if self.seg else None
        cam, mic = self.sources.cam, self.sources.mic
        lost = (counters.samples_lost if counters else 0) + self._dropped_samples
        return RecorderStats(
            samples=counters.samples if counters else 0, samples_lost=lost,
            overflows=mic.overflows if mic else 0,
            frames_grabbed=cam.grabbed if cam else 0,
            frames_kept=cam.kept if cam else (counters.frames if counters else 0),
            frames_dropped=(counters.frames_late if counters else 0) + self._dropped_frames,
            clips_written=self.sink.clips_written, emission_delays=list(self.sink.delays))

    def _state(self, modality: str) -> str:
        return "paused" if self.paused else self.sources.state(modality)

    # -- callbacks from the source threads: queue and return ---------------------------

    def _on_frame(self, t, bgr) -> None:
        try:
            self.events.put_nowait(Frame(t, bgr))
        except queue.Full:
            self._dropped_frames += 1

    def _on_audio(self, block, t_end, new_stream, overflow) -> None:
        try:
            # after a dropped block, the next one says so: the segmenter then measures the
            # hole by its time, as after a device overflow
            self.events.put_nowait(AudioBlock(block, t_end, new_stream,
                                              overflow or self._audio_dropped))
            self._audio_dropped = False
        except queue.Full:
            self._dropped_samples += len(block)
            self._audio_dropped = True

    def _on_state(self, modality, t, reason) -> None:
        self.events.put(DeviceState(modality, t, reason))

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
            match ev:
                case AudioBlock():
                    self.seg.audio(ev.block, ev.t_end, new_stream=ev.new_stream,
                                   overflow=ev.overflow)
                    self.last_progress = time.monotonic()
                case Frame():
                    self.seg.frame(ev.t, ev.bgr)
                    self.last_progress = time.monotonic()
                case DeviceState():
                    self.seg.state(ev.modality, ev.t, ev.reason)

    def _emit(self, cuts: list[Cut]) -> None:
        for cut in cuts:
            self.writes.put(cut)

    def _loop(self) -> None:
        next_check = 0.0
        try:
            while not self._stopping.is_set():
                self._handle(0.05)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + PAUSE_CHECK_SECONDS
                    self._check_pause()
                if self.sources.file_finished():
                    break
                self._emit(self.seg.poll(self._clock()))
            self.sources.stop_file()
            self.sources.stop()
            self._handle(0)
            if not self.paused:
                cuts = self.seg.finish(self.sources.end_time(), [FINAL])
                if self.seg.tail_dropped is not None:
                    self.log.info("recording_ended_on_boundary",
                                  tail_dropped_s=round(self.seg.tail_dropped, 3))
                self._emit(cuts)
        except Exception as e:
            self.log.error("segmenter_failed", error=repr(e), exc_info=True)
            self.sources.stop()
        finally:
            self.writes.put(None)

    def _check_pause(self) -> None:
        paused = is_paused(self.paths)
        if paused and not self.paused:
            self.sources.stop()
            self._handle(0)
            self._emit(self.seg.finish(self.sources.end_time(), [], tail_reason="paused"))
            self.paused = True
            self.log.info("recording_paused")
        elif not paused and self.paused:
            self.paused = False
            self.sources.start()
            self.log.info("recording_resumed")

    # -- the writer thread -----------------------------------------------------------------

    def _writer(self) -> None:
        try:
            while True:
                cut = self.writes.get()
                if cut is None:
                    return
                try:
                    self.sink.write(cut)
                except Exception as e:  # one clip lost, not the recorder
                    self.log.error("clip_write_failed", error=repr(e), exc_info=True)
        finally:
            self.log.info("recorder_stopped", clips=self.sink.clips_written)
            self._done.set()


def run_record(settings, paths, duration, camera, microphone) -> int:
    """`wm record`: record until Ctrl-C / SIGTERM or for `duration` seconds, then stop
    cleanly (the clip in flight is written, short and flagged final)."""
    from wm.base.progress import Progress
    from wm.base.redact import PASSWORD_ENV, has_secret

    refuse_beside_daemon(paths.lock_file, "wm record")
    if camera is not None and has_secret(camera):
        # the command line shows in `ps` to every user of the machine
        print(f"wm: warning: the password in --camera is visible to other users in `ps`; "
              f"give rtsp://user@host/... and put the password in {PASSWORD_ENV} or in "
              "capture.camera in the settings file", file=sys.stderr, flush=True)
    rec = Recorder(settings, paths, camera=camera, microphone=microphone)
    stop = StopFlag()
    progress = None
    with stop_on_signals(stop):
        try:
            rec.start()
            print(f"wm: recording into {paths.data} (camera: {rec.sources.camera_name()}, "
                  f"microphone: {rec.sources.mic_name()}); Ctrl-C to stop", flush=True)
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
