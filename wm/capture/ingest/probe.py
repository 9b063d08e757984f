"""Opening a media file and choosing what to read from it: the streams, and where the file
sits in wall time."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av

from wm.base.errors import WmError
from wm.base.manifest import Source


class BadMedia(WmError):
    """A file that cannot be ingested (the message is the reason)."""


def why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def check_file(path: Path) -> os.stat_result:
    """The file's stat, or BadMedia why it cannot be ingested. Only a regular file is
    opened: a FIFO or a device would block the reader (or never end)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadMedia("no such file") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadMedia("is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise BadMedia(f"not a regular file (a {_kind(st.st_mode)}): only recordings on disk "
                       "can be ingested")
    if st.st_size == 0:
        raise BadMedia("empty file")
    return st


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def open_media(path: Path):
    try:
        return av.open(str(path))
    except av.error.FFmpegError as e:
        raise BadMedia(f"not a readable media file ({why(e)})") from None


def estimate_seconds(path: Path) -> float:
    if not is_regular(path):   # opening a FIFO would wait for a writer forever
        return 0.0
    try:
        with av.open(str(path)) as c:
            return c.duration / av.time_base if c.duration else 0.0
    except (av.error.FFmpegError, OSError):
        return 0.0


def frame_rate(stream) -> float | None:
    r = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(r) if r else None


def _channels(stream) -> int:
    return stream.codec_context.layout.nb_channels or 1


def pick_video(streams) -> tuple[object | None, str | None]:
    """The best video stream (most pixels, then highest frame rate, then first) and a
    description saying which and why. Cover art (attached pictures) is not video."""
    cands = [s for s in streams if s.type == "video" and s.codec_context is not None
             and not (s.disposition & av.stream.Disposition.attached_pic)]
    if not cands:
        return None, None
    best = max(cands, key=lambda s: (s.codec_context.width * s.codec_context.height,
                                     frame_rate(s) or 0, -s.index))
    cc = best.codec_context
    desc = f"#{best.index} {cc.name} {cc.width}x{cc.height} {frame_rate(best) or 0:.4g} fps"
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


@dataclass(frozen=True)
class Probe:
    """What an open container offers: the chosen streams (None where it has no such
    stream), the source every manifest names, the duration its header claims and the wall
    time of container time 0."""
    video: object | None
    audio: object | None
    source: Source
    header_seconds: float | None
    wall_zero: datetime

    @property
    def chosen(self) -> list:
        return [s for s in (self.video, self.audio) if s is not None]


def probe(container, path: Path, fp: str, head: str | None, logger) -> Probe:
    video, vdesc = pick_video(container.streams)
    audio, adesc = pick_audio(container.streams)
    if video is None and audio is None:
        raise BadMedia("no video or audio stream")
    logger.info("streams", video=vdesc, audio=adesc)
    chosen = [s for s in (video, audio) if s is not None]
    for s in chosen:
        s.thread_type = "AUTO"   # frame threads: decoding keeps pace with the writers
    source = Source(kind="file", name=str(path.resolve()), video_stream=vdesc,
                    audio_stream=adesc, fingerprint=fp, head=head)
    header = container.duration / av.time_base if container.duration else None
    return Probe(video, audio, source, header, _wall_zero(container, chosen, path, header))


def _wall_zero(container, chosen: list, path: Path, header_seconds: float | None) -> datetime:
    """Wall time of container time 0: the creation_time a camera wrote, else the file's
    modification time less its duration."""
    container_start = container.start_time / av.time_base if container.start_time else 0.0
    meta = [container.metadata] + [s.metadata for s in chosen]
    created = next((c for c in (parse_creation_time(m.get("creation_time")) for m in meta)
                    if c is not None), None)
    if created is None:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        created = mtime - timedelta(seconds=header_seconds or 0.0)
    return created - timedelta(seconds=container_start)
