"""What a night learns from: the day's clips (from the queue, through their manifests),
a few held out for honest evaluation, and a replay sample of earlier days so that
yesterday is not forgotten. Media are read lazily, batch by batch: a whole day of stills
does not fit in a laptop's memory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wm.base import log
from wm.base.manifest import Manifest
from wm.base.media import read_wav
from wm.base.paths import Paths
from wm.base.queue import PURGED, QUEUED, Queue, QueueItem

REPLAY_POOL = 4096   # earlier clips sampled per night; batches draw from this pool
HELD_OUT_MAX = 512   # clips kept out of training to measure the night on

_log = log.get("wm.learn")


@dataclass(frozen=True)
class ClipRef:
    id: str
    date: str
    start: float                 # epoch seconds of the first audio sample
    stills: tuple[Path, ...]
    audio: Path | None


@dataclass
class NightData:
    date: str                    # the night's name: the newest day it learns
    dates: list[str]             # every day it learns
    train: list[ClipRef]
    held_out: list[ClipRef]
    replay: list[ClipRef]

    @property
    def newest_start(self) -> float:
        return max(c.start for c in self.train + self.held_out)


def clip_ref(paths: Paths, manifest: Manifest) -> ClipRef:
    stills = tuple(paths.data / f for f in manifest.frames if (paths.data / f).exists())
    audio = paths.data / manifest.audio if manifest.audio else None
    return ClipRef(manifest.id, manifest.date, manifest.start_time.timestamp(), stills,
                   audio if audio is not None and audio.exists() else None)


def read_clips(paths: Paths, items: list[QueueItem]) -> list[ClipRef]:
    """ClipRefs for queue items whose media are still there; unreadable manifests are
    logged and skipped (one bad clip must not stop a night)."""
    out = []
    for item in items:
        try:
            ref = clip_ref(paths, Manifest.read(paths.data / item.manifest))
        except (OSError, ValueError, KeyError, TypeError) as e:
            _log.warning("clip_unreadable", clip=item.clip_id, file=item.manifest, error=str(e))
            continue
        if ref.stills or ref.audio:
            out.append(ref)
    return out


def night_data(paths: Paths, date: str | None, seed: int) -> NightData | None:
    """With a date: every clip of that day (queued or committed). Without: every queued
    clip, whatever its day. None when there is nothing to learn from."""
    q = Queue(paths.memory_db)
    try:
        if date is not None:
            items = [i for i in q.items(date=date) if i.state != PURGED]
        else:
            items = q.items(state=QUEUED)
        if not items:
            return None
        dates = sorted({i.date for i in items})
        others = [i for i in q.items() if i.state != PURGED and i.date not in dates]
    finally:
        q.close()
    rng = np.random.default_rng([seed, int(dates[-1].replace("-", ""))])
    if len(others) > REPLAY_POOL:
        others = [others[i] for i in np.sort(rng.choice(len(others), REPLAY_POOL, replace=False))]
    clips = read_clips(paths, items)
    n_eval = min(max(8, len(clips) // 10), len(clips) // 4, HELD_OUT_MAX)
    held = set(rng.choice(len(clips), n_eval, replace=False).tolist()) if n_eval else set()
    return NightData(
        date=dates[-1], dates=dates,
        train=[c for i, c in enumerate(clips) if i not in held],
        held_out=[c for i, c in enumerate(clips) if i in held],
        replay=read_clips(paths, others))


def pick(rng: np.random.Generator, today: list[ClipRef], replay: list[ClipRef], n: int,
         replay_fraction: float) -> list[ClipRef]:
    """n clips for one batch: a `replay_fraction` share from earlier days when there are any."""
    n_old = int(round(n * replay_fraction)) if replay else 0
    if not today:
        n_old = n
    new = [today[i] for i in rng.integers(0, len(today), n - n_old)] if n - n_old else []
    old = [replay[i] for i in rng.integers(0, len(replay), n_old)] if n_old else []
    return new + old


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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


def frame_pairs(rng: np.random.Generator, clips: list[ClipRef], size: int, cross_frame: bool,
                cache: StillCache) -> tuple[np.ndarray, np.ndarray]:
    """Two stills of each clip under one random crop, uint8 RGB (n, size, size, 3) each: the
    student's frame and the teacher's. With `cross_frame` the teacher's is another still
    of the same clip (a second or two later), else the same still."""
    now, later = [], []
    for c in clips:
        k = int(rng.integers(len(c.stills)))
        j = k
        if cross_frame and len(c.stills) > 1:
            j = (k + int(rng.integers(1, len(c.stills)))) % len(c.stills)
        box = random_box(rng)
        now.append(crop(cache.get(c.stills[k]), box, size))
        later.append(crop(cache.get(c.stills[j]), box, size) if j != k else now[-1])
    return np.stack(now), np.stack(later)


def audio_batch(clips: list[ClipRef], samples: int) -> np.ndarray:
    """Each clip's audio, int16 (n, samples) (cut or zero-padded to `samples`)."""
    out = np.zeros((len(clips), samples), np.int16)
    for i, c in enumerate(clips):
        x, _ = read_wav(c.audio)
        out[i, : min(samples, x.size)] = x[:samples]
    return out
