"""The three models together, the architecture they were built with, and how they are
saved: a checkpoint carries its own ModelConfig, so a later change to the settings never
breaks loading an older model version."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from wm.base.config import AlignSettings, CpcSettings, JepaSettings, Settings
from wm.learn.align import Align
from wm.learn.cpc import Cpc
from wm.learn.jepa import Jepa

# The settings that change the shapes or meaning of the weights (the rest are training knobs).
_ARCH = {
    "jepa": ("image_size", "patch_size", "depth", "heads", "width", "predictor_depth", "predictor_width"),
    "cpc": ("n_mels", "hop_ms", "hidden", "prediction_steps"),
    "align": ("dim",),
}


@dataclass(frozen=True)
class ModelConfig:
    jepa: JepaSettings
    cpc: CpcSettings
    align: AlignSettings
    sample_rate: int
    clip_samples: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "ModelConfig":
        s = settings.learn
        return cls(s.jepa, s.cpc, s.align, settings.capture.sample_rate, settings.capture.clip_samples)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        # A model saved before `cpc.pool` existed embeds a sound by its context c: its
        # stored mean, its alignment heads and its committed memories were all made so.
        cpc = {"pool": "c", **d["cpc"]}
        return cls(JepaSettings(**d["jepa"]), CpcSettings(**cpc), AlignSettings(**d["align"]),
                   d["sample_rate"], d["clip_samples"])

    def same_architecture(self, other: "ModelConfig") -> bool:
        return self.sample_rate == other.sample_rate and all(
            getattr(getattr(self, part), key) == getattr(getattr(other, part), key)
            for part, keys in _ARCH.items() for key in keys)


class Models(torch.nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.jepa = Jepa(config.jepa)
        self.cpc = Cpc(config.cpc, config.sample_rate)
        self.align = Align(config.jepa.width, config.cpc.hidden, config.align)
        # Each kind's mean over the night's clips, subtracted by the embedder (commit and
        # query alike): uncentred, every picture scores above 0.998 against every other.
        self.register_buffer("video_mean", torch.zeros(config.jepa.width))
        self.register_buffer("audio_mean", torch.zeros(config.cpc.hidden))

    def load_weights(self, state: dict) -> None:
        """Load a state dict; one saved before versions kept their means loads uncentred."""
        state = dict(state)
        for key in ("video_mean", "audio_mean"):
            state.setdefault(key, torch.zeros_like(getattr(self, key)))
        self.load_state_dict(state)


def build_models(config: ModelConfig, seed: int) -> Models:
    torch.manual_seed(seed)
    return Models(config)
