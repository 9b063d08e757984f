"""`wm sleep`: the nightly cycle. Train JEPA -> CPC -> alignment on the day's clips (plus
a replay of earlier days) within a time budget, evaluate, record a model version, then
commit the clips to memory and apply retention.

Everything is resumable: checkpoints/daily/{date}/state.pt holds the models, the current
stage's optimizer, the step counters and the random state, written atomically every
few minutes and on SIGINT/SIGTERM (the process stops within seconds, between two
micro-batches). Run again, it carries on at the saved step."""
from __future__ import annotations

import fcntl
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import torch

from wm import log
from wm.atomic import atomic_write_bytes
from wm.config import Settings
from wm.daemon.queue import Queue
from wm.errors import WmError
from wm.learn.data import NightData, night_data
from wm.learn.encoders import Encoders, load_checkpoint, load_encoders, models_from_checkpoint
from wm.learn.evaluate import evaluate
from wm.learn.models import ModelConfig, Models, build_models
from wm.learn.report import NightReport, summarise, write_report
from wm.learn.stages import AlignStage, CpcStage, JepaStage
from wm.learn.train import Loop, StageRecord, atomic_save, cpu_threads, param_groups, pick_device, run_stage
from wm.learn.versions import latest_version, next_version_name, record_version
from wm.paths import Paths

STAGES = ("jepa", "cpc", "align")
# Share of the training time each stage gets when there is a budget (what is left of a
# finished stage's share passes to the stages after it).
STAGE_SHARE = {"jepa": 0.6, "cpc": 0.3, "align": 0.1}
TRAIN_SHARE = 0.85   # of the budget; the rest is for evaluation, memory commit and retention
STATE_FORMAT = 1

_log = log.get("wm.learn")

COMPLETED, INTERRUPTED, FAILED, NOTHING = "completed", "interrupted", "failed", "nothing_to_do"


@dataclass
class SleepOutcome:
    result: str
    stages: dict[str, str] = field(default_factory=dict)   # stage name -> what happened
    date: str | None = None
    version: str | None = None


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
        steps = {"jepa": learn.jepa.steps, "cpc": learn.cpc.steps, "align": learn.align.steps}
        self.records = {name: StageRecord(name, steps[name]) for name in STAGES}
        self.models: Models | None = None
        self.optim_state: dict | None = None       # the current stage's, when resuming
        self.version: str | None = None
        self.trained_until = 0.0
        self.started_from: str | None = None

    # -- starting point --------------------------------------------------------------
    def load_or_start(self) -> str:
        """Resume an unfinished night, or start from the newest promoted model (or from
        scratch). Returns what happened, for the log."""
        if self.path.exists():
            ckpt = load_checkpoint(self.path, self.device)
            config = ModelConfig.from_dict(ckpt["config"])
            if ckpt.get("format") != STATE_FORMAT or not config.same_architecture(self.config):
                _log.warning("checkpoint_incompatible", file=str(self.path))
            elif ckpt["version"] and self.data.newest_start <= ckpt["trained_until"]:
                self._restore(ckpt)
                return f"already trained as version {self.version}"
            elif not ckpt["version"]:
                self._restore(ckpt)
                return "resumed " + ", ".join(f"{n} at step {r.step}" for n, r in self.records.items()
                                              if not r.done)
        v = latest_version(self.paths)
        if v is not None:
            ckpt = load_checkpoint(self.paths.root / v.checkpoint, self.device)
            if ModelConfig.from_dict(ckpt["config"]).same_architecture(self.config):
                self.models = models_from_checkpoint(ckpt)
                self.models.config = self.config
                self.started_from = v.version
                return f"starting from version {v.version}"
            _log.warning("architecture_changed", version=v.version, note="training from scratch")
        self.models = build_models(self.config, self.settings.learn.seed)
        return "starting from scratch"

    def _restore(self, ckpt: dict) -> None:
        self.models = Models(self.config)
        self.models.load_state_dict(ckpt["models"])
        self.records = {n: StageRecord.from_dict(d) for n, d in ckpt["records"].items()}
        self.optim_state = ckpt["optim"]
        self.rng.bit_generator.state = ckpt["rng"]["numpy"]
        self.gen.set_state(ckpt["rng"]["torch"].cpu())
        self.version, self.trained_until = ckpt["version"], ckpt["trained_until"]
        self.started_from = ckpt["started_from"]

    def save(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        atomic_save({
            "format": STATE_FORMAT, "date": self.data.date, "saved": _now(),
            "config": self.config.to_dict(), "models": self.models.state_dict(),
            "optim": optimizer.state_dict() if optimizer is not None else None,
            "records": {n: r.to_dict() for n, r in self.records.items()},
            "rng": {"numpy": self.rng.bit_generator.state, "torch": self.gen.get_state()},
            "version": self.version, "trained_until": self.trained_until,
            "started_from": self.started_from,
        }, self.path)

    # -- the stages --------------------------------------------------------------------
    def _stage(self, name: str, should_stop: Callable[[], bool]):
        m, d, s = self.models, self.data, self.settings
        if name == "jepa":
            return JepaStage(m, d, s, self.rng, self.device)
        if name == "cpc":
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
            if not run_stage(stage, rec, opt, loop):
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
        promoted = not ev.collapse
        if ev.collapse:
            _log.warning("collapse", date=self.data.date, embeddings=ev.collapse,
                         min_rank=learn.collapse_min_rank, min_std=learn.collapse_min_std)
        version = next_version_name(self.paths, self.data.date)
        model_file = self.paths.daily_checkpoint_dir(self.data.date) / f"model-{version}.pt"
        atomic_save({"format": STATE_FORMAT, "version": version, "config": self.config.to_dict(),
                     "models": self.models.state_dict()}, model_file)
        record_version(self.paths, version, self.data.date, str(model_file.relative_to(self.paths.root)),
                       promoted)
        self.version, self.trained_until = version, self.data.newest_start
        self.save()
        _log.info("version_recorded", version=version, promoted=promoted)
        report = NightReport(
            date=self.data.date, version=version, promoted=promoted, device=str(self.device),
            created=_now(), seconds=round(time.monotonic() - started, 1),
            clips_train=len(self.data.train), clips_held_out=len(self.data.held_out),
            clips_replay=len(self.data.replay), dates=self.data.dates,
            stages={n: summarise(r, {"jepa": "images"}.get(n, "clips")) for n, r in self.records.items()},
            evaluation=ev)
        json_path, _ = write_report(self.paths, report, self.records)
        _log.info("report_written", file=str(json_path))
        return report


def _memory_stages(settings: Settings, paths: Paths, should_stop: Callable[[], bool],
                   outcome: SleepOutcome) -> None:
    try:
        from wm.memory.commit import commit_queued
    except ImportError:
        outcome.stages["commit"] = "skipped: wm.memory.commit is not available"
        _log.warning("stage_skipped", stage="commit", reason="wm.memory.commit is not available")
    else:
        if latest_version(paths) is None:
            outcome.stages["commit"] = "skipped: no promoted model version yet"
        else:
            r = commit_queued(settings, paths, load_encoders(settings, paths), should_stop)
            outcome.stages["commit"] = (f"{r.committed} committed, {r.reembedded} re-embedded,"
                                        f" {r.remaining} remaining")
    if should_stop():
        return
    try:
        from wm.memory.retention import apply_retention
    except ImportError:
        outcome.stages["retention"] = "skipped: wm.memory.retention is not available"
        _log.warning("stage_skipped", stage="retention", reason="wm.memory.retention is not available")
    else:
        r = apply_retention(settings, paths)
        outcome.stages["retention"] = (f"media of {r.purged} clips deleted ({r.freed_bytes / 1e6:.1f} MB),"
                                       f" {r.media_bytes / 1e6:.1f} MB of media kept")


def sleep_cycle(settings: Settings, paths: Paths, date: str | None, budget_seconds: float | None,
                should_stop: Callable[[], bool]) -> SleepOutcome:
    """The whole cycle, stoppable through `should_stop` (polled between micro-batches)."""
    started = time.monotonic()
    deadline = started + budget_seconds if budget_seconds else None
    in_budget = (lambda: should_stop() or time.monotonic() > deadline) if deadline else should_stop
    data = night_data(paths, date, settings.learn.seed)
    outcome = SleepOutcome(NOTHING if data is None else COMPLETED, date=data.date if data else date)
    if data is None:
        outcome.stages["train"] = "nothing to learn: no clips queued" + (f" for {date}" if date else "")
    else:
        device = pick_device(settings.learn.device)
        if device.type == "cpu":
            torch.set_num_threads(cpu_threads(settings.learn.threads))
        night = Night(settings, paths, data, device)
        start = night.load_or_start()
        _log.info("sleep_started", date=data.date, clips=len(data.train), held_out=len(data.held_out),
                  replay=len(data.replay), start=start, budget_seconds=budget_seconds)
        report = None
        if night.version is not None:
            outcome.stages["train"] = start
        else:
            train_deadline = started + TRAIN_SHARE * budget_seconds if budget_seconds else None
            if not night.train(should_stop, train_deadline) or should_stop():
                outcome.result = INTERRUPTED
            elif (report := night.finish(should_stop, started)) is None:
                outcome.result = INTERRUPTED
        for name, rec in night.records.items():
            outcome.stages[name] = (f"{'done' if rec.done else 'stopped'} at step {rec.step} of"
                                    f" {rec.max_steps}" + (f" ({rec.note})" if rec.note else ""))
        if report is not None:
            outcome.stages["evaluation"] = _evaluation_note(report)
        outcome.version = night.version
    if outcome.result != INTERRUPTED:
        _memory_stages(settings, paths, in_budget, outcome)
        if should_stop():
            outcome.result = INTERRUPTED
    return outcome


def _evaluation_note(report: NightReport) -> str:
    ev = report.evaluation
    parts = [f"version {report.version}" + (" promoted" if report.promoted else " NOT promoted"
                                              f" (collapse: {', '.join(ev.collapse)})")]
    if ev.cpc_accuracy is not None:
        parts.append(f"CPC accuracy {ev.cpc_accuracy:.2f} (chance {ev.cpc_chance:.2f})")
    if ev.recall_at_5 is not None:
        parts.append(f"recall@5 {ev.recall_at_5:.2f} (chance {ev.recall_chance_at_5:.2f})")
    return "; ".join(parts)


class _StopFlag:
    """Set by SIGINT/SIGTERM: the cycle checkpoints and stops instead of dying mid-write."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self) -> bool:
        return self.event.is_set()

    def handler(self, signum, frame) -> None:
        self.event.set()   # only this: logging from a signal handler can deadlock


def _write_last_sleep(paths: Paths, started: str, t0: float, outcome: SleepOutcome) -> None:
    body = {"started": started, "finished": _now(), "seconds": round(time.monotonic() - t0, 1),
            "result": outcome.result, "date": outcome.date, "version": outcome.version,
            "stages": outcome.stages}
    atomic_write_bytes(paths.last_sleep_file, json.dumps(body, indent=1).encode())


def queue_unwatched_clips(paths: Paths) -> int:
    """Queue the clips that no watcher saw (`wm record` or `wm ingest` without `wm run`).
    Only day folders changed since an hour before the previous cycle began are read, so
    a year of clips is not rescanned every night."""
    from wm.daemon.status import LastSleep
    from wm.daemon.watcher import queue_clips_on_disk   # watchdog is not needed otherwise
    last = LastSleep.read(paths.last_sleep_file)
    try:
        since = datetime.fromisoformat(last.started).timestamp() - 3600 if last and last.started else None
    except ValueError:
        since = None
    q = Queue(paths.memory_db)
    try:
        n = queue_clips_on_disk(paths, q, since)
    finally:
        q.close()
    if n:
        _log.info("clips_queued", clips=n, reason="written while no watcher ran")
    return n


def run_sleep(settings: Settings, paths: Paths, date: str | None, budget_seconds: float | None) -> int:
    """The CLI: 0 when the cycle completed (or had nothing to do), 130 when a signal
    stopped it (it resumes next time)."""
    paths.state.mkdir(parents=True, exist_ok=True)
    lock = open(paths.sleep_lock_file, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise WmError(f"another sleep cycle is running (lock: {paths.sleep_lock_file})") from None
    stop = _StopFlag()
    previous = {s: signal.signal(s, stop.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    started, t0 = _now(), time.monotonic()
    outcome = SleepOutcome(FAILED, date=date)
    try:
        queue_unwatched_clips(paths)
        outcome = sleep_cycle(settings, paths, date, budget_seconds, stop)
    except BaseException as e:
        outcome.stages["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _write_last_sleep(paths, started, t0, outcome)
        lock.close()
    _log.info("sleep_finished", result=outcome.result, version=outcome.version,
              seconds=round(time.monotonic() - t0, 1))
    for name, note in outcome.stages.items():
        print(f"{name}: {note}")
    return 130 if outcome.result == INTERRUPTED else 0
