"""One night of training: JEPA -> CPC -> alignment on the day's clips (plus a replay of
earlier days) within a time budget, then evaluation and a recorded model version.

Everything is resumable: checkpoints/daily/{date}/state.pt holds the models, the current
stage's optimizer, the step counters and the random state, written atomically every
few minutes and when told to stop (between two micro-batches). Run again, it carries on
at the saved step."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import torch

from wm.base import log
from wm.base.config import Settings
from wm.base.paths import Paths
from wm.learn.data import NightData, NoReadableClips
from wm.learn.encoders import Encoders, load_encoders
from wm.learn.evaluate import evaluate
from wm.learn.fixed import FixedEncoders
from wm.learn.judge import judge
from wm.learn.modelfiles import ModelFileError, load_checkpoint, newest_usable
from wm.learn.models import ModelConfig, Models, build_models
from wm.learn.report import NightReport, summarise, write_report
from wm.learn.stages import AlignStage, CpcStage, JepaStage
from wm.learn.train import Loop, StageRecord, atomic_save, param_groups, run_stage
from wm.learn.versions import next_version_name, record_version

STAGES = (JepaStage.name, CpcStage.name, AlignStage.name)
UNITS = {JepaStage.name: JepaStage.unit, CpcStage.name: CpcStage.unit, AlignStage.name: AlignStage.unit}
# Share of the training time each stage gets when there is a budget (what is left of a
# finished stage's share passes to the stages after it).
STAGE_SHARE = {JepaStage.name: 0.6, CpcStage.name: 0.3, AlignStage.name: 0.1}
STATE_FORMAT = 1

_log = log.get("wm.learn")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Night:
    """The night's training state and its checkpoint file."""

    def __init__(self, settings: Settings, paths: Paths, data: NightData, device: torch.device):
        self.settings, self.paths, self.data, self.device = settings, paths, data, device
        self.config = ModelConfig.from_settings(settings)
        self.path = paths.daily_checkpoint_dir(data.date) / "state.pt"
        seed = settings.learn.seed
        self.rng = np.random.default_rng([seed, int(data.date.replace("-", ""))])
        self.gen = torch.Generator(device).manual_seed(seed)
        learn = settings.learn
        # each stage's settings sit under its own name (learn.jepa, learn.cpc, learn.align)
        self.records = {name: StageRecord(name, getattr(learn, name).steps) for name in STAGES}
        self.models: Models | None = None
        self.optim_state: dict | None = None       # the current stage's, when resuming
        self.version: str | None = None
        self.trained_until = 0.0
        self.started_from: str | None = None

    # -- starting point --------------------------------------------------------------
    def load_or_start(self) -> str:
        """Resume an unfinished night, or start from the newest promoted model whose file
        loads (or from scratch). Returns what happened, for the log."""
        ckpt = self._saved_state()
        if ckpt is not None:
            config = ModelConfig.from_dict(ckpt["config"])
            # A night half-done with another pooling may already hold that pooling's mean.
            if (ckpt.get("format") != STATE_FORMAT or not config.same_architecture(self.config)
                    or config.cpc.pool != self.config.cpc.pool):
                _log.warning("checkpoint_incompatible", file=str(self.path))
            elif ckpt["version"] and self.data.newest_start <= ckpt["trained_until"]:
                self._restore(ckpt)
                return f"already trained as version {self.version}"
            elif not ckpt["version"]:
                self._restore(ckpt)
                return "resumed " + ", ".join(f"{n} at step {r.step}" for n, r in self.records.items()
                                              if not r.done)
        found = newest_usable(self.paths, self.device)
        if found is not None:
            v, ckpt = found
            if ModelConfig.from_dict(ckpt["config"]).same_architecture(self.config):
                # Built from today's settings (a version pooling c starts a night pooling z:
                # the weights carry over, the night recomputes the means and the heads).
                self.models = Models(self.config)
                self.models.load_weights(ckpt["models"])
                self.started_from = v.version
                return f"starting from version {v.version}"
            _log.warning("architecture_changed", version=v.version, note="training from scratch")
        self.models = build_models(self.config, self.settings.learn.seed)
        return "starting from scratch"

    def _saved_state(self) -> dict | None:
        """The night's own checkpoint, if there is one that loads. One that does not (cut
        by a crash the rename should have prevented, a bad disk block) is logged and left
        to be overwritten by the night's next save: the night starts over instead of
        failing every time."""
        if not self.path.exists():
            return None
        try:
            return load_checkpoint(self.path, self.device)
        except ModelFileError as e:
            _log.warning("checkpoint_unreadable", file=str(self.path), problem=e.problem, detail=e.detail,
                         note="starting the night over")
            return None

    def _restore(self, ckpt: dict) -> None:
        self.models = Models(self.config)
        self.models.load_weights(ckpt["models"])
        self.records = {n: StageRecord.from_dict(d) for n, d in ckpt["records"].items()}
        self.optim_state = ckpt["optim"]
        self.rng.bit_generator.state = ckpt["rng"]["numpy"]
        self.gen.set_state(ckpt["rng"]["torch"].cpu())
        self.version, self.trained_until = ckpt["version"], ckpt["trained_until"]
        self.started_from = ckpt["started_from"]
        for clip_id, error in ckpt.get("unreadable", {}).items():
            self.data.unreadable.clips.setdefault(clip_id, error)

    def save(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        atomic_save({
            "format": STATE_FORMAT, "date": self.data.date, "saved": _now(),
            "config": self.config.to_dict(), "models": self.models.state_dict(),
            "optim": optimizer.state_dict() if optimizer is not None else None,
            "records": {n: r.to_dict() for n, r in self.records.items()},
            "rng": {"numpy": self.rng.bit_generator.state, "torch": self.gen.get_state()},
            "version": self.version, "trained_until": self.trained_until,
            "started_from": self.started_from, "unreadable": dict(self.data.unreadable.clips),
        }, self.path)

    # -- the stages --------------------------------------------------------------------
    def _stage(self, name: str, should_stop: Callable[[], bool]):
        m, d, s = self.models, self.data, self.settings
        if name == JepaStage.name:
            return JepaStage(m, d, s, self.rng, self.device)
        if name == CpcStage.name:
            return CpcStage(m, d, s, self.rng, self.device, self.gen)
        return AlignStage(m, d, s, self.rng, self.device, should_stop)

    def train(self, should_stop: Callable[[], bool], train_deadline: float | None) -> bool:
        """Run the unfinished stages in order; False if stopped (state saved)."""
        learn = self.settings.learn
        self.models.to(self.device).train()
        for name in STAGES:
            rec = self.records[name]
            if rec.done:
                continue
            stage = self._stage(name, should_stop)
            if not stage.has_data:
                rec.done, rec.note = True, "skipped: no clips with this modality"
                continue
            opt = torch.optim.AdamW(param_groups(stage.module.named_parameters(), learn.weight_decay),
                                    lr=stage.lr, foreach=True)
            if self.optim_state is not None and rec.step > 0:
                opt.load_state_dict(self.optim_state)
            self.optim_state = None
            deadline = None
            if train_deadline is not None:
                left = [n for n in STAGES if not self.records[n].done]
                share = STAGE_SHARE[name] / sum(STAGE_SHARE[n] for n in left)
                deadline = time.monotonic() + max(0.0, train_deadline - time.monotonic()) * share
            loop = Loop(should_stop=should_stop, save=lambda: self.save(opt),
                        checkpoint_seconds=learn.checkpoint_minutes * 60, deadline=deadline,
                        warmup=learn.warmup_steps, log_every=learn.log_every)
            _log.info("stage_started", stage=name, step=rec.step, of=rec.max_steps, device=str(self.device))
            try:
                finished = run_stage(stage, rec, opt, loop)
            except NoReadableClips:
                finished, rec.done, rec.planned = True, True, rec.step
                rec.note = f"ended at step {rec.step}: no clip with readable media left"
                _log.warning("stage_out_of_clips", stage=name, step=rec.step)
            if not finished:
                self.save(opt)
                _log.info("stage_interrupted", stage=name, step=rec.step, checkpoint=str(self.path))
                return False
            self.save()
            _log.info("stage_done", stage=name, steps=rec.step, seconds=round(rec.seconds, 1),
                      per_second=round(rec.per_second, 2), unit=stage.unit)
        return True

    # -- the result ------------------------------------------------------------------
    def finish(self, should_stop: Callable[[], bool], started: float) -> NightReport | None:
        """Evaluate, record (and maybe promote) a version, write the report."""
        enc = Encoders(self.models, "candidate", self.device)
        learn = self.settings.learn
        ev = evaluate(enc, self.data, np.random.default_rng(learn.seed), learn.collapse_min_rank,
                      learn.collapse_min_std, should_stop)
        if ev is None:
            return None
        if ev.collapse:
            _log.warning("collapse", date=self.data.date, embeddings=ev.collapse,
                         min_rank=learn.collapse_min_rank, min_std=learn.collapse_min_std)
        ev.judgement = judge(enc, load_encoders(self.settings, self.paths),
                             FixedEncoders(self.settings.capture.sample_rate), self.data.held_out,
                             len(self.data.train) + len(self.data.held_out), ev.collapse,
                             learn.promote_tolerance)
        promoted = ev.judgement.promoted
        _log.info("judged", date=self.data.date, promoted=promoted, reason=ev.judgement.reason)
        version = next_version_name(self.paths, self.data.date)
        model_file = self.paths.daily_checkpoint_dir(self.data.date) / f"model-{version}.pt"
        # atomic_save returns once the file is durable: only then may a row point at it.
        sha256 = atomic_save({"format": STATE_FORMAT, "version": version, "config": self.config.to_dict(),
                              "models": self.models.state_dict()}, model_file)
        record_version(self.paths, version, self.data.date, str(model_file.relative_to(self.paths.root)),
                       promoted, sha256)
        self.version, self.trained_until = version, self.data.newest_start
        self.save()
        _log.info("version_recorded", version=version, promoted=promoted)
        report = NightReport(
            date=self.data.date, version=version, promoted=promoted, device=str(self.device),
            created=_now(), seconds=round(time.monotonic() - started, 1),
            clips_train=len(self.data.train), clips_held_out=len(self.data.held_out),
            clips_replay=len(self.data.replay), dates=self.data.dates,
            stages={n: summarise(r, UNITS[n]) for n, r in self.records.items()},
            evaluation=ev, clips_unreadable=len(self.data.unreadable.clips),
            unreadable=dict(self.data.unreadable.clips))
        json_path, _ = write_report(self.paths, report, self.records)
        _log.info("report_written", file=str(json_path))
        return report
