"""A labelled day composed from the real footage and sounds in ../shared/media, for
bench/learn.py. Never used by tests (a fresh clone has no ../shared).

Five places, each a stretch of real footage paired with a real sound. The day visits
them in a shuffled order; every visit is a short recording written as an MP4 (H.264 +
AAC, as a phone or a webcam would make) from a random moment of the place's stretch,
with the jitter of a real revisit: zoom, brightness, sound gain and background noise.
The visit files carry their start time in their modification time, which `wm ingest`
uses, so the clips of the day fall in a known order and each clip's place is known."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
RATE = 16000
FPS = 15
SIZE = (640, 360)


@dataclass(frozen=True)
class Place:
    name: str
    video: str             # file under media/video
    stream: int            # video stream index (nasa_13013.mp4 has two)
    start: float           # the place's stretch of footage, seconds
    end: float
    sound: str             # file under media/audio


PLACES = (
    Place("meadow", "big_buck_bunny_0_30.webm", 0, 1.0, 9.0, "ibm_rain.wav"),
    Place("burrow", "big_buck_bunny_0_30.webm", 0, 12.0, 19.0, "ibm_typing.wav"),
    Place("tree", "big_buck_bunny_0_30.webm", 0, 23.0, 30.0, "librosa_198-209-0000.hq.ogg"),
    Place("earth", "nasa_13013.mp4", 3, 0.0, 6.0, "ibm_train.wav"),
    Place("orbit", "nasa_13013.mp4", 3, 7.0, 13.0, "librosa_glacier-bay-humpback.hq.ogg"),
)


@dataclass(frozen=True)
class Visit:
    place: int
    start: datetime        # local wall time of the first sample
    seconds: float
    path: Path


def _frames(place: Place) -> list[np.ndarray]:
    """The place's stretch as BGR frames at FPS, letterboxed into SIZE."""
    out, step = [], 1.0 / FPS
    with av.open(str(MEDIA / "video" / place.video)) as c:
        stream = c.streams[place.stream]
        t_next = place.start
        for frame in c.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t < t_next:
                continue
            if t >= place.end:
                break
            out.append(cv2.resize(frame.to_ndarray(format="bgr24"), SIZE, interpolation=cv2.INTER_AREA))
            t_next += step
    return out


def _sound(place: Place) -> np.ndarray:
    """The place's sound as float32 mono at RATE (looped to at least 20 s)."""
    with av.open(str(MEDIA / "audio" / place.sound)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        parts = [f.to_ndarray().ravel() for fr in c.decode(audio=0) for f in rs.resample(fr)]
    x = np.concatenate(parts).astype(np.float32)
    x = x / max(float(np.abs(x).max()), 1e-6) * 0.5
    return np.tile(x, int(np.ceil(20 * RATE / x.size)))


def _jitter_picture(img: np.ndarray, zoom: float, gain: float) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = int(h / zoom), int(w / zoom)
    y, x = (h - ch) // 2, (w - cw) // 2
    crop = cv2.resize(img[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _write_visit(path: Path, frames: list[np.ndarray], sound: np.ndarray) -> None:
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23"}
        a = out.add_stream("aac", rate=RATE, layout="mono")
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts, f.time_base = i, Fraction(1, FPS)
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        af = av.AudioFrame.from_ndarray(sound[None, :].astype(np.float32), format="flt", layout="mono")
        af.sample_rate, af.pts, af.time_base = RATE, 0, Fraction(1, RATE)
        for p in a.encode(af):
            out.mux(p)
        for p in a.encode():
            out.mux(p)


def compose_day(folder: Path, day: str, visits: int, seed: int, visit_seconds: float = 9.0,
                places: tuple[Place, ...] = PLACES) -> list[Visit]:
    """Write `visits` visit files into `folder`; returns them in time order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    frames = [_frames(p) for p in places]
    sounds = [_sound(p) for p in places]
    order = np.concatenate([rng.permutation(len(places)) for _ in range(-(-visits // len(places)))])
    t = datetime.fromisoformat(f"{day}T08:00:00").astimezone()
    out = []
    n_frames, n_samples = int(visit_seconds * FPS), int(visit_seconds * RATE)
    for i, place in enumerate(order[:visits]):
        src, snd = frames[place], sounds[place]
        first = int(rng.integers(0, max(1, len(src) - n_frames)))
        zoom, light = rng.uniform(1.0, 1.25), rng.uniform(0.8, 1.2)
        pics = [_jitter_picture(src[(first + k) % len(src)], zoom, light) for k in range(n_frames)]
        off = int(rng.integers(0, snd.size - n_samples))
        sound = snd[off:off + n_samples] * 10 ** (rng.uniform(-6, 6) / 20)
        sound = sound + rng.normal(0, rng.uniform(0.002, 0.02), n_samples).astype(np.float32)
        path = folder / f"visit-{i:03d}.mp4"
        _write_visit(path, pics, np.clip(sound, -1, 1))
        os.utime(path, (t.timestamp() + visit_seconds,) * 2)   # ingest: mtime = end of recording
        out.append(Visit(int(place), t, visit_seconds, path))
        t += timedelta(seconds=visit_seconds + float(rng.uniform(60, 900)))
    (folder / "visits.json").write_text(json.dumps(
        [{"place": v.place, "start": v.start.isoformat(), "seconds": v.seconds, "path": str(v.path)}
         for v in out], indent=1))
    return out


def read_visits(folder: Path) -> list[Visit]:
    """The visits compose_day wrote into `folder` (for re-measuring a kept day)."""
    return [Visit(d["place"], datetime.fromisoformat(d["start"]), d["seconds"], Path(d["path"]))
            for d in json.loads((folder / "visits.json").read_text())]
