"""Two ways to read a camera, one interface (`grab()` the next frame, `retrieve()` the
last one grabbed, ready for the clip): OpenCV for webcams and files, PyAV for network
cameras.

Why PyAV for URLs: OpenCV's FFmpeg backend decodes inside `grab()`, so a 30 fps MJPEG
camera of which a 10 fps clip keeps one frame in three costs three decodes per kept frame
(~3.5% of a core at 640x480 here). Demuxed with PyAV, an MJPEG packet (every one a whole
picture) is decoded only when kept, straight to the YUV the encoder takes, with no BGR
round trip. A codec whose frames depend on earlier ones (H.264 over RTSP) must still be
decoded packet by packet; only the conversion is skipped for the frames thrown away."""
from __future__ import annotations

from typing import Protocol

import numpy as np

# Codecs whose every packet is a whole picture: a packet not kept is never decoded.
INTRA_ONLY = {"mjpeg", "jpeg2000", "rawvideo", "png"}
# A small probe: the default (5 MB, 5 s) would hold the first frame back for seconds;
# one MJPEG picture or an H.264 key frame is enough to know the size.
PROBE_OPTIONS = {"probesize": "500000", "analyzeduration": "500000", "fflags": "nobuffer"}


class Stream(Protocol):
    description: str

    def grab(self) -> bool: ...
    def retrieve(self): ...   # np.ndarray (BGR) | av.VideoFrame (yuv420p) | None
    def position(self) -> float: ...   # seconds into a file (files only)
    def release(self) -> None: ...


class CvStream:
    """OpenCV: a webcam (its V4L2/AVFoundation backends decode in `retrieve()`) or a file."""

    def __init__(self, cap, fit, width: int, height: int):
        import cv2

        self._cv2, self.cap, self.fit, self.size = cv2, cap, fit, (width, height)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.description = f"{w}x{h}"

    def grab(self) -> bool:
        return self.cap.grab()

    def retrieve(self) -> np.ndarray | None:
        ok, bgr = self.cap.retrieve()
        return self.fit(bgr, *self.size) if ok and bgr is not None else None

    def position(self) -> float:
        return self.cap.get(self._cv2.CAP_PROP_POS_MSEC) / 1000

    def release(self) -> None:
        self.cap.release()


class AvStream:
    """PyAV: a network camera (http MJPEG, rtsp). Frames already the clip's size come out
    as yuv420p av.VideoFrames; any other size is letterboxed through BGR by `fit`."""

    def __init__(self, container, fit, width: int, height: int):
        from av.video.reformatter import VideoReformatter

        self.container, self.fit, self.size = container, fit, (width, height)
        self.stream = container.streams.video[0]
        self.codec = self.stream.codec_context
        self.intra = self.codec.name in INTRA_ONLY
        self.packets = container.demux(self.stream)
        # one swscale context for the stream's life (a new one per frame costs ~1 ms)
        self.reformatter = VideoReformatter()
        self.packet = None
        self.frame = None
        self.description = f"{self.codec.width}x{self.codec.height}"

    def grab(self) -> bool:
        """The next picture's packet (decoded now only if later pictures depend on it).
        False at the end of the stream, on a read timeout or a broken connection."""
        import av

        try:
            for packet in self.packets:
                if packet.size == 0:
                    continue
                if self.intra:
                    self.packet = packet
                    return True
                frames = self.codec.decode(packet)
                if frames:
                    self.frame = frames[-1]
                    return True
        except (av.FFmpegError, OSError, EOFError):
            pass
        return False

    def retrieve(self):
        import av

        frame = self.frame
        if self.intra:
            try:
                frames = self.codec.decode(self.packet) if self.packet is not None else []
            except (av.FFmpegError, OSError):
                return None   # one corrupt picture: skipped, the camera goes on
            frame = frames[-1] if frames else None
        self.packet = self.frame = None
        if frame is None:
            return None
        if (frame.width, frame.height) == self.size:
            # full-range JPEG YUV to the limited range H.264 players expect, in one pass
            return self.reformatter.reformat(frame, format="yuv420p")
        return self.fit(frame.to_ndarray(format="bgr24"), *self.size)

    def position(self) -> float:
        return 0.0

    def release(self) -> None:
        import av

        try:
            self.container.close()
        except (av.FFmpegError, OSError):  # closing a dead connection can fail: it is gone
            return


def open_av(url: str, timeout: float, fit, width: int, height: int) -> AvStream | None:
    """Open a network camera with PyAV; None if it cannot be opened or has no video."""
    import av

    options = dict(PROBE_OPTIONS)
    if url.lower().startswith("rtsp"):
        # over UDP a lost packet smears the frame; an IP camera on Wi-Fi loses many
        options["rtsp_transport"] = "tcp"
    try:
        container = av.open(url, options=options, timeout=(max(timeout, 3.0), timeout))
    except (av.FFmpegError, OSError, ValueError):
        return None
    if not container.streams.video:
        container.close()
        return None
    return AvStream(container, fit, width, height)
