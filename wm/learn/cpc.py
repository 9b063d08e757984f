"""Audio, CPC: log-mel frames (10 ms hop) -> convolutional encoder z_t -> GRU context c_t;
from c_t a linear head per step k predicts z_{t+k}, scored by InfoNCE against negatives
drawn from the same clip, away from the positive (silence and steady sounds make the
frames right next to it near-duplicates), and from the other clips of the batch. A clip's
audio embedding is z_t averaged (settings `pool`: c_t in models saved before it existed):
the context is shaped to predict the next 120 ms, the frames under it keep more of what
the place sounds like, and tell places apart better on real footage."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from wm.base.config import CpcSettings

# Training windows of 1.28 s cut at random from each clip (CPC_audio's 20480 samples): the
# GRU runs step by step, so a shorter window is a proportionally cheaper step.
WINDOW_SECONDS = 1.28


# Fixed affine map of the log-mel (about its mean and spread on real recordings): unlike a
# per-clip normalisation it keeps the level, and how loud a place is tells places apart.
LOG_MEL_MEAN, LOG_MEL_STD = -3.0, 4.0


class LogMel(nn.Module):
    def __init__(self, sample_rate: int, n_mels: int, hop_ms: int):
        super().__init__()
        # Imported here: a query by picture, which never builds this, does not pay for it.
        import torchaudio

        # center=False: a frame covers only samples up to its end, so the context never
        # hears ahead of the frame it stands on.
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=int(0.025 * sample_rate), hop_length=sample_rate * hop_ms // 1000,
            n_mels=n_mels, center=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """float waveform (B, S) in [-1, 1] -> (B, T, n_mels)."""
        x = torch.log(self.mel(wave) + 1e-6).transpose(1, 2)
        return (x - LOG_MEL_MEAN) / LOG_MEL_STD


class ConvEncoder(nn.Module):
    """Three causal 1-D convolutions over time (kernel 3, stride 1: one z per 10 ms frame,
    padded on the left only, so z_t sees frames up to t and never after)."""

    def __init__(self, n_mels: int, hidden: int):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(n_mels, hidden, 3),
                                    nn.Conv1d(hidden, hidden, 3),
                                    nn.Conv1d(hidden, hidden, 3)])
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in self.convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) -> (B, T, hidden)."""
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(F.pad(x.transpose(1, 2), (2, 0))).transpose(1, 2)))
        return x


def sample_negatives(gen: torch.Generator, shape: tuple[int, ...], positive: torch.Tensor, length: int,
                     exclusion: int, n: int) -> torch.Tensor:
    """n frame indices per positive, uniform over [0, length) minus the window
    [positive - exclusion, positive + exclusion]. positive: (...,) -> (..., n)."""
    lo = (positive - exclusion).clamp(min=0)
    hi = (positive + exclusion).clamp(max=length - 1)
    width = hi - lo + 1
    allowed = length - width
    if int(allowed.min()) <= 0:
        raise ValueError(f"clips of {length} frames leave no negatives {exclusion} frames away")
    u = torch.rand(*shape, n, generator=gen, device=positive.device)
    j = (u * allowed.unsqueeze(-1)).long()
    return j + (j >= lo.unsqueeze(-1)).long() * width.unsqueeze(-1)


def other_clip_frames(gen: torch.Generator, shape: tuple[int, ...], batch: int, length: int,
                      n: int, device: torch.device) -> torch.Tensor:
    """n frame indices per prediction into the (batch * length) frames of the batch, from
    clips other than the predicting one (dim 0 of `shape` is the clip)."""
    u = torch.rand(*shape, n, generator=gen, device=device)
    j = (u * (batch - 1) * length).long()
    own = torch.arange(batch, device=device).view(-1, *([1] * len(shape)))
    return j + (j >= own * length).long() * length


class Cpc(nn.Module):
    def __init__(self, s: CpcSettings, sample_rate: int):
        super().__init__()
        self.steps, self.negatives, self.exclusion = s.prediction_steps, s.negatives, s.negative_exclusion
        self.other_share = s.other_clip_negatives
        self.pool = s.pool
        self.sample_rate = sample_rate
        self.mel = LogMel(sample_rate, s.n_mels, s.hop_ms)
        self.encoder = ConvEncoder(s.n_mels, s.hidden)
        self.gru = nn.GRU(s.hidden, s.hidden, batch_first=True)
        self.heads = nn.Linear(s.hidden, s.hidden * s.prediction_steps)  # all K heads, one matmul

    def features(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(self.mel(wave))
        c, _ = self.gru(z)
        return z, c

    def loss(self, wave: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE over K future steps; also the per-step accuracy (K,) of picking the true
        future among 1 + negatives (chance 1 / (1 + negatives)). Negatives come from the
        clip itself (away from the positive) and, with more than one clip, from the
        others: the same-clip ones teach what changes, the others what the place is."""
        z, c = self.features(wave)
        b, t, h = z.shape
        k = self.steps
        span = t - k
        pred = self.heads(c[:, :span]).view(b, span * k, h)
        # Every prediction against every frame of its own clip: one batched matmul, then
        # pick the positive and the sampled negatives out of the score table.
        scores = torch.bmm(pred, z.transpose(1, 2)).view(b, span, k, t)
        steps = torch.arange(1, k + 1, device=z.device)
        pos = (torch.arange(span, device=z.device)[:, None] + steps).expand(b, -1, -1)
        n_other = int(round(self.negatives * self.other_share)) if b > 1 else 0
        neg = sample_negatives(gen, (b, span, k), pos, t, self.exclusion, self.negatives - n_other)
        logits = torch.gather(scores, 3, torch.cat([pos.unsqueeze(-1), neg], -1))
        if n_other:
            # One draw of other clips' frames per clip, shared by all its predictions: as
            # cheap as the own-clip table (a full cross-clip table costs b times more).
            other = z.reshape(b * t, h)[other_clip_frames(gen, (b,), b, t, n_other, z.device)]
            far = torch.bmm(pred, other.transpose(1, 2)).view(b, span, k, n_other)
            logits = torch.cat([logits, far], -1)
        logits = logits / h ** 0.5
        loss = F.cross_entropy(logits.reshape(-1, 1 + self.negatives),
                               torch.zeros(b * span * k, dtype=torch.long, device=z.device))
        acc = (logits.argmax(-1) == 0).float().mean((0, 1))
        return loss, acc.detach()

    @torch.no_grad()
    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """The clip's frames z (or context c, as the model was saved) averaged, (B, hidden)."""
        if self.pool == "z":
            return self.encoder(self.mel(wave)).mean(1)     # the GRU is not needed
        return self.features(wave)[1].mean(1)


def random_windows(rng: np.random.Generator, samples: np.ndarray, length: int) -> np.ndarray:
    """A random `length`-sample window of each row of (n, S)."""
    if samples.shape[1] <= length:
        return samples
    starts = rng.integers(0, samples.shape[1] - length + 1, len(samples))
    return np.stack([row[s:s + length] for row, s in zip(samples, starts)])


def to_wave(samples: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """int16 (B, S) -> float in [-1, 1] on `device`."""
    return torch.as_tensor(samples).to(device).float() / 32768.0
