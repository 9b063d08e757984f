"""Audio-visual alignment, CLIP style: a projection head per modality maps the (frozen)
JEPA and CPC clip embeddings into one shared space; a symmetric InfoNCE with a learnable
temperature pulls a clip's sound and sight together. Clips close in time (the same visit)
are near-duplicates of each other, so they count as each other's positives."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from wm.base.config import AlignSettings


def _multi_positive(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log(softmax mass on the row's positives)."""
    pos = logits.masked_fill(~positive, float("-inf")).logsumexp(1)
    return (logits.logsumexp(1) - pos).mean()


class Head(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        # LayerNorm first: the two encoders' embeddings live at unrelated scales.
        self.net = nn.Sequential(nn.LayerNorm(dim_in), nn.Linear(dim_in, dim_in), nn.GELU(),
                                 nn.Linear(dim_in, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


class Align(nn.Module):
    def __init__(self, video_dim: int, audio_dim: int, s: AlignSettings):
        super().__init__()
        self.video = Head(video_dim, s.dim)
        self.audio = Head(audio_dim, s.dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / s.temperature_init)))
        self.max_log_scale = math.log(s.max_logit_scale)

    def loss(self, video: torch.Tensor, audio: torch.Tensor, times: torch.Tensor,
             exclusion_seconds: float) -> torch.Tensor:
        """Multi-positive InfoNCE: a sound's positives are the pictures of every clip within
        `exclusion_seconds` of it (the same visit), not only its own clip's; treating them
        as negatives would teach the heads to tell apart moments of one place."""
        v, a = self.video(video), self.audio(audio)
        logits = self.logit_scale.exp() * a @ v.T
        near = (times[:, None] - times[None, :]).abs() < exclusion_seconds
        near.fill_diagonal_(True)
        return (_multi_positive(logits, near) + _multi_positive(logits.T, near.T)) / 2

    @torch.no_grad()
    def clamp_(self) -> None:
        self.logit_scale.clamp_(0, self.max_log_scale)
