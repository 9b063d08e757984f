"""Test media made with PyAV: real containers with real codecs, content placed at known
instants so tests can check where it lands.

The picture is a dark moving bar; a `flash` turns whole frames white for a short span.
The sound is a quiet tone; a `click` is a short loud burst. Both instants are given in
seconds on the container's timeline (stream timestamps), so a stream that starts late
(`audio_start`) still puts its click at the same instant as the flash."""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# container suffix -> (video codec, audio codec, audio sample format)
CODECS = {
    ".mp4": ("libx264", "aac", "fltp"),
    ".mov": ("libx264", "aac", "fltp"),
    ".mkv": ("libx264", "aac", "fltp"),
    ".webm": ("libvpx", "libopus", "s16"),
    ".avi": ("mpeg4", "libmp3lame", "fltp"),
}

FLASH_HALF_WIDTH = 0.12   # seconds either side of the flash instant that are white
CLICK_SECONDS = 0.02


@dataclass(frozen=True)
class Spec:
    seconds: float = 7.0
    fps: Fraction = Fraction(30000, 1001)   # an odd rate: frames never fall on whole seconds
    size: tuple[int, int] | None = (160, 120)   # width, height; None: no video stream
    audio_rate: int | None = 44100          # None: no audio stream
    layout: str = "stereo"                   # "mono", "stereo", "5.1"
    audio_start: float = 0.0                 # seconds the audio stream starts after the video
    video_start: float = 0.0
    flash: float | None = None
    click: float | None = None
    tone_hz: float = 440.0
    creation_time: str | None = None         # container metadata, e.g. "2025-01-15T14:30:12Z"


def _picture(t: float, spec: Spec) -> np.ndarray:
    w, h = spec.size
    img = np.full((h, w, 3), 30, np.uint8)
    x = int((t * 40) % w)
    img[:, x:x + max(4, w // 16)] = (0, 90, 160)
    if spec.flash is not None and abs(t - spec.flash) <= FLASH_HALF_WIDTH:
        img[:] = 250
    return img


def _sound(t0: float, n: int, spec: Spec) -> np.ndarray:
    """(channels, n) float32 in [-1, 1] starting at container time t0."""
    rate = spec.audio_rate
    t = t0 + np.arange(n) / rate
    mono = 0.05 * np.sin(2 * np.pi * spec.tone_hz * t)
    if spec.click is not None:
        burst = (t >= spec.click) & (t < spec.click + CLICK_SECONDS)
        mono = np.where(burst, 0.9 * np.sign(np.sin(2 * np.pi * 1000 * t) + 1e-9), mono)
    channels = av.AudioLayout(spec.layout).nb_channels
    return np.repeat(mono[None, :], channels, axis=0).astype(np.float32)


def write(path: Path, spec: Spec = Spec(), extra_streams: bool = False,
          live: bool = False) -> Path:
    """Write a media file. `extra_streams` adds a smaller second video stream and a
    lower-rate mono audio stream (ingest must pick the better ones). `live` (Matroska)
    writes it the way a recorder streams it: no duration or index to fill in at the end,
    so every prefix of the file is a playable recording, as it is while being written."""
    path = Path(path)
    vcodec, acodec, afmt = CODECS[path.suffix]
    with av.open(str(path), "w", options={"live": "1"} if live else {}) as out:
        if spec.creation_time:
            out.metadata["creation_time"] = spec.creation_time
        streams = []
        if extra_streams:
            small = _add_video(out, vcodec, spec.fps, (spec.size[0] // 2, spec.size[1] // 2))
            streams.append(("v", small, (spec.size[0] // 2, spec.size[1] // 2)))
        if spec.size:
            vs = _add_video(out, vcodec, spec.fps, spec.size)
            streams.append(("v", vs, spec.size))
        if spec.audio_rate:
            if extra_streams:
                low_rate = 8000 if acodec != "libopus" else 16000
                low = out.add_stream(acodec, rate=low_rate, layout="mono")
                streams.append(("a", low, low_rate))
            a = out.add_stream(acodec, rate=spec.audio_rate, layout=spec.layout)
            streams.append(("a", a, spec.audio_rate))
        for kind, stream, arg in streams:
            if kind == "v":
                _encode_video(out, stream, spec, arg)
            else:
                _encode_audio(out, stream, spec, arg, afmt)
    return path


def _add_video(out, codec, fps, size):
    vs = out.add_stream(codec, rate=fps)
    vs.width, vs.height = size
    vs.pix_fmt = "yuv420p"
    if codec == "libx264":
        vs.options = {"preset": "ultrafast"}
    elif codec == "libvpx":
        vs.options = {"deadline": "realtime", "cpu-used": "8"}
    return vs


def _encode_video(out, vs, spec: Spec, size) -> None:
    tb = Fraction(1, 1) / spec.fps
    first = round(spec.video_start * spec.fps)
    n = round((spec.seconds - spec.video_start) * spec.fps)
    for i in range(first, first + n):
        t = float(i * tb)
        img = _picture(t, spec)
        if size != spec.size:
            img = np.ascontiguousarray(img[::2, ::2])
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts, frame.time_base = i, tb
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)


def _encode_audio(out, a, spec: Spec, rate: int, fmt: str) -> None:
    block = 1024
    start = round(spec.audio_start * rate)
    total = round(spec.seconds * rate)
    own = Spec(**{**spec.__dict__, "audio_rate": rate})
    layout = a.codec_context.layout.name
    for s in range(start, total, block):
        n = min(block, total - s)
        data = _sound(s / rate, n, own)[: av.AudioLayout(layout).nb_channels]
        if fmt == "s16":
            frame = av.AudioFrame.from_ndarray(
                (data.T * 32767).astype(np.int16).reshape(1, -1), format="s16", layout=layout)
        else:
            frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts, frame.time_base = s, Fraction(1, rate)
        for p in a.encode(frame):
            out.mux(p)
    for p in a.encode():
        out.mux(p)


# -- bad files ---------------------------------------------------------------------------

def corrupt(good: Path, path: Path) -> Path:
    """A media file whose header is overwritten with noise."""
    data = bytearray(Path(good).read_bytes())
    rng = np.random.default_rng(1)
    data[: min(len(data), 4096)] = rng.integers(0, 256, min(len(data), 4096), np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def truncated(good: Path, path: Path, keep: float = 0.5) -> Path:
    data = Path(good).read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def not_media(path: Path) -> Path:
    path.write_text("these are shopping notes, not a video\n" * 50)
    return path


def set_mtime(path: Path, when: float) -> None:
    os.utime(path, (when, when))
