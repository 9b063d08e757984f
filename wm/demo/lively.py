"""What makes the demo's recording look and sound like a real one rather than a slide
show: a hand-held camera that drifts and shakes from frame to frame, someone walking
past now and then, a sound level that rises and falls within a visit, and short sounds
that belong to no place (a knock, a voice, a clatter) heard anywhere. None of it says
where the recording is: a model has to learn the place under it."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DRIFT = 0.025          # the camera's slow wander, as a share of the frame
SHAKE = 0.004          # its frame-to-frame tremor
PASSER_CHANCE = 0.35   # per visit: someone walks through the picture
EVENTS_PER_SECOND = 0.4
LEVEL_DB = 3.0         # the sound's level wanders this far either way within a visit


@dataclass(frozen=True)
class Camera:
    """A slow wander (a few sinusoids of random phase) plus tremor, and a slight zoom so
    that the moved picture never shows an edge."""
    phases: tuple[float, ...]
    rates: tuple[float, ...]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Camera":
        return cls(tuple(rng.uniform(0, 2 * np.pi, 4)), tuple(rng.uniform(0.05, 0.3, 4)))

    def move(self, img: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        wander = [np.sin(2 * np.pi * r * t + p) for r, p in zip(self.rates, self.phases)]
        dx = (DRIFT * wander[0] + rng.normal(0, SHAKE)) * w
        dy = (DRIFT * wander[1] + rng.normal(0, SHAKE)) * h
        angle = 1.0 * wander[2]
        zoom = 1.06 + 0.02 * wander[3]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
        m[:, 2] += (dx, dy)
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class Passer:
    """Someone crossing the picture: a dark, soft figure moving from one side to the other
    over `seconds`, starting at `start` (seconds into the visit)."""
    start: float
    seconds: float
    left_to_right: bool
    shade: tuple[float, float, float]

    @classmethod
    def maybe(cls, rng: np.random.Generator, visit_seconds: float) -> "Passer | None":
        if rng.uniform() >= PASSER_CHANCE:
            return None
        seconds = rng.uniform(1.5, 3.0)
        return cls(rng.uniform(0, max(0.1, visit_seconds - seconds)), seconds, bool(rng.integers(2)),
                   tuple(rng.uniform(0.1, 0.4, 3)))

    def draw(self, img: np.ndarray, t: float) -> np.ndarray:
        u = (t - self.start) / self.seconds
        if not 0 <= u <= 1:
            return img
        h, w = img.shape[:2]
        x = int((u if self.left_to_right else 1 - u) * 1.3 * w - 0.15 * w)
        # Drawn in the strip the figure covers only: a full-frame blur per frame is slow.
        lo, hi = max(0, x - w // 8), min(w, x + w // 8)
        if hi <= lo:
            return img
        mask = np.zeros((h, hi - lo), np.float32)
        cv2.ellipse(mask, (x - lo, int(0.62 * h)), (int(0.07 * w), int(0.33 * h)), 0, 0, 360, 1.0, -1)
        cv2.circle(mask, (x - lo, int(0.24 * h)), int(0.06 * w), 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.01 * w)[..., None]
        out = img.copy()
        strip = out[:, lo:hi].astype(np.float32)
        out[:, lo:hi] = (strip * (1 - mask) + np.float32(self.shade) * 255 * mask).astype(np.uint8)
        return out


def _envelope(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """A level that wanders smoothly (a new target every 0.4-1 s), as a gain."""
    knots = [0]
    while knots[-1] < n:
        knots.append(knots[-1] + int(rng.uniform(0.4, 1.0) * rate))
    db = rng.uniform(-LEVEL_DB, LEVEL_DB, len(knots))
    return 10 ** (np.interp(np.arange(n), knots, db) / 20)


def _event(rng: np.random.Generator, rate: int) -> np.ndarray:
    """A short sound that belongs to no place."""
    kind = rng.integers(3)
    if kind == 0:    # a knock: a low, quickly damped thud
        t = np.arange(int(0.12 * rate)) / rate
        return np.sin(2 * np.pi * rng.uniform(70, 160) * t) * np.exp(-t / 0.025)
    if kind == 1:    # a voice: a few harmonics of a gliding pitch, rising and falling
        t = np.arange(int(rng.uniform(0.3, 0.8) * rate)) / rate
        f0 = rng.uniform(110, 240) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        x = sum(np.sin(k * phase) / k for k in range(1, 6))
        return x * np.sin(np.pi * t / t[-1]) * 0.5
    t = np.arange(int(rng.uniform(0.05, 0.2) * rate)) / rate     # a clatter: a burst of noise
    return np.diff(rng.normal(0, 1, t.size + 1)) * np.exp(-t / 0.04) * 0.5


def vary_sound(x: np.ndarray, rng: np.random.Generator, rate: int) -> np.ndarray:
    """int16 samples of a place's sound with its level wandering and now and then a sound
    of no place on top."""
    y = x.astype(np.float64) / 32768 * _envelope(rng, x.size, rate)
    level = np.abs(y).max() + 1e-9
    for _ in range(rng.poisson(EVENTS_PER_SECOND * x.size / rate)):
        e = _event(rng, rate) * level * rng.uniform(0.3, 1.0)
        k = int(rng.integers(0, max(1, x.size - e.size)))
        y[k:k + e.size] += e[: y.size - k]
    return (np.clip(y, -1, 1) * 32767).astype(np.int16)

