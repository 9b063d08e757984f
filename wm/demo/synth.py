"""A synthetic day with known structure, for tests, the demo and benchmarks.

There are K scene types. Each has a fixed identity (drawn from a generator seeded by the
scene number): a room for the eye (wall texture, floor, window, an object) and a sound
texture for the ear (a chord, a band of filtered noise, rhythmic clicks or a warbling
tone). Every clip jitters what a camera and a microphone would: where things are (and
the camera, a little), lighting and colour cast, sensor noise, loudness, pitch and
background hiss. So a model has to find the scene under the nuisance, and a test knows
the answer (`SynthClip.scene`)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from wm.base.atomic import partial_name
from wm.base.clipids import clip_id
from wm.base.config import Settings
from wm.base.manifest import Manifest, Source
from wm.base.paths import Paths
from wm.capture.writer import ClipMedia, write_clip

SHAPES = ("disc", "box", "triangle", "rings", "cross")
SOUNDS = ("chord", "noise_band", "clicks", "warble")
# Small media keep a 60-clip day to a few seconds: the models see 224 px or less anyway.
STILL_SIZE = (240, 320)
VIDEO_SIZE = (120, 160)
COLOUR_JITTER = 0.3   # share of a view's colours that is the moment's, not the scene's


@dataclass
class SynthClip:
    manifest: Manifest
    manifest_path: Path
    scene: int


@dataclass(frozen=True)
class _Identity:
    """What makes a scene itself; fixed per scene number."""
    shape: str
    background: tuple[float, float, float]   # BGR 0..1 at the top of the gradient
    ink: tuple[float, float, float]          # colour of the shape
    stripe_angle: float                      # radians: orientation of the background texture
    stripe_period: float                     # pixels at 640 wide
    sound: str
    pitch: float                             # Hz: chord root / band centre / click tone / warble
    rhythm: float                            # Hz: click rate or warble rate
    floor: tuple[float, float, float]        # BGR 0..1 of the floor along the bottom
    floor_top: float                         # where the floor starts, as a share of the height
    window: tuple[float, float, float, float]  # left, top, width, height as shares of the frame


def _identity(scene: int) -> _Identity:
    r = np.random.default_rng(7919 + scene)
    return _Identity(
        shape=SHAPES[scene % len(SHAPES)],
        background=tuple(r.uniform(0.25, 0.75, 3)),
        ink=tuple(r.uniform(0.0, 1.0, 3)),
        stripe_angle=float(scene * 0.9 % np.pi),
        stripe_period=float(40 + 15 * (scene % 5)),
        sound=SOUNDS[scene % len(SOUNDS)],
        pitch=float(200 * 1.31 ** (scene % 7) * r.uniform(0.97, 1.03)),
        rhythm=float(2.0 + 1.3 * (scene % 5)),
        floor=tuple(r.uniform(0.1, 0.9, 3)),
        floor_top=float(r.uniform(0.55, 0.8)),
        window=(float(r.uniform(0.05, 0.65)), float(r.uniform(0.05, 0.2)),
                float(r.uniform(0.2, 0.3)), float(r.uniform(0.2, 0.3))),
    )


def scene_still(scene: int, rng: np.random.Generator, size=(480, 640)) -> np.ndarray:
    """A BGR uint8 image of `scene` as a camera might see it this time."""
    h, w = size
    ident = _identity(scene)
    yy, xx = np.ogrid[0:h, 0:w]
    yy, xx = yy.astype(np.float32), xx.astype(np.float32)
    # The parts draw from rng in a fixed order: a seed always gives the same image.
    img, stripes, ink = _wall(ident, rng, xx, yy, h, w)
    _room(img, ident, rng, stripes, h, w)
    alpha = _shape_mask(ident.shape, rng, h, w).astype(np.float32) * np.float32(1 / 255)
    img += alpha * (ink.astype(np.float32)[:, None, None] - img)
    return _exposure(img, rng, xx, h, w)


def _tint(colour: tuple[float, float, float], rng: np.random.Generator, low: float,
          high: float) -> np.ndarray:
    """A scene has its palette, but part of every colour is the moment's."""
    return (1 - COLOUR_JITTER) * np.asarray(colour) + COLOUR_JITTER * rng.uniform(low, high, 3)


def _wall(ident: _Identity, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
          h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The background, a vertical gradient of the scene's colour with its stripe texture
    (planar (3, h, w) while mixing colours: numpy is slow over a last axis of 3); the
    stripes, which the floor shares; and the shape's colour."""
    angle = ident.stripe_angle + rng.normal(0, 0.08)
    freq = 2 * np.pi / (ident.stripe_period * w / 640.0)
    fx, fy, phase = np.float32([freq * np.cos(angle), freq * np.sin(angle), rng.uniform(0, 2 * np.pi)])
    stripes = np.sin(xx * fx + yy * fy + phase)
    shade = (np.float32(0.75) + np.float32(0.5 / h) * yy) * (1 + np.float32(0.25) * stripes)
    background = _tint(ident.background, rng, 0.25, 0.75)
    ink = _tint(ident.ink, rng, 0, 1)
    return background.astype(np.float32)[:, None, None] * shade, stripes, ink


def _room(img: np.ndarray, ident: _Identity, rng: np.random.Generator, stripes: np.ndarray,
          h: int, w: int) -> None:
    """A floor and a bright window where this place has them, seen from a camera that is
    never quite where it was (a shift of a few per cent)."""
    dx, dy = rng.normal(0, 0.02, 2)
    top = max(0, int((ident.floor_top + dy) * h))
    floor = _tint(ident.floor, rng, 0.1, 0.9)
    img[:, top:, :] = floor.astype(np.float32)[:, None, None] * (1 + np.float32(0.15) * stripes[top:])
    wx, wy, ww, wh = ident.window
    x0, y0 = int((wx + dx) * w), int((wy + dy) * h)
    rows = slice(max(0, y0), max(0, y0 + int(wh * h)))
    cols = slice(max(0, x0), max(0, x0 + int(ww * w)))
    img[:, rows, cols] = np.float32(0.95)


def _shape_mask(shape: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The scene's object as a uint8 mask: jittered position, size and rotation."""
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    r = rng.uniform(0.16, 0.24) * min(h, w)
    rot = rng.uniform(-0.3, 0.3)
    mask = np.zeros((h, w), np.uint8)
    centre = (int(cx), int(cy))
    if shape == "disc":
        cv2.circle(mask, centre, int(r), 255, -1, cv2.LINE_AA)
    elif shape == "box":
        box = cv2.boxPoints(((cx, cy), (2 * r, 1.3 * r), np.degrees(rot)))
        cv2.fillPoly(mask, [box.astype(np.int32)], 255, cv2.LINE_AA)
    elif shape == "triangle":
        a = rot + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) - np.pi / 2
        pts = np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 255, cv2.LINE_AA)
    elif shape == "rings":
        for k in (1.0, 0.66, 0.33):
            cv2.circle(mask, centre, int(r * k), 255, max(2, int(r * 0.12)), cv2.LINE_AA)
    else:  # cross
        t = max(2, int(r * 0.35))
        for a in (rot, rot + np.pi / 2):
            d = np.array([np.cos(a), np.sin(a)]) * r
            p0, p1 = (int(cx - d[0]), int(cy - d[1])), (int(cx + d[0]), int(cy + d[1]))
            cv2.line(mask, p0, p1, 255, t, cv2.LINE_AA)
    return mask


def _exposure(img: np.ndarray, rng: np.random.Generator, xx: np.ndarray, h: int,
              w: int) -> np.ndarray:
    """What the camera makes of the planar image: an overall level, a colour cast, a soft
    light falloff from one side and sensor noise; BGR uint8."""
    light = rng.uniform(0.6, 1.3) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    side = np.float32(rng.uniform(-0.25, 0.25))
    img *= (1 + side * (xx / w - np.float32(0.5))) * light[:, None, None]
    # Noise drawn at a quarter resolution and scaled up: cheap and grainy enough.
    noise = rng.normal(0, rng.uniform(0.01, 0.05), (max(1, h // 4), max(1, w // 4), 3))
    out = cv2.merge(list(img)) + cv2.resize(noise.astype(np.float32), (w, h),
                                            interpolation=cv2.INTER_NEAREST)
    np.clip(out, 0, 1, out=out)
    return cv2.convertScaleAbs(out, alpha=255.0)


def scene_sound(scene: int, rng: np.random.Generator, seconds: float, rate: int = 16000) -> np.ndarray:
    """int16 mono samples of `scene`'s sound texture, with this clip's jitter."""
    ident = _identity(scene)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    pitch = ident.pitch * rng.uniform(0.95, 1.05)
    # Every texture has a beat at the scene's rhythm: sounds in a room have a time course,
    # and a model that predicts the future (CPC) has something to predict.
    beat = ident.rhythm * rng.uniform(0.92, 1.08)
    if ident.sound == "chord":  # an arpeggio: the chord's notes in turn, one per beat
        which = (np.floor(t * beat + rng.uniform(0, 4)) % 4).astype(int)
        notes = np.array([1.0, 1.26, 1.5, 2.0])[which]
        x = np.sin(2 * np.pi * np.cumsum(pitch * notes) / rate) + 0.3 * np.sin(2 * np.pi * pitch * t)
    elif ident.sound == "noise_band":  # a band of noise swelling and fading like surf
        spec = np.fft.rfft(rng.normal(0, 1, n))
        f = np.fft.rfftfreq(n, 1 / rate)
        centre = pitch * 4
        spec *= np.exp(-0.5 * ((f - centre) / (0.15 * centre)) ** 2)
        x = np.fft.irfft(spec, n) * (1.2 + np.sin(2 * np.pi * beat / 2 * t + rng.uniform(0, 2 * np.pi)))
    elif ident.sound == "clicks":
        x = np.zeros(n)
        period = rate / beat
        burst = np.sin(2 * np.pi * pitch * 3 * np.arange(int(0.03 * rate)) / rate)
        burst *= np.exp(-np.arange(burst.size) / (0.006 * rate))
        for k in np.arange(rng.uniform(0, period), n, period).astype(int):
            m = min(burst.size, n - k)
            x[k:k + m] += burst[:m]
    else:  # warble: a tone whose pitch swings at the scene's rhythm
        swing = 0.12 * np.sin(2 * np.pi * beat * t + rng.uniform(0, 2 * np.pi))
        x = np.sin(2 * np.pi * np.cumsum(pitch * (1 + swing)) / rate)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.2, 0.6)
    x = x + rng.normal(0, rng.uniform(0.003, 0.03), n)
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def _scene_runs(rng: np.random.Generator, n_clips: int, n_scenes: int) -> list[int]:
    """A day is episodes: a scene lasts a few clips, then another one starts."""
    scenes: list[int] = []
    prev = -1
    while len(scenes) < n_clips:
        choices = [s for s in range(n_scenes) if s != prev] or [0]
        prev = int(rng.choice(choices))
        scenes += [prev] * int(rng.integers(2, 7))
    return scenes[:n_clips]


def make_day(settings: Settings, paths: Paths, date: str, n_clips: int, n_scenes: int = 4,
             seed: int = 0, start: datetime | None = None) -> list[SynthClip]:
    """Write `n_clips` consecutive clips filed under `date` (through write_clip, nothing is
    queued: the caller enqueues). Default start: 09:00 local time on `date`."""
    cap = settings.capture
    rng = np.random.default_rng(seed)
    if start is None:
        start = datetime.combine(datetime.fromisoformat(date).date(), time(9, 0)).astimezone()
    n_stills = cap.clip_seconds * cap.frame_rate
    reps = max(1, cap.video_fps // cap.frame_rate)
    out = []
    for k, scene in enumerate(_scene_runs(rng, n_clips, n_scenes)):
        t0 = start + timedelta(seconds=k * cap.clip_seconds)
        stills = [scene_still(scene, rng, STILL_SIZE) for _ in range(n_stills)]
        small = [cv2.resize(s, VIDEO_SIZE[::-1], interpolation=cv2.INTER_AREA) for s in stills]
        media = ClipMedia(
            cid=clip_id(t0), date=date, start=t0.astimezone(timezone.utc),
            duration=float(cap.clip_seconds),
            audio=scene_sound(scene, rng, cap.clip_seconds, cap.sample_rate),
            video=[f for f in small for _ in range(reps)], stills=stills,
            source=Source(kind="file", name=f"synth:seed={seed}", offset=k * cap.clip_seconds),
        )
        m = write_clip(paths, media, clip_seconds=cap.clip_seconds, sample_rate=cap.sample_rate,
                       video_fps=cap.video_fps, jpeg_quality=cap.jpeg_quality)
        out.append(SynthClip(m, paths.manifest(date, m.id), scene))
    return out


def write_recording(path: Path, seconds: float, scenes: list[int], scene_seconds: float,
                    seed: int = 0, fps: int = 10, size=(480, 640), lively: bool = False) -> None:
    """One mp4 (H.264 + AAC at 48 kHz, as a camera app would save it) that walks through
    `scenes` in turn, `scene_seconds` each, cycling until `seconds` have passed. `lively`:
    a hand-held camera, passers-by, a wandering sound level and stray sounds
    (wm/demo/lively.py) instead of a still view and a steady sound."""
    from wm.demo.lively import vary_sound

    rng = np.random.default_rng(seed)
    rate = 48000
    n_segments = int(np.ceil(seconds / scene_seconds))
    sounds = [scene_sound(scenes[i % len(scenes)], rng, scene_seconds, rate) for i in range(n_segments)]
    if lively:
        sounds = [vary_sound(x, rng, rate) for x in sounds]
    audio = np.concatenate(sounds)[: int(round(seconds * rate))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(path)
    with av.open(str(tmp), mode="w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.height, vs.width = size
        vs.pix_fmt = "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "28"}
        ast = out.add_stream("aac", rate=rate, layout="mono")
        for i, img in enumerate(_frames(rng, seconds, scenes, scene_seconds, fps, size, lively)):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        block = 1024
        for i in range(0, audio.size, block):
            af = av.AudioFrame.from_ndarray(audio[None, i:i + block].astype(np.float32) / 32768.0,
                                            format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = rate, i, Fraction(1, rate)
            for pkt in ast.encode(af):
                out.mux(pkt)
        for pkt in ast.encode():
            out.mux(pkt)
    tmp.replace(path)


def _frames(rng: np.random.Generator, seconds: float, scenes: list[int], scene_seconds: float,
            fps: int, size, lively: bool):
    """The recording's frames: a new camera view each second or at a scene change; in
    between the view repeats, or with `lively` the camera moves and people pass."""
    from wm.demo.lively import Camera, Passer

    camera = Camera.draw(rng) if lively else None
    still, shown, passer = None, -1, None
    for i in range(int(round(seconds * fps))):
        t = i / fps
        visit = int(t // scene_seconds)
        scene = scenes[visit % len(scenes)]
        if i % fps == 0 or visit != shown:
            if visit != shown and lively:
                passer = Passer.maybe(rng, scene_seconds)
            still, shown = scene_still(scene, rng, size), visit
        if not lively:
            yield still
            continue
        img = camera.move(still, t, rng)
        yield passer.draw(img, t - visit * scene_seconds) if passer else img
