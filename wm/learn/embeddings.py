"""What every embedder gives the memory: one typed object per batch of clips, with each
kind of vector, and the per-clip arithmetic (a clip's picture vector is the mean of its
stills') shared by the trained encoders and version 0. No torch here: a query with
version 0 does not need it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("video", "audio", "shared_video", "shared_audio", "shared")


@dataclass
class StillVectors:
    """The vision encoder's vector of every still of a batch, float32 (m, D), clip by clip
    and each clip's in order: `clip` is the row of the clip each belongs to."""
    vectors: np.ndarray
    clip: np.ndarray


@dataclass
class ClipEmbeddings:
    """Every vector of a batch of clips, float32 (n, D) per kind; rows of NaN where a clip
    lacks that modality. video and audio are each encoder's own space; shared_* are
    L2-normalised and comparable across modalities (sound against sight); shared is a clip
    as seen and heard, fused from the two aligned views unless given."""
    video: np.ndarray
    audio: np.ndarray
    shared_video: np.ndarray
    shared_audio: np.ndarray
    shared: np.ndarray | None = None
    stills: StillVectors | None = None     # where the embedder was given stills

    def __post_init__(self) -> None:
        for kind in ("video", "audio", "shared_video", "shared_audio"):
            setattr(self, kind, np.asarray(getattr(self, kind), np.float32))
        self.shared = (fused_shared(self.shared_video, self.shared_audio) if self.shared is None
                       else np.asarray(self.shared, np.float32))

    def of(self, kind: str) -> np.ndarray:
        """The vectors of one kind by name, as a query plan and the memory's shards name them."""
        if kind not in KINDS:
            raise KeyError(kind)
        return getattr(self, kind)


def fused_shared(shared_video: np.ndarray, shared_audio: np.ndarray) -> np.ndarray:
    """The normalised sum of whichever aligned views a clip has (NaN where it has none)."""
    total = np.nan_to_num(shared_video) + np.nan_to_num(shared_audio)
    out = total / np.maximum(np.linalg.norm(total, axis=-1, keepdims=True), 1e-12)
    out[np.isnan(shared_video).any(1) & np.isnan(shared_audio).any(1)] = np.nan
    return out


class Embedder:
    """Subclasses give `version`, `video_dim`, `audio_dim`, `_video(stills)` (one row per
    still), `_audio(sounds)` (one row per sound) and `shared(video, audio)`."""
    version: str
    video_dim: int
    audio_dim: int

    def prepare_stills(self, stills: list[np.ndarray]) -> list[np.ndarray]:
        """What embed_clips may be given instead of the stills, with the same result:
        work a reading thread can do beside the model (here, none)."""
        return stills

    def embed_clips(self, stills: list[list[np.ndarray]], audio: list[np.ndarray | None]) -> ClipEmbeddings:
        """stills: each clip's BGR frames (may be empty); audio: each clip's int16 16 kHz
        samples or None."""
        if len(stills) != len(audio):
            raise ValueError(f"{len(stills)} clips of stills but {len(audio)} of audio")
        n = len(stills)
        video = np.full((n, self.video_dim), np.nan, np.float32)
        flat = [s for clip in stills for s in clip]
        per_still = None
        if flat:
            vectors = np.asarray(self._video(flat), np.float32)
            owner = np.repeat(np.arange(n), [len(c) for c in stills])
            per_still = StillVectors(vectors, owner)
            sums = np.zeros((n, self.video_dim), np.float32)
            np.add.at(sums, owner, vectors)
            counts = np.bincount(owner, minlength=n)
            video[counts > 0] = sums[counts > 0] / counts[counts > 0, None]
        aud = np.full((n, self.audio_dim), np.nan, np.float32)
        have = [i for i, a in enumerate(audio) if a is not None]
        if have:
            aud[have] = self._audio([audio[i] for i in have])
        shared_video, shared_audio = self.shared(video, aud)
        return ClipEmbeddings(video, aud, shared_video, shared_audio, stills=per_still)

    def embed_image(self, bgr: np.ndarray) -> ClipEmbeddings:
        return self.embed_clips([[bgr]], [None])

    def embed_sound(self, samples: np.ndarray) -> ClipEmbeddings:
        """int16 16 kHz mono samples, any length."""
        return self.embed_clips([[]], [samples])
