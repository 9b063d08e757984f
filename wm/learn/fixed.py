"""Version 0: features that need no training, so the memory is searchable from the first
night even when that night's training collapsed or was cut to a minute.

A still is described by its colours (a joint hue/saturation/value histogram) and their
layout (the mean colour of each cell of a 4x4 grid); a sound by the mean and the spread
of its log-mel spectrum, loudness kept (a quiet room and a loud street differ by level
first). On composed days of real footage these are the floor a learned feature must
clear (FIELD-NOTES: a colour histogram 0.96-1.00 image->image, a mean log spectrum
0.985-1.00 audio->audio). Version 0 has no shared audio-visual space: a sound cannot
find pictures until a trained version exists."""
from __future__ import annotations

import cv2
import numpy as np

from wm.learn.embeddings import Embedder

VERSION_0 = "v0"
HSV_BINS = (8, 4, 4)
GRID = 4
N_MELS = 64
FFT_SECONDS, HOP_SECONDS = 0.025, 0.010
IMAGE_SIDE = 96       # stills are shrunk first: colour statistics need no detail
VIDEO_DIM = int(np.prod(HSV_BINS)) + GRID * GRID * 3
AUDIO_DIM = 2 * N_MELS


def image_features(bgr: np.ndarray) -> np.ndarray:
    """(VIDEO_DIM,) float32: the square root of the colour histogram (so a cosine between
    two is the Bhattacharyya coefficient), then the grid of mean Lab colours, each part
    L2-normalised so neither drowns the other."""
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    elif bgr.shape[2] == 4:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
    small = cv2.resize(bgr, (IMAGE_SIDE, IMAGE_SIDE), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(HSV_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    hist = np.sqrt(hist / max(hist.sum(), 1.0))
    lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).astype(np.float32) / 255.0
    grid = cv2.resize(lab, (GRID, GRID), interpolation=cv2.INTER_AREA).ravel() - 0.5
    return np.concatenate([_unit(hist), _unit(grid)]).astype(np.float32)


def _mel_filters(rate: int, n_fft: int) -> np.ndarray:
    """(N_MELS, n_fft // 2 + 1) triangular mel filters (HTK mel scale)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)            # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)             # noqa: E731
    edges = hz(np.linspace(mel(0.0), mel(rate / 2), N_MELS + 2))
    freqs = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs) / np.maximum(hi - mid, 1e-9)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def sound_features(samples: np.ndarray, rate: int) -> np.ndarray:
    """(AUDIO_DIM,) float32: mean and standard deviation over time of the log-mel
    spectrum of int16 mono samples (any length; a very short sound is zero-padded)."""
    x = np.asarray(samples, np.float32).ravel() / 32768.0
    n_fft, hop = int(FFT_SECONDS * rate), int(HOP_SECONDS * rate)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    logmel = np.log(power @ _mel_filters(rate, n_fft).T + 1e-8)
    # the level stays in: log power of full-scale noise is ~0, of silence ~-18
    return np.concatenate([logmel.mean(0), logmel.std(0)]).astype(np.float32) / 10.0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class FixedEncoders(Embedder):
    """Version 0 as an embedder: the features above, nothing to load, no shared space."""
    version = VERSION_0
    video_dim = VIDEO_DIM
    audio_dim = AUDIO_DIM

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate

    def _video(self, stills: list[np.ndarray]) -> np.ndarray:
        return np.stack([image_features(s) for s in stills]).astype(np.float32)

    def _audio(self, sounds: list[np.ndarray]) -> np.ndarray:
        return np.stack([sound_features(s, self.sample_rate) for s in sounds]).astype(np.float32)

    def shared(self, video: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.full((len(video), 1), np.nan, np.float32),
                np.full((len(audio), 1), np.nan, np.float32))
