"""Trained models as embedders, for the memory and for queries. A version's checkpoint
carries its architecture, so any recorded version loads whatever the settings say now."""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import cv2
import numpy as np
import torch

from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.learn.cpc import to_wave
from wm.learn.embeddings import ClipEmbeddings, Embedder  # noqa: F401 (ClipEmbeddings: re-exported)
from wm.learn.fixed import VERSION_0, FixedEncoders
from wm.learn.jepa import embed_images, to_input
from wm.learn.modelfiles import load_checkpoint, load_version, newest_usable  # noqa: F401 (load_checkpoint: re-exported)
from wm.learn.models import ModelConfig, Models, build_models
from wm.learn.train import autocast, pick_device
from wm.learn.versions import all_versions

IMAGE_CHUNK = 16      # stills per forward pass: bounded memory, still large matmuls
AUDIO_CHUNK = 8       # clip-length windows per forward pass (the GRU gains nothing from more)
T = TypeVar("T")
MIN_SOUND = 0.25      # seconds: a shorter sound is too short to embed (zero-padded to this)


def in_workers(fn: Callable[[T], torch.Tensor], items: list[T],
               device: torch.device) -> list[torch.Tensor]:
    """fn(item) for each item, on as many Python threads as torch has CPU threads, each
    running torch on one thread. Torch's own threads wait for each other at every
    operation, so one core taken by another process stalls them all (measured on 2 cores
    beside a busy process: 2 torch threads ran a ViT 2-4x slower than 1); work items
    pulled by independent threads only lose the share the busy core would have done."""
    workers = min(torch.get_num_threads(), len(items)) if device.type == "cpu" else 1
    if workers <= 1:
        return [fn(x) for x in items]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, items))
    finally:
        torch.set_num_threads(before)


def _to_rgb(img: np.ndarray) -> np.ndarray:
    """BGR, BGRA or grey (as cv2.imread gives them) -> RGB."""
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


class Encoders(Embedder):
    """A trained version's models as an embedder. The version's normalisation (each kind's
    mean over its night, kept in the model file) is applied here, so commit and query see
    the same centred vectors."""

    def __init__(self, models: Models, version: str, device: torch.device):
        self.models = models.to(device).eval()
        self.config = models.config
        self.version = version
        self.device = device

    @property
    def video_dim(self) -> int:
        return self.config.jepa.width

    @property
    def audio_dim(self) -> int:
        return self.config.cpc.hidden

    def prepare_stills(self, stills: list[np.ndarray]) -> list[np.ndarray]:
        """Stills shrunk to the model's input (BGR): the commit does this on its reading
        thread, beside the model's arithmetic. `_video` gives the same vectors either way."""
        size = self.config.jepa.image_size
        return [s if s.shape[:2] == (size, size)
                else cv2.resize(s, (size, size), interpolation=cv2.INTER_AREA) for s in stills]

    def _video(self, stills: list[np.ndarray]) -> np.ndarray:
        if not stills:
            return np.zeros((0, self.video_dim), np.float32)
        chunks = [stills[i:i + IMAGE_CHUNK] for i in range(0, len(stills), IMAGE_CHUNK)]
        out = torch.cat(in_workers(self._video_chunk, chunks, self.device))
        return (out - self.models.video_mean.cpu()).numpy()

    def _video_chunk(self, stills: list[np.ndarray]) -> torch.Tensor:
        rgb = np.stack([_to_rgb(s) for s in self.prepare_stills(stills)])
        with torch.inference_mode(), autocast(self.device):
            x = to_input(rgb, self.device)
            return embed_images(self.models.jepa.teacher, x).float().cpu()

    def _windows(self, samples: np.ndarray) -> list[np.ndarray]:
        """A sound cut into clip-length windows (a tail shorter than a second is dropped
        unless it is all there is): the model was trained on clips."""
        n = self.config.clip_samples
        x = np.asarray(samples, np.int16).ravel()
        minimum = int(MIN_SOUND * self.config.sample_rate)
        if x.size < minimum:
            x = np.pad(x, (0, minimum - x.size))
        wins = [x[i:i + n] for i in range(0, x.size, n)]
        if len(wins) > 1 and wins[-1].size < self.config.sample_rate:
            wins.pop()
        return wins

    def _audio(self, sounds: list[np.ndarray]) -> np.ndarray:
        """One embedding per sound: the mean over its windows."""
        wins, owner = [], []
        for i, s in enumerate(sounds):
            for w in self._windows(s):
                wins.append(w)
                owner.append(i)
        # Windows of equal length batch together (a sound's tail is shorter).
        by_len: dict[int, list[int]] = {}
        for j in sorted(range(len(wins)), key=lambda j: wins[j].size):
            by_len.setdefault(wins[j].size, []).append(j)
        groups = [idx[i:i + AUDIO_CHUNK] for idx in by_len.values()
                  for i in range(0, len(idx), AUDIO_CHUNK)]

        def chunk(idx: list[int]) -> torch.Tensor:
            with torch.inference_mode():
                wave = to_wave(np.stack([wins[j] for j in idx]), self.device)
                return (self.models.cpc.embed(wave) - self.models.audio_mean).cpu()

        emb = np.zeros((len(wins), self.audio_dim), np.float32)
        for idx, e in zip(groups, in_workers(chunk, groups, self.device)):
            emb[idx] = e.numpy()
        out = np.zeros((len(sounds), self.audio_dim), np.float32)
        np.add.at(out, owner, emb)
        return out / np.bincount(owner, minlength=len(sounds))[:, None].clip(1)

    @torch.inference_mode()
    def shared(self, video: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        heads = self.models.align
        out = []
        for x, head in ((video, heads.video), (audio, heads.audio)):
            y = np.full((len(x), self.config.align.dim), np.nan, np.float32)
            ok = ~np.isnan(x).any(1)
            if ok.any():
                y[ok] = head(torch.from_numpy(x[ok]).to(self.device)).float().cpu().numpy()
            out.append(y)
        return out[0], out[1]


def seconds_per_clip(settings: Settings, device: torch.device, clips: int = 8) -> float:
    """Seconds the commit's embedding takes per clip on this machine now, with models of
    the settings' sizes (random weights: the same arithmetic as a trained version) on
    synthetic media of the recorder's sizes (3 stills, a clip of sound). A second or two,
    measured at the night's thread count; what it leaves out (JPEG decoding, shard
    writes) is the plan's margin (wm.nightly.plan)."""
    cap = settings.capture
    with torch.random.fork_rng(devices=[]):   # the night's random state stays the night's
        enc = Encoders(build_models(ModelConfig.from_settings(settings), 0), "probe", device)
    rng = np.random.default_rng(0)
    still = rng.integers(0, 256, (cap.video_height, cap.video_width, 3), np.uint8)
    sound = rng.integers(-3000, 3000, cap.clip_samples).astype(np.int16)
    n_stills = cap.clip_seconds * cap.frame_rate
    enc.embed_clips([[still] * n_stills], [sound])     # warm-up: first calls allocate
    t = time.perf_counter()
    enc.embed_clips([[still] * n_stills] * clips, [sound] * clips)
    return (time.perf_counter() - t) / clips


def models_from_checkpoint(ckpt: dict) -> Models:
    models = Models(ModelConfig.from_dict(ckpt["config"]))
    models.load_weights(ckpt["models"])
    return models


def load_encoders(settings: Settings, paths: Paths, version: str | None = None) -> Embedder:
    """The newest promoted version whose file loads (older promoted ones, then version 0,
    stand in for one whose file is missing or corrupt), or the named one (promoted or
    not; a WmError if its file fails)."""
    if version == VERSION_0:
        return FixedEncoders(settings.capture.sample_rate)
    # Loaded on the CPU and moved once the models are built: no second copy on the GPU.
    cpu = torch.device("cpu")
    if version is None:
        found = newest_usable(paths, cpu)
        if found is None:
            return FixedEncoders(settings.capture.sample_rate)
        v, ckpt = found
    else:
        named = [x for x in all_versions(paths) if x.version == version]
        if not named:
            raise WmError(f"model version {version} is not known (see `wm status`)")
        v = named[0]
        ckpt = load_version(paths, v, cpu)
    return Encoders(models_from_checkpoint(ckpt), v.version, pick_device(settings.learn.device))
