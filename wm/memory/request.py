"""What `wm query` was asked: the request, what it compares with what, the times and days
it names, and the picture or sound it brings (checked before any search, so bad input
fails first; decoded only once the memory is known to hold something to search).

Light on purpose: `wm query` builds its request here before it asks the query service,
so NumPy, OpenCV and FFmpeg are imported only where a picture or sound is decoded."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from wm.base.durations import parse_duration
from wm.base.errors import WmError
from wm.memory.clips import STILL
from wm.memory.picture import MAX_PIXELS, claimed_size, too_large

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16000
SOURCES = ("image", "audio", "clip", "at", "text")


@dataclass(frozen=True)
class QueryRequest:
    image: Path | None = None
    audio: Path | None = None
    clip: str | None = None
    at: str | None = None
    text: str | None = None
    modality: str | None = None      # "video" | "audio" | "shared"; None: the query's own
    topk: int | None = None
    date: str | None = None
    since: str | None = None
    until: str | None = None
    as_json: bool = False
    show: Path | None = None
    open_best: bool = False

    def source(self) -> str:
        """Which one of SOURCES the query is; WmError unless exactly one was given."""
        given = [s for s in SOURCES if getattr(self, s) is not None]
        if len(given) != 1:
            raise WmError("give exactly one of --image, --audio, --clip, --at, --text")
        return given[0]


# (what the query is, ranking modality) -> (kind of query vector, kind of stored vector).
# A picture is compared with how clips look in the vision encoder's own space (STILL: by
# their mean still, a near-copy of the picture first; wm.memory.search), and with how
# clips sound (or both) through the shared space; a sound likewise. A clip, a time or a
# word is compared in whichever space is asked for, with its own vector of that kind.
PLANS: dict[tuple[str, str], tuple[str, str]] = {
    ("image", "video"): ("video", STILL),
    ("image", "audio"): ("shared_video", "shared_audio"),
    ("image", "shared"): ("shared_video", "shared"),
    ("audio", "audio"): ("audio", "audio"),
    ("audio", "video"): ("shared_audio", "shared_video"),
    ("audio", "shared"): ("shared_audio", "shared"),
    **{(src, m): (m, m) for src in ("clip", "text") for m in ("video", "audio", "shared")},
}
DEFAULT_MODALITY = {"image": "video", "audio": "audio", "clip": "shared", "text": "shared"}


def plan(source: str, modality: str | None) -> tuple[str, str]:
    return PLANS[(source, modality or DEFAULT_MODALITY[source])]


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """'yesterday 14:30', 'today 9:05', '14:30', '2025-01-15 14:30', ISO 8601 (naive means
    local time), '2h ago'. ValueError naming the text otherwise."""
    now = (now or datetime.now().astimezone())
    t = text.strip().lower()
    m = re.fullmatch(r"(?:(today|yesterday)\s+)?(\d{1,2}):(\d{2})(?::(\d{2}))?", t)
    if m:
        day, hh, mm, ss = m.groups()
        if int(hh) > 23 or int(mm) > 59 or int(ss or 0) > 59:
            raise ValueError(f"'{text}' is not a time of day")
        base = now - timedelta(days=1) if day == "yesterday" else now
        return base.replace(hour=int(hh), minute=int(mm), second=int(ss or 0), microsecond=0)
    m = re.fullmatch(r"(.+)\s+ago", t)
    if m:
        return now - timedelta(seconds=parse_duration(m.group(1)))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"'{text}' is not a time (try \"yesterday 14:30\", \"2025-01-15 14:30\""
                         " or \"2h ago\")") from None
    return when if when.tzinfo else when.astimezone()


def date_range(req: QueryRequest) -> tuple[str | None, str | None]:
    if req.date and (req.since or req.until):
        raise WmError("--date cannot be combined with --since/--until")
    lo, hi = (req.date, req.date) if req.date else (req.since, req.until)
    if lo and hi and lo > hi:
        raise WmError(f"--since {lo} is after --until {hi}")
    return lo, hi


def range_text(lo: str | None, hi: str | None) -> str:
    if lo and lo == hi:
        return f"on {lo}"
    if lo and hi:
        return f"from {lo} to {hi}"
    return f"from {lo} on" if lo else (f"up to {hi}" if hi else "at all")


def check_image(path: Path) -> None:
    """The cheap checks of a query picture, before the memory is opened: it exists and its
    header claims a size worth decoding."""
    if not path.exists():
        raise WmError(f"{path}: no such file")
    if not path.is_file():
        raise WmError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            size = claimed_size(f)
    except OSError as e:
        raise WmError(f"{path}: cannot be read ({e.strerror or e})") from None
    _refuse_large(path, size)


def _refuse_large(path: Path, size: tuple[int, int] | None) -> None:
    if too_large(size):
        raise WmError(f"{path}: a {size[0]}x{size[1]} picture is too large to search with"
                      f" (at most {MAX_PIXELS // 1_000_000} megapixels); make it smaller")


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """libpng and libjpeg print their own complaints on fd 2: the user gets our one line."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def read_image(path: Path) -> np.ndarray:
    import cv2

    check_image(path)
    try:
        with _native_stderr_silenced():
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:   # OpenCV asserts on sizes it refuses, among other things
        img = None
    if img is None:
        raise WmError(f"{path}: not a readable image (JPEG, PNG, BMP, TIFF, WebP ...)")
    _refuse_large(path, (img.shape[1], img.shape[0]))
    return img


def check_sound(path: Path) -> None:
    if not path.is_file():
        raise WmError(f"{path}: no such file")


def read_audio(path: Path) -> np.ndarray:
    """Any audio file PyAV can decode, as 16 kHz mono int16."""
    import av  # loads FFmpeg: only a query by sound pays for it
    import numpy as np

    check_sound(path)
    try:
        with av.open(str(path)) as f:
            if not f.streams.audio:
                raise WmError(f"{path}: has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            chunks = []
            for frame in f.decode(f.streams.audio[0]):
                chunks += [r.to_ndarray().reshape(-1) for r in resampler.resample(frame)]
            chunks += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as e:
        raise WmError(f"{path}: not a readable audio file ({e})") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if len(samples) < SAMPLE_RATE // 10:
        raise WmError(f"{path}: has less than 0.1 s of sound")
    return samples.astype(np.int16)
