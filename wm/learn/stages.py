"""The three training stages of a night: what one step of each does."""
from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from wm.base.config import Settings
from wm.learn.cpc import WINDOW_SECONDS, random_windows, to_wave
from wm.learn.data import (
    MEDIA_ERRORS,
    ClipRef,
    NightData,
    NoReadableClips,
    StillCache,
    Unreadable,
    clip_audio,
    draw_readable,
    frame_pair,
    read_clip_audio,
    read_still,
)
from wm.learn.encoders import Encoders
from wm.learn.holdout import VISIT_GAP_SECONDS, hold_out_blocks, time_blocks
from wm.learn.jepa import to_input
from wm.learn.masks import sample_masks, spec_for
from wm.learn.models import Models
from wm.learn.train import Stage, autocast, momentum_at

ALIGN_POOL = 4096        # clips embedded for the alignment stage (one pass over each)
FULL_BATCH = 1024        # alignment clips per step (all of a small day)
EARLY_STOP_MIN = 50      # clips below which the alignment holds out no visits
EVAL_EVERY = 10          # alignment steps between held-out losses
EMBED_CHUNK = 64         # clips loaded at once while embedding them


def _micro(batch: int, micro: int) -> list[int]:
    return [min(micro, batch - i) for i in range(0, batch, micro)]


def _sample(rng: np.random.Generator, clips: list[ClipRef], n: int) -> list[ClipRef]:
    """n of the clips, in their order."""
    return [clips[i] for i in np.sort(rng.choice(len(clips), n, replace=False))]


class JepaStage(Stage):
    name, unit = "jepa", "images"

    def __init__(self, models: Models, data: NightData, settings: Settings, rng: np.random.Generator,
                 device: torch.device):
        s = settings.learn
        self.jepa, self.rng, self.device = models.jepa, rng, device
        self.s = s.jepa
        self.batch, self.lr, self.micro = s.batch_size, s.jepa.lr, s.micro_batch
        self.replay_fraction = s.replay_fraction
        self.module = torch.nn.ModuleList([self.jepa.encoder, self.jepa.predictor])
        self.spec = spec_for(self.s.image_size, self.s.patch_size, self.s.mask_ratio, self.s.target_blocks)
        self.bad = data.unreadable
        self.today = [c for c in self.bad.readable(data.train) if c.stills]
        self.replay = [c for c in self.bad.readable(data.replay) if c.stills]
        self.cache = StillCache(self.s.image_size)
        # The next micro-batch is decoded and cropped in a thread while this one trains
        # (OpenCV lets go of the GIL); only that thread draws from `rng` in this stage.
        self.loader = ThreadPoolExecutor(1, thread_name_prefix="wm-jepa-load")
        self.ahead: Future | None = None

    @property
    def has_data(self) -> bool:
        return bool(self.today or self.replay)

    def _load(self, m: int):
        pairs = draw_readable(self.rng, self.today, self.replay, m, self.replay_fraction,
                              lambda c: frame_pair(self.rng, c, self.s.image_size, self.s.cross_frame,
                                                   self.cache), self.bad)
        now, later = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        return now, later, sample_masks(self.rng, self.spec, m)

    def step(self, step: int, total: int, should_stop: Callable[[], bool]) -> dict[str, float] | None:
        loss_sum = 0.0
        sizes = _micro(self.batch, self.micro)
        for i, m in enumerate(sizes):
            if should_stop():
                return None
            batch = (self.ahead or self.loader.submit(self._load, m)).result()
            self.ahead = self.loader.submit(self._load, sizes[(i + 1) % len(sizes)])
            now, later, masks = batch
            with autocast(self.device):
                loss = self.jepa.loss(to_input(now, self.device), masks, to_input(later, self.device))
            (loss * (m / self.batch)).backward()
            loss_sum += loss.item() * m / self.batch
        return {"loss": loss_sum}

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.exception()     # wait for it; a failed prefetch no step will use is moot
        self.loader.shutdown()

    def after_step(self, step: int, total: int) -> None:
        self.jepa.update_teacher(momentum_at(step + 1, total, self.s.ema_start, self.s.ema_end))


class CpcStage(Stage):
    name, unit = "cpc", "clips"

    def __init__(self, models: Models, data: NightData, settings: Settings, rng: np.random.Generator,
                 device: torch.device, gen: torch.Generator):
        s = settings.learn
        self.cpc, self.rng, self.device, self.gen = models.cpc, rng, device, gen
        self.batch, self.lr, self.micro = s.batch_size, s.cpc.lr, s.micro_batch
        self.replay_fraction = s.replay_fraction
        self.samples = settings.capture.clip_samples
        self.window = int(WINDOW_SECONDS * settings.capture.sample_rate)
        self.module = self.cpc
        self.bad = data.unreadable
        self.today = [c for c in self.bad.readable(data.train) if c.audio]
        self.replay = [c for c in self.bad.readable(data.replay) if c.audio]

    @property
    def has_data(self) -> bool:
        return bool(self.today or self.replay)

    def step(self, step: int, total: int, should_stop: Callable[[], bool]) -> dict[str, float] | None:
        loss_sum, acc_sum = 0.0, 0.0
        for m in _micro(self.batch, self.micro):
            if should_stop():
                return None
            audio = draw_readable(self.rng, self.today, self.replay, m, self.replay_fraction,
                                  lambda c: clip_audio(c, self.samples), self.bad)
            waves = random_windows(self.rng, np.stack(audio), self.window)
            loss, acc = self.cpc.loss(to_wave(waves, self.device), self.gen)
            (loss * (m / self.batch)).backward()
            loss_sum += loss.item() * m / self.batch
            acc_sum += acc.mean().item() * m / self.batch
        return {"loss": loss_sum, "accuracy": acc_sum}


def _clip_media(c: ClipRef) -> tuple[list[np.ndarray], np.ndarray | None]:
    return [read_still(p) for p in c.stills], read_clip_audio(c.audio) if c.audio else None


def load_clip_media(clips: list[ClipRef], bad: Unreadable | None = None
                    ) -> tuple[list[list[np.ndarray]], list[np.ndarray | None]]:
    """BGR stills and int16 audio of each clip, as Encoders.embed_clips takes them. With
    `bad`, a clip whose media cannot be read is recorded there and left out (the caller
    keeps `bad.readable(clips)`); without, it raises."""
    stills, audio = [], []
    for c in clips:
        if bad is not None and c.id in bad.clips:
            continue
        try:
            s, a = _clip_media(c)
        except MEDIA_ERRORS as e:
            if bad is None:
                raise
            bad.add(c, str(e))
            continue
        stills.append(s)
        audio.append(a)
    return stills, audio


def embed_refs(encoders: Encoders, clips: list[ClipRef], should_stop: Callable[[], bool] = lambda: False,
               bad: Unreadable | None = None):
    """(video, audio) embeddings of clips, in chunks; None if a stop was requested. With
    `bad`, rows only for the clips that could be read: `bad.readable(clips)` afterwards."""
    video, audio = [], []
    for i in range(0, len(clips), EMBED_CHUNK):
        if should_stop():
            return None
        e = encoders.embed_clips(*load_clip_media(clips[i:i + EMBED_CHUNK], bad))
        video.append(e.video)
        audio.append(e.audio)
    dim_v, dim_a = encoders.video_dim, encoders.audio_dim
    return (np.concatenate(video) if video else np.zeros((0, dim_v), np.float32),
            np.concatenate(audio) if audio else np.zeros((0, dim_a), np.float32))


class AlignStage(Stage):
    """Heads on frozen embeddings: every clip is embedded once, then the steps are cheap."""
    name, unit = "align", "clips"

    def __init__(self, models: Models, data: NightData, settings: Settings, rng: np.random.Generator,
                 device: torch.device, should_stop: Callable[[], bool]):
        s = settings.learn
        self.models, self.rng, self.device, self.should_stop = models, rng, device, should_stop
        self.align = models.align
        self.batch, self.lr, self.replay_fraction = s.batch_size, s.align.lr, s.replay_fraction
        self.exclusion = s.align.exclusion_seconds
        self.module = self.align
        self.bad = data.unreadable
        today = [c for c in self.bad.readable(data.train) if c.stills and c.audio]
        replay = [c for c in self.bad.readable(data.replay) if c.stills and c.audio]
        n_replay = min(len(replay), int(ALIGN_POOL * s.replay_fraction) if today else ALIGN_POOL)
        self.replay_refs = _sample(rng, replay, n_replay)
        self.today_refs = _sample(rng, today, min(len(today), ALIGN_POOL - n_replay))
        self.inputs = None
        self.val = torch.zeros(0, dtype=torch.long)
        self.fit = torch.zeros(0, dtype=torch.long)
        self.best: tuple[float, dict] | None = None

    @property
    def has_data(self) -> bool:
        return len(self.today_refs) + len(self.replay_refs) >= 2

    def prepare(self) -> None:
        enc = Encoders(self.models, "training", self.device)
        self.models.train()
        e = embed_refs(enc, self.today_refs + self.replay_refs, self.should_stop, self.bad)
        if e is None:
            return
        self.today_refs = self.bad.readable(self.today_refs)     # the rows of e
        self.replay_refs = self.bad.readable(self.replay_refs)
        refs = self.today_refs + self.replay_refs
        if len(refs) < 2:
            raise NoReadableClips()
        video, audio = (torch.from_numpy(x).to(self.device) for x in e)
        video, audio = self._centre(video, audio)
        # Seconds since the earliest clip: float32 keeps a second's precision over years.
        starts = np.array([c.start for c in refs])
        times = torch.from_numpy((starts - starts.min()).astype(np.float32)).to(self.device)
        self.inputs = (video, audio, times)
        blocks = time_blocks(starts, VISIT_GAP_SECONDS)
        held = (hold_out_blocks(self.rng, blocks, len(refs) // 8, most=len(refs) // 4)
                if len(refs) >= EARLY_STOP_MIN else np.zeros(0, np.int64))
        self.val = torch.as_tensor(held, dtype=torch.long)
        self.fit = torch.from_numpy(np.setdiff1d(np.arange(len(refs)), held))

    def _centre(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The version's normalisation: each kind's mean over the night's clips goes into the
        model (the embedder subtracts it at commit and query), and out of the heads' inputs."""
        mv, ma = video.mean(0), audio.mean(0)
        self.models.video_mean += mv
        self.models.audio_mean += ma
        return video - mv, audio - ma

    def step(self, step: int, total: int, should_stop: Callable[[], bool]) -> dict[str, float] | None:
        """Full batch on the pooled vectors (up to FULL_BATCH clips): cheap, and every clip
        of the day is a negative for every other place."""
        if self.inputs is None or should_stop():
            return None
        idx = self.fit
        if len(idx) > FULL_BATCH:
            idx = idx[torch.from_numpy(np.sort(self.rng.choice(len(idx), FULL_BATCH, replace=False)))]
        v, a, t = (x[idx] for x in self.inputs)
        loss = self.align.loss(v, a, t, self.exclusion)
        loss.backward()
        return {"loss": loss.item(), "temperature": float(1 / self.align.logit_scale.detach().exp())}

    @torch.no_grad()
    def _val_loss(self) -> float:
        v, a, t = (x[self.val] for x in self.inputs)
        return float(self.align.loss(v, a, t, self.exclusion))

    def after_step(self, step: int, total: int) -> None:
        self.align.clamp_()
        # Early stopping on held-out visits: the heads memorise a small day within a few
        # hundred full-batch steps; the best held-out state is the one kept.
        if len(self.val) >= 2 and (step % EVAL_EVERY == 0 or step + 1 == total):
            loss = self._val_loss()
            if self.best is None or loss < self.best[0]:
                self.best = (loss, copy.deepcopy(self.align.state_dict()))

    def close(self) -> None:
        if self.best is not None:
            self.align.load_state_dict(self.best[1])
