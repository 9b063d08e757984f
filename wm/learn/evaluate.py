"""After training: the numbers that show whether the night learned, on clips it never
trained on (CPC future-step accuracy, audio-to-video retrieval) and on a sample of the
day (embedding spread: collapse shows as a low effective rank or a tiny std)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from wm.learn.cpc import to_wave
from wm.learn.data import NightData, audio_batch
from wm.learn.encoders import Encoders
from wm.learn.judge import Judgement
from wm.learn.metrics import Spread, recall_at_k, spread
from wm.learn.stages import embed_refs

SPREAD_SAMPLE = 128      # clips whose embeddings measure the spread


@dataclass
class Evaluation:
    video: Spread
    audio: Spread
    shared_video: Spread
    shared_audio: Spread
    cpc_accuracy: float | None           # held-out, mean over prediction steps
    cpc_accuracy_per_step: list[float]
    cpc_chance: float
    recall_at_1: float | None            # held-out, audio -> video (the clip's own frames)
    recall_at_5: float | None
    recall_chance_at_5: float | None
    retrieval_clips: int
    collapse: list[str] = field(default_factory=list)
    judgement: Judgement | None = None   # the promotion verdict on held-out visits
    # A day too small to hold visits out is measured on clips it trained on: a check
    # that it works at all, not a measure of how well it generalises.
    on_trained_clips: bool = False


@torch.no_grad()
def cpc_accuracy(encoders: Encoders, waves: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per-step accuracy (K,) of picking the true future frame, int16 waves (n, samples)."""
    cpc = encoders.models.cpc
    gen = torch.Generator(encoders.device).manual_seed(seed)
    accs, weights = [], []
    for i in range(0, len(waves), 16):
        _, acc = cpc.loss(to_wave(waves[i:i + 16], encoders.device), gen)
        accs.append(acc.cpu().numpy())
        weights.append(len(waves[i:i + 16]))
    return np.average(np.stack(accs), axis=0, weights=weights)


def evaluate(encoders: Encoders, data: NightData, rng: np.random.Generator, min_rank: float,
             min_std: float, should_stop: Callable[[], bool]) -> Evaluation | None:
    """None if a stop was requested on the way."""
    bad = data.unreadable
    held, train = bad.readable(data.held_out), bad.readable(data.train)
    on_trained = not held
    if on_trained:
        held, train = train[:SPREAD_SAMPLE], train[SPREAD_SAMPLE:]
    rest = [train[i] for i in rng.choice(len(train), min(len(train), max(0, SPREAD_SAMPLE - len(held))),
                                         replace=False)]
    emb = embed_refs(encoders, held + rest, should_stop, bad)
    if emb is None:
        return None
    video, audio = emb
    held = bad.readable(held)          # the first rows of video and audio
    sv, sa = encoders.shared(video, audio)
    cpc = encoders.config.cpc
    with_audio = [c for c in held if c.audio]
    per_step = (cpc_accuracy(encoders, audio_batch(with_audio, encoders.config.clip_samples))
                if with_audio else None)
    both = np.array([i for i, c in enumerate(held) if c.audio and c.stills], dtype=int)
    r1 = r5 = chance = None
    if len(both) >= 2:
        r1 = recall_at_k(sa[both], sv[both], 1)
        r5 = recall_at_k(sa[both], sv[both], 5)
        chance = min(5, len(both)) / len(both)
    ev = Evaluation(
        video=spread(video), audio=spread(audio), shared_video=spread(sv), shared_audio=spread(sa),
        cpc_accuracy=float(per_step.mean()) if per_step is not None else None,
        cpc_accuracy_per_step=[float(a) for a in per_step] if per_step is not None else [],
        cpc_chance=1 / (1 + cpc.negatives), recall_at_1=r1, recall_at_5=r5,
        recall_chance_at_5=chance, retrieval_clips=len(both), on_trained_clips=on_trained)
    for name in ("video", "audio", "shared_video", "shared_audio"):
        s = getattr(ev, name)
        if s.n >= 2 and s.collapsed(min_rank, min_std):
            ev.collapse.append(name)
    return ev
