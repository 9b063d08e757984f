"""What a night learns from: the day's clips (from the queue, through their manifests),
a few held out for honest evaluation, and a replay sample of earlier days so that
yesterday is not forgotten. Media are read lazily, batch by batch: a whole day of stills
does not fit in a laptop's memory."""
from __future__ import annotations

import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import cv2
import numpy as np

from wm.base import log
from wm.base.manifest import Manifest
from wm.base.media import read_wav
from wm.base.paths import Paths

_log = log.get("wm.learn")
T = TypeVar("T")
# What reading a clip's media may raise when a file is damaged or gone (wave.Error is
# not an OSError; a WAV cut at an odd byte is a ValueError from NumPy).
MEDIA_ERRORS = (OSError, EOFError, ValueError, wave.Error)


@dataclass(frozen=True)
class ClipRef:
    id: str
    date: str
    start: float                 # epoch seconds of the first audio sample
    stills: tuple[Path, ...]
    audio: Path | None


class NoReadableClips(Exception):
    """Every clip a stage could draw from turned out unreadable: the stage ends early."""


class Unreadable:
    """Clips whose media could not be read tonight, with the reason: left out of the rest
    of the night's training (one warning each) and counted in the report. The JEPA loader
    thread adds to it while the main thread reads it."""

    def __init__(self, known: dict[str, str] | None = None):
        self.clips: dict[str, str] = dict(known or {})
        self._lock = threading.Lock()

    def add(self, clip: ClipRef, error: str) -> None:
        with self._lock:
            if clip.id in self.clips:
                return
            self.clips[clip.id] = error
        _log.warning("clip_media_unreadable", clip=clip.id, error=error,
                     note="left out of tonight's training")

    def readable(self, clips: list[ClipRef]) -> list[ClipRef]:
        return [c for c in clips if c.id not in self.clips]


@dataclass
class NightData:
    date: str                    # the night's name: the newest day it learns
    dates: list[str]             # every day it learns
    train: list[ClipRef]
    held_out: list[ClipRef]
    replay: list[ClipRef]
    unreadable: Unreadable = field(default_factory=Unreadable)

    @property
    def newest_start(self) -> float:
        return max(c.start for c in self.train + self.held_out)


def clip_ref(paths: Paths, manifest: Manifest) -> ClipRef:
    stills = tuple(paths.data / f for f in manifest.frames if (paths.data / f).exists())
    audio = paths.data / manifest.audio if manifest.audio else None
    return ClipRef(manifest.id, manifest.date, manifest.start_time.timestamp(), stills,
                   audio if audio is not None and audio.exists() else None)


def pick(rng: np.random.Generator, today: list[ClipRef], replay: list[ClipRef], n: int,
         replay_fraction: float) -> list[ClipRef]:
    """n clips for one batch: a `replay_fraction` share from earlier days when there are any."""
    n_old = int(round(n * replay_fraction)) if replay else 0
    if not today:
        n_old = n
    new = [today[i] for i in rng.integers(0, len(today), n - n_old)] if n - n_old else []
    old = [replay[i] for i in rng.integers(0, len(replay), n_old)] if n_old else []
    return new + old


def draw_readable(rng: np.random.Generator, today: list[ClipRef], replay: list[ClipRef], n: int,
                  replay_fraction: float, load: Callable[[ClipRef], T], bad: Unreadable) -> list[T]:
    """`load(clip)` for n clips drawn as `pick` draws them. A clip whose media cannot be
    read goes into `bad`, out of its pool (the lists change) and another is drawn in its
    place; NoReadableClips when none is left."""
    out: list[T] = []
    while len(out) < n:
        if not today and not replay:
            raise NoReadableClips()
        for c in pick(rng, today, replay, n - len(out), replay_fraction):
            if c.id in bad.clips:        # drawn twice in one batch, and failed the first time
                continue
            try:
                out.append(load(c))
            except MEDIA_ERRORS as e:
                bad.add(c, str(e))
                for pool in (today, replay):
                    pool[:] = [x for x in pool if x.id != c.id]
    return out


def read_clip_audio(path: Path) -> np.ndarray:
    """A clip's int16 samples; a WAV with fewer samples than its header promises (cut
    short by a crash or a full disk) is unreadable: its zero tail would teach silence."""
    with wave.open(str(path), "rb") as w:
        promised = w.getnframes()
    samples, _ = read_wav(path)
    if samples.size < promised:
        raise EOFError(f"{path}: truncated WAV ({samples.size} of {promised} samples)")
    return samples


def read_still(path: Path) -> np.ndarray:
    """A still as BGR (as OpenCV reads it); OSError where OpenCV gives nothing back."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{path}: cannot be read as an image")
    return bgr


def load_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(read_still(path), cv2.COLOR_BGR2RGB)


class StillCache:
    """Decoded stills, shrunk to what a crop for `size`-pixel input can use, kept up to
    a memory budget: a small day is decoded once instead of at every step."""

    def __init__(self, size: int, max_bytes: int = 256 << 20):
        self.short_side = 2 * size
        self.max_bytes = max_bytes
        self.used = 0
        self.images: dict[Path, np.ndarray] = {}

    def get(self, path: Path) -> np.ndarray:
        img = self.images.get(path)
        if img is None:
            img = load_rgb(path)
            h, w = img.shape[:2]
            f = self.short_side / min(h, w)
            if f < 1:
                img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
            if self.used + img.nbytes <= self.max_bytes:
                self.images[path] = img
                self.used += img.nbytes
        return img


@dataclass(frozen=True)
class CropBox:
    """A crop as shares of the frame (so one box fits two frames of any size) and a mirror flag."""
    top: float
    left: float
    height: float
    width: float
    mirror: bool


def random_box(rng: np.random.Generator, scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3)) -> CropBox:
    """A random crop covering `scale` of a frame with aspect `ratio` (on a 4:3 frame)."""
    for _ in range(10):
        area = rng.uniform(*scale)
        ar = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        h, w = np.sqrt(area / ar), np.sqrt(area * ar)
        if h <= 1 and w <= 1:
            break
    else:
        h = w = 1.0
    return CropBox(rng.uniform(0, 1 - h), rng.uniform(0, 1 - w), h, w, bool(rng.random() < 0.5))


def crop(rgb: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    y, x = int(box.top * h), int(box.left * w)
    ch, cw = max(1, int(round(box.height * h))), max(1, int(round(box.width * w)))
    out = cv2.resize(rgb[y:y + ch, x:x + cw], (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out[:, ::-1]) if box.mirror else out


def frame_pair(rng: np.random.Generator, clip: ClipRef, size: int, cross_frame: bool,
               cache: StillCache) -> tuple[np.ndarray, np.ndarray]:
    """Two stills of a clip under one random crop, uint8 RGB (size, size, 3) each: the
    student's frame and the teacher's. With `cross_frame` the teacher's is another still
    of the same clip (a second or two later), else the same still."""
    k = int(rng.integers(len(clip.stills)))
    j = k
    if cross_frame and len(clip.stills) > 1:
        j = (k + int(rng.integers(1, len(clip.stills)))) % len(clip.stills)
    box = random_box(rng)
    now = crop(cache.get(clip.stills[k]), box, size)
    return now, (crop(cache.get(clip.stills[j]), box, size) if j != k else now)


def frame_pairs(rng: np.random.Generator, clips: list[ClipRef], size: int, cross_frame: bool,
                cache: StillCache) -> tuple[np.ndarray, np.ndarray]:
    """frame_pair of each clip, stacked: (n, size, size, 3) twice."""
    pairs = [frame_pair(rng, c, size, cross_frame, cache) for c in clips]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def clip_audio(clip: ClipRef, samples: int) -> np.ndarray:
    """A clip's audio, int16, cut or zero-padded to `samples`."""
    out = np.zeros(samples, np.int16)
    x = read_clip_audio(clip.audio)
    out[: min(samples, x.size)] = x[:samples]
    return out


def audio_batch(clips: list[ClipRef], samples: int) -> np.ndarray:
    """Each clip's audio, int16 (n, samples) (cut or zero-padded to `samples`)."""
    return np.stack([clip_audio(c, samples) for c in clips]) if clips else np.zeros((0, samples), np.int16)
