"""Writes a clip atomically: every file goes to a `.partial` name in its own folder, is
fsynced and renamed with os.replace; the manifest goes last, so a clip either exists
whole or not at all. A crash leaves at most the in-flight clip's `.partial` files, which
`remove_partials` clears at the next start, and (after the mp4 and stills were renamed,
before the manifest) its media without a manifest, which `remove_orphan_media` clears
(both in wm.capture.orphans)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wm.base.atomic import atomic_write_bytes, commit_file, fsync_dir, partial_name
from wm.base.manifest import AUDIO_ONLY, VIDEO_ONLY, Gap, Manifest, Source
from wm.base.media import write_wav
from wm.base.paths import Paths
from wm.capture.encoder import VideoCodec, x264
from wm.capture.orphans import remove_partials  # noqa: F401  (the daemon's watcher sweeps with it)

if TYPE_CHECKING:
    import av

# av and cv2 are imported where a clip is encoded, so a module that imports this one only
# to sweep `.partial` files (the daemon's watcher) loads no codecs.


@dataclass
class ClipMedia:
    """One clip's content, ready to write. `video` holds the frames already placed on the
    clip video's constant-rate slots, as BGR arrays or as av.VideoFrames (ingest hands over
    decoded frames scaled in C, skipping a round trip through BGR, and so does a live
    MJPEG camera); `stills` the 1-FPS frames (k = 0, 1, 2), the same kinds."""
    cid: str
    date: str
    start: datetime                 # UTC instant of the first audio sample
    duration: float                 # seconds of real content
    audio: np.ndarray | None        # int16, exactly clip_samples long (zero-padded)
    video: list[np.ndarray | av.VideoFrame]  # may be empty: an audio-only clip
    stills: list[np.ndarray | av.VideoFrame]
    source: Source
    gaps: list[Gap] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def write_jpeg(path: Path, bgr: np.ndarray | av.VideoFrame, quality: int) -> None:
    import cv2

    if not isinstance(bgr, np.ndarray):  # an av.VideoFrame: converted once a second only
        bgr = bgr.to_ndarray(format="bgr24")
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    tmp = partial_name(path)
    tmp.write_bytes(buf.tobytes())
    commit_file(tmp, path)


def _yuv_frame(img: np.ndarray | av.VideoFrame) -> av.VideoFrame:
    import av
    import cv2

    if isinstance(img, av.VideoFrame):
        return img
    # OpenCV's BT.601 I420 conversion is ~3x faster than swscale's from bgr24 (x264 needs
    # even sizes anyway)
    return av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420), format="yuv420p")


def write_mp4(path: Path, frames: list[np.ndarray | av.VideoFrame], fps: int,
              audio: np.ndarray | None, rate: int, duration: float,
              preset: str = "veryfast", codec: VideoCodec | None = None) -> None:
    """H.264 (+ AAC when there is audio) with `codec` (default: x264 `preset`, CRF 26); the
    audio is cut to the clip's real duration."""
    import av

    codec = codec or x264(preset, 26)

    tmp = partial_name(path)
    with av.open(str(tmp), mode="w", format="mp4") as out:
        vs = None
        if frames:
            first = frames[0]
            w, h = ((first.width, first.height) if isinstance(first, av.VideoFrame)
                    else (first.shape[1], first.shape[0]))
            vs = out.add_stream(codec.name, rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, codec.pix_fmt
            vs.options = dict(codec.options)
            if codec.bit_rate:
                vs.bit_rate = codec.bit_rate
            vs.codec_context.thread_count = 1
        as_ = None
        if audio is not None:
            as_ = out.add_stream("aac", rate=rate, layout="mono")
            as_.options = {"aac_coder": "fast"}   # ~2x faster than the default, same size
        if vs is not None:
            for i, img in enumerate(frames):
                vf = _yuv_frame(img)
                vf.pts = i
                vf.time_base = Fraction(1, fps)
                for pkt in vs.encode(vf):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
        if as_ is not None:
            real = audio[: int(round(duration * rate))].astype(np.float32) / 32768.0
            af = av.AudioFrame.from_ndarray(real[None, :], format="fltp", layout="mono")
            af.sample_rate = rate
            af.pts = 0
            af.time_base = Fraction(1, rate)
            for pkt in as_.encode(af):
                out.mux(pkt)
            for pkt in as_.encode():
                out.mux(pkt)
    commit_file(tmp, path)


def write_clip(paths: Paths, clip: ClipMedia, *, clip_seconds: int, sample_rate: int,
               video_fps: int, jpeg_quality: int, preset: str = "veryfast",
               codec: VideoCodec | None = None) -> Manifest:
    """Write every file of a clip, then its manifest. Returns the manifest written."""
    rel = lambda p: str(p.relative_to(paths.data))  # noqa: E731
    flags = list(clip.flags)
    folders = [paths.clips_dir(clip.date)]
    video_rel, audio_rel, frames_rel = None, None, []

    if clip.video or clip.audio is not None:
        folders[0].mkdir(parents=True, exist_ok=True)
        mp4 = paths.clip_video(clip.date, clip.cid)
        write_mp4(mp4, clip.video, video_fps, clip.audio, sample_rate, clip.duration, preset,
                  codec)
        video_rel = rel(mp4)
    if clip.stills:
        fdir = paths.frames_dir(clip.date)
        fdir.mkdir(parents=True, exist_ok=True)
        folders.append(fdir)
        for k, bgr in enumerate(clip.stills):
            p = paths.frame(clip.date, clip.cid, k)
            write_jpeg(p, bgr, jpeg_quality)
            frames_rel.append(rel(p))
    elif AUDIO_ONLY not in flags:
        flags.append(AUDIO_ONLY)
    if clip.audio is not None:
        want = clip_seconds * sample_rate
        if len(clip.audio) != want:
            raise ValueError(f"clip {clip.cid}: audio has {len(clip.audio)} samples, not {want}")
        adir = paths.audio_dir(clip.date)
        adir.mkdir(parents=True, exist_ok=True)
        folders.append(adir)
        p = paths.audio(clip.date, clip.cid)
        write_wav(p, clip.audio, sample_rate)
        audio_rel = rel(p)
    elif VIDEO_ONLY not in flags:
        flags.append(VIDEO_ONLY)
    for folder in folders:
        fsync_dir(folder)

    manifest = Manifest(
        id=clip.cid,
        date=clip.date,
        start=clip.start.astimezone(timezone.utc).isoformat(),
        duration=round(clip.duration, 6),
        sample_rate=sample_rate,
        samples=clip_seconds * sample_rate,
        video=video_rel,
        audio=audio_rel,
        frames=frames_rel,
        source=clip.source,
        gaps=list(clip.gaps),
        flags=flags,
    )
    atomic_write_bytes(paths.manifest(clip.date, clip.cid), manifest.to_json().encode())
    return manifest
