"""Helpers for the memory tests.

ToyEncoders satisfies the Encoders interface (wm/learn/encoders.py) with real, simple
functions of the media: colour and edge-orientation histograms for pictures, log band
energies for sound, and a shared space fitted by CCA on the day's paired clips (a
closed-form cousin of the contrastive alignment). Same-scene clips really are similar, so
the tests exercise commit and search mechanics without waiting for a trained model. Each
version applies its own random rotation: vectors of two versions are not comparable, as
with two trainings of a real model."""
from __future__ import annotations

import time

import cv2
import numpy as np

from wm.base.manifest import Manifest
from wm.base.media import read_wav
from wm.base.queue import Queue
from wm.learn.encoders import ClipEmbeddings
from wm.memory.shards import KINDS, clip_keys_of
from wm.memory.store import Store

SHARED_DIM = 3
# Real models at toy sizes: the commit and query paths with their true arithmetic, in seconds.
SMALL_MODELS = {
    "learn": {"device": "cpu",
              "jepa": {"image_size": 64, "patch_size": 16, "depth": 1, "heads": 2, "width": 32,
                       "predictor_depth": 1, "predictor_width": 16},
              "cpc": {"hidden": 32, "n_mels": 32},
              "align": {"dim": 16}},
}


def video_features(stills: list[np.ndarray]) -> np.ndarray:
    feats = []
    for bgr in stills:
        small = cv2.resize(bgr, (80, 60), interpolation=cv2.INTER_AREA)
        hist = cv2.calcHist([small], [0, 1, 2], None, [4, 4, 4], [0, 256] * 3).ravel()
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        ang = (np.arctan2(gy, gx) % np.pi).ravel()
        edges = np.bincount((ang / np.pi * 8).astype(int) % 8, np.hypot(gx, gy).ravel(), 8)
        feats.append(np.concatenate([hist / hist.sum(), edges / (edges.sum() + 1e-9)]))
    return np.sqrt(np.mean(feats, axis=0))


def audio_features(samples: np.ndarray, rate: int = 16000) -> np.ndarray:
    x = samples.astype(np.float32) / 32768.0
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    edges = np.geomspace(60, rate / 2, 33)
    bands = np.array([spec[(freqs >= a) & (freqs < b)].sum() for a, b in zip(edges, edges[1:])])
    logb = np.log(bands + 1e-6)
    return logb - logb.mean()


def _rotation(rng: np.random.Generator, n: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q


class ToyEncoders:
    def __init__(self, version: str, video_feats: np.ndarray, audio_feats: np.ndarray,
                 seed: int = 0, delay: float = 0.0):
        self.version = version
        self.delay = delay
        rng = np.random.default_rng(seed)
        self.rv = _rotation(rng, video_feats.shape[1])
        self.ra = _rotation(rng, audio_feats.shape[1])
        self.mv, self.ma = video_feats.mean(0), audio_feats.mean(0)
        self.cca_v, self.cca_a = _cca(video_feats - self.mv, audio_feats - self.ma, SHARED_DIM)
        self.calls = 0

    def embed_clips(self, stills, audio) -> ClipEmbeddings:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        n = len(stills)
        dv, da = self.rv.shape[0], self.ra.shape[0]
        video, aud = np.full((n, dv), np.nan, np.float32), np.full((n, da), np.nan, np.float32)
        shared_video = np.full((n, SHARED_DIM), np.nan, np.float32)
        shared_audio = np.full((n, SHARED_DIM), np.nan, np.float32)
        for i, (s, a) in enumerate(zip(stills, audio)):
            if s:
                f = video_features(s) - self.mv
                video[i] = f @ self.rv
                z = f @ self.cca_v
                shared_video[i] = z / np.linalg.norm(z)
            if a is not None:
                f = audio_features(a) - self.ma
                aud[i] = f @ self.ra
                z = f @ self.cca_a
                shared_audio[i] = z / np.linalg.norm(z)
        return ClipEmbeddings(video, aud, shared_video, shared_audio)

    def embed_image(self, bgr):
        return self.embed_clips([[bgr]], [None])

    def embed_sound(self, samples):
        return self.embed_clips([[]], [samples])


def _cca(x: np.ndarray, y: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    def inv_sqrt(c):
        w, v = np.linalg.eigh(c + 1e-3 * np.trace(c) / len(c) * np.eye(len(c)))
        return v @ np.diag(w ** -0.5) @ v.T

    n = len(x)
    wx, wy = inv_sqrt(x.T @ x / n), inv_sqrt(y.T @ y / n)
    u, _, vt = np.linalg.svd(wx @ (x.T @ y / n) @ wy)
    return wx @ u[:, :d], wy @ vt.T[:, :d]


def fit_toy_encoders(paths, clips, version: str, seed: int = 0, delay: float = 0.0) -> ToyEncoders:
    """Fit on a day's clips (list of SynthClip), reading their media from disk."""
    vf, af = [], []
    for c in clips:
        m = c.manifest
        a = audio_features(read_wav(paths.data / m.audio)[0])
        # Each still with its clip's sound: the alignment also sees single pictures, as
        # a query by picture is.
        for f in m.frames:
            vf.append(video_features([cv2.imread(str(paths.data / f))]))
            af.append(a)
    return ToyEncoders(version, np.stack(vf), np.stack(af), seed=seed, delay=delay)


def enqueue(paths, clips) -> None:
    q = Queue(paths.memory_db)
    for c in clips:
        q.enqueue(c.manifest, str(c.manifest_path.relative_to(paths.data)))
    q.close()


def check_consistent(paths) -> dict:
    """Everything a reader relies on: every row names whole arrays, every key is a clip,
    every memory clip is committed in the queue and has its current version's vectors.
    Returns counts for the test to compare."""
    with Store(paths) as store:
        clips = {r[0]: r for r in store.conn.execute(
            "SELECT key, clip_id, version, frames, audio FROM memory_clips")}
        keys_by_vk: dict = {}
        for s in store.all_shards():
            vec, keys = store.load(s)
            assert vec.shape == (s.rows, s.dim) and keys.shape == (s.rows,)
            assert np.all(np.diff(keys) > 0), "keys sorted, no duplicate rows in a shard"
            assert np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-4)
            assert set(map(int, clip_keys_of(keys, s.kind))) <= set(clips)
            keys_by_vk.setdefault((s.version, s.kind), []).extend(map(int, keys))
        for (v, kind), ks in keys_by_vk.items():
            assert len(ks) == len(set(ks)), f"clip stored twice in {v}/{kind}"
        for key, cid, version, frames, audio in clips.values():
            assert key in keys_by_vk.get((version, "shared"), []), cid
            if frames != "[]":
                assert key in keys_by_vk.get((version, "video"), []), cid
            if audio:
                assert key in keys_by_vk.get((version, "audio"), []), cid
        states = dict(store.conn.execute("SELECT clip_id, state FROM queue"))
        in_memory = {r[1] for r in clips.values()}
        assert all(states[c] in ("committed", "purged") for c in in_memory)
        assert {c for c, s in states.items() if s == "committed"} <= in_memory
        files = {p for s in store.all_shards() for p in store.shard_path(s)}
        on_disk = {p for p in paths.embeddings.rglob("*.npy")}
        return {"clips": len(clips), "orphans": len(on_disk - files),
                "queued": sum(s == "queued" for s in states.values()),
                "kinds": sorted({k for _, k in keys_by_vk}) == sorted(KINDS)}


def settings_for_tests(**overrides):
    from wm.base import config

    over = {"capture": {"video_width": 320, "video_height": 240}}
    for section, values in overrides.items():
        over.setdefault(section, {}).update(values)
    return config.load(None, overrides=over)


def make_memory_day(paths, settings, date: str, n_clips: int, seed: int = 0, start=None):
    """Synthetic clips written and queued (not yet committed); returns the SynthClips."""
    from wm.demo.synth import make_day

    clips = make_day(settings, paths, date, n_clips=n_clips, n_scenes=4, seed=seed, start=start)
    enqueue(paths, clips)
    return clips


def committed_days(paths, settings, days: list[tuple[str, int, int]], version: str = "v1"):
    """Each (date, clips, seed) made and committed with toy encoders fitted on them all;
    returns the SynthClips of each day and the encoders."""
    from wm.memory.commit import commit_queued

    made = [make_memory_day(paths, settings, d, n_clips=n, seed=seed) for d, n, seed in days]
    enc = day_encoders(paths, version)
    commit_queued(settings, paths, enc, lambda: False)
    return made, enc


def day_encoders(paths, version: str, seed: int = 0):
    """Toy encoders fitted on every clip on disk (reproducible: same clips, same encoders)."""
    from types import SimpleNamespace

    manifests = [Manifest.read(p) for p in sorted(paths.data.glob("clips/*/*.json"))]
    clips = [SimpleNamespace(manifest=m) for m in manifests if (paths.data / m.audio).exists()]
    return fit_toy_encoders(paths, clips, version, seed=seed)
