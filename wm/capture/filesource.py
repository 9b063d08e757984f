"""A media file played as if it were live: its video as the camera, its audio as the
microphone, at `speed` times real time. The demo and the daemon tests record from it where
there is no camera.

Everything it delivers is stamped with its time in the file (seconds), and its clock
runs at `speed` from when playback started, so the segmenter cuts it exactly as it cuts
a live stream. Samples are placed by their timestamps (an AAC stream may start before or
after the video), then counted on contiguously."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import av
import numpy as np

from wm.base import log
from wm.base.errors import WmError
from wm.capture import segments
from wm.capture.camera import OFF, OK, fit


class FileSource:
    def __init__(self, path: Path, *, speed: float, rate: int, width: int, height: int,
                 fps: int, on_frame: Callable[[float, np.ndarray], None],
                 on_audio: Callable[[np.ndarray, float, bool, bool], None]):
        if speed <= 0:
            raise WmError(f"speed must be positive, got {speed}")
        self.path = Path(path)
        self.speed = speed
        self.rate, self.width, self.height, self.period = rate, width, height, 1.0 / fps
        self.on_frame, self.on_audio = on_frame, on_audio
        self.finished = threading.Event()
        self._last: dict[str, float] = {}   # "audio"/"video" -> file time last delivered
        self.video_state = self.audio_state = OFF
        self.video_stream: str | None = None
        self.audio_stream: str | None = None
        self.log = log.get("wm.capture.file").bind(file=str(self.path))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._container = None
        self._t0 = 0.0
        self._start_mono = 0.0
        self._start_wall = 0.0

    @property
    def has_video(self) -> bool:
        return self.video_stream is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_stream is not None

    def open(self) -> None:
        if not self.path.is_file():
            raise WmError(f"{self.path}: no such file")
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as e:
            raise WmError(f"{self.path}: cannot be read as media ({e})") from None
        c = self._container
        self._vs = max(c.streams.video, key=lambda s: (s.width or 0) * (s.height or 0), default=None)
        self._as = max(c.streams.audio, key=lambda s: s.sample_rate or 0, default=None)
        if self._vs is None and self._as is None:
            c.close()
            raise WmError(f"{self.path}: has neither video nor audio")
        if self._vs is not None:
            self._vs.thread_type = "AUTO"
            self.video_stream = f"#{self._vs.index} {self._vs.codec_context.name} {self._vs.width}x{self._vs.height}"
        if self._as is not None:
            self.audio_stream = f"#{self._as.index} {self._as.codec_context.name} {self._as.sample_rate} Hz"
        starts = [float(s.start_time * s.time_base) for s in (self._vs, self._as)
                  if s is not None and s.start_time is not None]
        self._t0 = min(starts, default=0.0)

    def clock(self) -> float:
        """File time up to which every stream has been delivered (decoding interleaves the
        streams up to a second apart, so the playhead alone would cut clips early)."""
        return min(self._last.values(), default=self._t0)

    def end_time(self) -> float:
        """File time of the last thing delivered (when finished: where the file ends)."""
        return max(self._last.values(), default=self._t0)

    def playhead(self) -> float:
        """Where playback is now, in file seconds."""
        return self._t0 + (time.monotonic() - self._start_mono) * self.speed

    def to_wall(self, t: float) -> float:
        """Clips are dated as if the file were being recorded from the moment play began."""
        return self._start_wall + (t - self._t0)

    def start(self) -> None:
        self._start_mono, self._start_wall = time.monotonic(), time.time()
        self._thread = threading.Thread(target=self._run, name="wm-filesource", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _wait_until(self, t: float) -> bool:
        """Sleep until file time t is due; False when stopped meanwhile."""
        delay = self._start_mono + (t - self._t0) / self.speed - time.monotonic()
        return not (delay > 0 and self._stop.wait(delay))

    def _run(self) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
        audio_t0, audio_n, due = None, 0, None
        streams = [s for s in (self._vs, self._as) if s is not None]
        self.video_state = OK if self._vs is not None else OFF
        self.audio_state = OK if self._as is not None else OFF
        self._last = {k: self._t0 for k, s in (("video", self._vs), ("audio", self._as)) if s}

        def deliver_audio(frames) -> bool:
            nonlocal audio_n
            for of in frames:
                block = of.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                if not len(block):
                    continue
                t_end = audio_t0 + (audio_n + len(block)) / self.rate
                if not self._wait_until(t_end):
                    return False
                self.on_audio(block, t_end, audio_n == 0, False)
                audio_n += len(block)
                self._last["audio"] = t_end
            return True

        try:
            for packet in self._container.demux(streams):
                for frame in packet.decode():
                    if self._stop.is_set():
                        return
                    if packet.stream is self._as:
                        if audio_t0 is None:
                            audio_t0 = float(frame.time) if frame.time is not None else self._t0
                        if not deliver_audio(resampler.resample(frame)):
                            return
                    else:
                        t = float(frame.time) if frame.time is not None else self._last["video"]
                        keep, due = segments.decimate(t, due, self.period)
                        if not keep:
                            continue
                        bgr = fit(frame.to_ndarray(format="bgr24"), self.width, self.height)
                        if not self._wait_until(t):
                            return
                        self.on_frame(t, bgr)
                        self._last["video"] = t
            if audio_t0 is not None:
                deliver_audio(resampler.resample(None))
        except av.FFmpegError as e:  # a damaged tail: what was read so far still counts
            self.log.warning("file_read_error", error=str(e))
        finally:
            self._container.close()
            self.video_state = self.audio_state = OFF
            self.log.info("file_source_ended", seconds=round(self.end_time() - self._t0, 3))
            self.finished.set()
