"""What a recorder records from: a camera and a microphone, or a media file played as both.
Opening them (and saying what is there when nothing opens), starting and stopping them,
and describing them for the log, the health report and the manifests."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wm.base.errors import WmError
from wm.base.manifest import Source
from wm.base.redact import camera_url, redact
from wm.capture.camera import OFF, Camera, disabled, open_error
from wm.capture.events import Cut


@dataclass(frozen=True)
class Timing:
    """How the segmenter reads the sources' times."""
    expect_audio: bool
    expect_video: bool
    clock: Callable[[], float]           # source time now
    to_wall: Callable[[float], float]    # source time -> epoch seconds
    # a file's clock is a watermark: everything before it has been delivered
    watermark: bool


def _live_to_wall(t: float) -> float:
    return time.time() - (time.monotonic() - t)


class Sources:
    """`on_state(modality, t, reason)` is called when a device goes down or comes back."""

    def __init__(self, capture, camera_spec: str, mic_spec: str, source_file: Path | None,
                 speed: float, on_frame: Callable, on_audio: Callable,
                 on_state: Callable[[str, float, str | None], None], logger):
        self.c = capture
        self.camera_spec, self.mic_spec = camera_spec, mic_spec
        self.source_file, self.speed = source_file, speed
        self.on_frame, self.on_audio, self.on_state = on_frame, on_audio, on_state
        self.log = logger
        self.cam: Camera | None = None
        self.mic = None
        self.file = None
        self._file_started = False

    def open(self, paused: bool) -> Timing:
        """Open the file, or the devices (at once unless paused). WmError when nothing can
        be recorded (listing the devices found), or the file cannot be played."""
        if self.source_file is not None:
            return self._open_file()
        self._make_devices()
        if not paused:
            self._open_devices_now()
        return Timing(expect_audio=self.mic is not None, expect_video=self.cam is not None,
                      clock=time.monotonic, to_wall=_live_to_wall, watermark=False)

    def _open_file(self) -> Timing:
        from wm.capture.filesource import FileSource

        c = self.c
        self.file = FileSource(self.source_file, speed=self.speed, rate=c.sample_rate,
                               width=c.video_width, height=c.video_height, fps=c.video_fps,
                               on_frame=self.on_frame, on_audio=self.on_audio)
        self.file.open()
        return Timing(expect_audio=self.file.has_audio, expect_video=self.file.has_video,
                      clock=self.file.clock, to_wall=self.file.to_wall, watermark=True)

    def _make_devices(self) -> None:
        c = self.c
        if disabled(self.camera_spec) and disabled(self.mic_spec):
            raise WmError("nothing to record: camera and microphone are both switched off")
        if not disabled(self.camera_spec):
            # the password (from WM_CAMERA_PASSWORD) goes into the URL here, at open
            # time only; the Camera names itself by the redacted URL
            self.cam = Camera(camera_url(self.camera_spec), width=c.video_width,
                              height=c.video_height, fps=c.video_fps, stall_seconds=c.stall_seconds,
                              reopen_max_seconds=c.reopen_max_seconds, on_frame=self.on_frame,
                              on_state=lambda t, r: self.on_state("video", t, r))
        if not disabled(self.mic_spec):
            from wm.capture.microphone import Microphone

            self.mic = Microphone(self.mic_spec, rate=c.sample_rate, stall_seconds=c.stall_seconds,
                                  reopen_max_seconds=c.reopen_max_seconds, on_audio=self.on_audio,
                                  on_state=lambda t, r: self.on_state("audio", t, r))

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

    def _devices(self) -> list:
        return [dev for dev in (self.cam, self.mic) if dev is not None]

    def start(self) -> None:
        if self.file is not None:
            if not self._file_started:  # once: it never stops playing
                self._file_started = True
                self.file.start()
            return
        for dev in self._devices():
            dev.start()

    def stop(self) -> None:
        """Stop the devices. A file has none: it plays on while paused, like the world
        (stop_file ends it)."""
        for dev in self._devices():
            dev.stop()

    def stop_file(self) -> None:
        if self.file is not None:
            self.file.stop()

    def file_finished(self) -> bool:
        return self.file is not None and self.file.finished.is_set()

    def end_time(self) -> float:
        """Source time up to which everything has been delivered, for the last cut."""
        return self.file.end_time() if self.file is not None else time.monotonic()

    def playhead(self) -> float:
        """Source time being played now."""
        return self.file.playhead() if self.file is not None else time.monotonic()

    def state(self, modality: str) -> str:
        if self.file is not None:
            return self.file.video_state if modality == "video" else self.file.audio_state
        dev = self.cam if modality == "video" else self.mic
        return dev.state if dev is not None else OFF

    def camera_name(self) -> str:
        if self.file is not None:
            return f"{self.file.path} {self.file.video_stream or '(no video)'}"
        return self.cam.description if self.cam else "off"

    def mic_name(self) -> str:
        if self.file is not None:
            return f"{self.file.path} {self.file.audio_stream or '(no audio)'}"
        return self.mic.description if self.mic else "off"

    def manifest_source(self, cut: Cut) -> Source:
        """Where a clip came from, for its manifest."""
        if self.file is not None:
            return Source(kind="file", name=str(self.file.path), offset=round(cut.source_time, 6),
                          video_stream=self.file.video_stream, audio_stream=self.file.audio_stream)
        return Source(kind="live",
                      name=f"camera {redact(self.camera_spec)}, microphone {self.mic_spec}",
                      offset=0.0, video_stream=self.cam.description if self.cam else None,
                      audio_stream=self.mic.description if self.mic else None)
