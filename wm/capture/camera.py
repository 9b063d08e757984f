"""The camera: a device index or a file (through OpenCV) or an RTSP or HTTP MJPEG URL
(through PyAV: wm.capture.avcamera says why) read by one thread that keeps up with it.

The reader grabs every frame as it comes (so nothing stale piles up in a buffer), stamps
it with time.monotonic() when read (a live stream's own timestamps are synthetic), and
decodes and downsizes only the frames kept for the clip's rate. A source that fails,
stalls (no frame within stall_seconds) or disappears is reopened with back-off; each
change of state is one log line (and a loss one `on_state` call)."""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable

import numpy as np

from wm.base import log
from wm.base.redact import redact
from wm.capture import segments
from wm.capture.avcamera import CvStream, Stream, open_av

# FFmpeg prints connection errors itself; the state changes are logged here instead.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2  # noqa: E402

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

OK, REOPENING, OFF = "ok", "reopening", "off"
FIRST_BACKOFF = 0.5


def disabled(spec: str | None) -> bool:
    """`none`, `off` or an empty string switch the device off."""
    return spec is None or spec.strip().lower() in ("", "none", "off")


def fit(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale a frame to width x height keeping its shape: the leftover is black bars, so
    nothing is cut off and nothing is stretched."""
    h, w = bgr.shape[:2]
    if (w, h) == (width, height):
        return bgr
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if (nw, nh) == (width, height):
        return small
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = small
    return out


def backoff(attempt: int, ceiling: float) -> float:
    """Seconds to wait before reopen attempt `attempt` (0, 1, ...): doubling, capped."""
    return min(FIRST_BACKOFF * 2 ** attempt, ceiling)


class DeviceReader:
    """What the camera and the microphone share: a reader thread of its own and a state
    (ok / reopening / off) that is logged and reported when it changes. Subclasses give
    `kind`, `description`, `log`, `on_state` and `_run(stop)`."""
    kind: str

    def start(self) -> None:
        """Read in the background, opening (and reopening) the device as needed. Each
        reader gets its own stop switch: one left blocked in a stalled read after stop()
        must not come back to life when the device is started again."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                        name=f"wm-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading; wait at most `timeout` (a read blocked on a stalled stream returns
        by its own read timeout, which is longer)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.state = OFF

    def _set(self, state: str, t: float, reason: str | None = None) -> None:
        if state == self.state:
            return
        self.state = state
        if state == OK:  # the segmenter learns it from the data itself
            self.log.info(f"{self.kind}_ok", source=self.description)
        elif state == REOPENING:
            self.log.warning(f"{self.kind}_lost", reason=reason)
            self.on_state(t, reason)


class Camera(DeviceReader):
    """`on_frame(t, bgr)` gets each kept frame (t: time.monotonic() when read);
    `on_state(t, reason)` gets "device_lost"/"stall" when the source goes away."""
    kind = "camera"

    def __init__(self, spec: str, *, width: int, height: int, fps: int, stall_seconds: float,
                 reopen_max_seconds: float, on_frame: Callable[[float, np.ndarray], None],
                 on_state: Callable[[float, str], None]):
        self.spec = spec.strip()
        self.width, self.height, self.period = width, height, 1.0 / fps
        self.stall_seconds = stall_seconds
        self.reopen_max = reopen_max_seconds
        self.on_frame, self.on_state = on_frame, on_state
        self.state = OFF
        # what the log, the manifests and `wm status` name it by: never the password
        self.shown = redact(self.spec)
        self.description = self.shown
        self.grabbed = 0
        self.kept = 0
        self.log = log.get("wm.capture.camera").bind(camera=self.shown)
        self._cap = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_file(self) -> bool:
        return "://" not in self.spec and not self.spec.isdigit()

    def _open(self) -> Stream | None:
        if "://" in self.spec:
            stream = open_av(self.spec, self.stall_seconds, fit, self.width, self.height)
        else:
            stream = self._open_cv()
        if stream is not None:
            self.description = f"{self.shown} {stream.description}"
        return stream

    def _open_cv(self) -> CvStream | None:
        if self.spec.isdigit():
            cap = cv2.VideoCapture(int(self.spec))
            if cap.isOpened():  # ask a webcam for about the size we keep: less to move and decode
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        else:
            timeout = int(self.stall_seconds * 1000)
            cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(timeout, 3000),
                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout])
        if not cap.isOpened():
            cap.release()
            return None
        return CvStream(cap, fit, self.width, self.height)

    def open(self) -> bool:
        """Try once, now (Recorder.start uses this to report what works)."""
        self._cap = self._open()
        if self._cap is not None:
            self._set(OK, time.monotonic())
            if sys.platform == "darwin":
                # macOS asks for camera permission on the main thread only (this call);
                # reopening from the reader thread must not ask again, or it fails
                os.environ["OPENCV_AVFOUNDATION_SKIP_AUTH"] = "1"
        return self._cap is not None

    def _run(self, stop: threading.Event) -> None:
        cap, self._cap = self._cap, None
        attempt, due, last = 0, None, time.monotonic()
        opened_at = last  # a file plays in real time from when it was opened
        try:
            while not stop.is_set():
                if cap is None:
                    cap = self._open()
                    if cap is None:
                        self._set(REOPENING, last, "device_lost")
                        self.log.debug("camera_reopen_failed", attempt=attempt)
                        stop.wait(backoff(attempt, self.reopen_max))
                        attempt += 1
                        continue
                    opened_at = time.monotonic()
                    self._set(OK, opened_at)
                before = time.monotonic()
                ok = cap.grab()
                if ok and self.is_file:  # show the frame when its time comes
                    due_at = opened_at + cap.position()
                    stop.wait(max(0.0, due_at - time.monotonic()))
                t = time.monotonic()
                if stop.is_set():
                    break
                if not ok:
                    cap.release()
                    cap = None
                    stalled = t - before >= 0.9 * self.stall_seconds
                    self._set(REOPENING, last, "stall" if stalled else "device_lost")
                    continue
                self.grabbed += 1
                last = t
                attempt = 0
                self._set(OK, t)
                keep, due = segments.decimate(t, due, self.period)
                if keep:
                    image = cap.retrieve()
                    if image is not None:
                        self.kept += 1
                        self.on_frame(t, image)
        finally:
            if cap is not None:
                cap.release()


def open_error(spec: str) -> str:
    """Why a camera spec could not be opened, for the start-up error."""
    spec = redact(spec)
    if spec.isdigit():
        return f"camera {spec}: no such device or it is busy"
    if "://" in spec:
        return f"camera {spec}: cannot connect"
    if not os.path.exists(spec):
        return f"camera {spec}: no such file"
    return f"camera {spec}: cannot be opened as video"

