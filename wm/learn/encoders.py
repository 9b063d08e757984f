"""Trained models as embedders, for the memory and for queries. A version's checkpoint
carries its architecture, so any recorded version loads whatever the settings say now."""
from __future__ import annotations

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
from wm.learn.models import ModelConfig, Models
from wm.learn.train import autocast, pick_device
from wm.learn.versions import all_versions

IMAGE_CHUNK = 32      # stills per forward pass: bounded memory, still large matmuls
AUDIO_CHUNK = 32      # clip-length windows per forward pass
MIN_SOUND = 0.25      # seconds: a shorter sound is too short to embed (zero-padded to this)


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

    @torch.no_grad()
    def _video(self, stills: list[np.ndarray]) -> np.ndarray:
        size = self.config.jepa.image_size
        rgb = [_to_rgb(cv2.resize(s, (size, size), interpolation=cv2.INTER_AREA)) for s in stills]
        out = []
        for i in range(0, len(rgb), IMAGE_CHUNK):
            with autocast(self.device):
                x = to_input(np.stack(rgb[i:i + IMAGE_CHUNK]), self.device)
                out.append(embed_images(self.models.jepa.teacher, x).float().cpu())
        if not out:
            return np.zeros((0, self.video_dim), np.float32)
        return (torch.cat(out) - self.models.video_mean.cpu()).numpy()

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

    @torch.no_grad()
    def _audio(self, sounds: list[np.ndarray]) -> np.ndarray:
        """One embedding per sound: the mean over its windows."""
        wins, owner = [], []
        for i, s in enumerate(sounds):
            for w in self._windows(s):
                wins.append(w)
                owner.append(i)
        emb = np.zeros((len(wins), self.audio_dim), np.float32)
        order = sorted(range(len(wins)), key=lambda j: wins[j].size)  # equal lengths batch together
        for start in range(0, len(order), AUDIO_CHUNK):
            group = order[start:start + AUDIO_CHUNK]
            by_len: dict[int, list[int]] = {}
            for j in group:
                by_len.setdefault(wins[j].size, []).append(j)
            for idx in by_len.values():
                wave = to_wave(np.stack([wins[j] for j in idx]), self.device)
                emb[idx] = (self.models.cpc.embed(wave) - self.models.audio_mean).cpu().numpy()
        out = np.zeros((len(sounds), self.audio_dim), np.float32)
        np.add.at(out, owner, emb)
        return out / np.bincount(owner, minlength=len(sounds))[:, None].clip(1)

    @torch.no_grad()
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
