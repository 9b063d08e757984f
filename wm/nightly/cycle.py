"""The nightly cycle: train a night's models (wm.learn.night), then commit the queued clips
to memory and apply retention (wm.memory). `sleep_cycle` is the whole cycle, stoppable
through a flag polled between micro-batches."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from wm.base import log
from wm.base.config import Settings
from wm.base.lastsleep import COMPLETED, INTERRUPTED, NOTHING
from wm.base.paths import Paths
from wm.base.queue import QUEUED, Queue
from wm.learn.encoders import load_encoders, seconds_per_clip
from wm.learn.fixed import VERSION_0
from wm.learn.night import Night
from wm.learn.nightclips import night_data
from wm.learn.report import NightReport
from wm.learn.train import cpu_threads, pick_device
from wm.memory.commit import commit_queued
from wm.memory.retention import apply_retention
from wm.nightly.plan import Plan, plan_budget

_log = log.get("wm.learn")


@dataclass
class SleepOutcome:
    result: str
    stages: dict[str, str] = field(default_factory=dict)   # stage name -> what happened
    date: str | None = None
    version: str | None = None


def _memory_stages(settings: Settings, paths: Paths, should_stop: Callable[[], bool],
                   outcome: SleepOutcome) -> None:
    # Every queued clip goes into memory whatever the night's training did: with the newest
    # promoted version, or version 0 (no training needed) while there is none.
    encoders = load_encoders(settings, paths)
    t = time.monotonic()
    r = commit_queued(settings, paths, encoders, should_stop)
    took = time.monotonic() - t
    why = "" if encoders.version != VERSION_0 else " (no trained version promoted yet)"
    done = r.committed + r.reembedded
    rate = f" at {took / done:.3f} s/clip" if done else ""
    outcome.stages["commit"] = (f"{r.committed} committed, {r.reembedded} re-embedded,"
                                f" {r.remaining} remaining, with version {encoders.version}{why};"
                                f" {took / 60:.1f} min{rate}")
    if should_stop():
        return
    r = apply_retention(settings, paths)
    outcome.stages["retention"] = (f"media of {r.purged} clips deleted ({r.freed_bytes / 1e6:.1f} MB),"
                                   f" {r.media_bytes / 1e6:.1f} MB of media kept")


def _plan(settings: Settings, paths: Paths, device: torch.device, budget_seconds: float) -> Plan:
    """The budget's split, from the clips queued now and the commit's speed measured now."""
    queue = Queue(paths.memory_db)
    try:
        clips = queue.count(QUEUED)
    finally:
        queue.close()
    plan = plan_budget(budget_seconds, clips, seconds_per_clip(settings, device))
    _log.info("sleep_plan", clips=clips, seconds_per_clip=round(plan.seconds_per_clip, 4),
              commit_seconds=round(plan.commit_s), train_seconds=round(plan.train_s),
              budget_seconds=budget_seconds)
    return plan


def _train(settings: Settings, paths: Paths, night: Night, should_stop: Callable[[], bool],
           started: float, plan: Plan | None, outcome: SleepOutcome) -> None:
    start = night.load_or_start()
    data = night.data
    _log.info("sleep_started", date=data.date, clips=len(data.train), held_out=len(data.held_out),
              replay=len(data.replay), start=start,
              budget_seconds=plan.budget_s if plan else None)
    report = None
    if night.version is not None:
        outcome.stages["train"] = start
    else:
        train_deadline = started + plan.train_s if plan else None
        if not night.train(should_stop, train_deadline) or should_stop():
            outcome.result = INTERRUPTED
        elif (report := night.finish(should_stop, started)) is None:
            outcome.result = INTERRUPTED
    for name, rec in night.records.items():
        outcome.stages[name] = (f"{'done' if rec.done else 'stopped'} at step {rec.step} of"
                                f" {rec.max_steps}" + (f" ({rec.note})" if rec.note else ""))
    if report is not None:
        outcome.stages["evaluation"] = _evaluation_note(report)
    if night.data.unreadable.clips:
        outcome.stages["unreadable"] = unreadable_note(night.data.unreadable.clips)
    outcome.version = night.version


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
        plan = _plan(settings, paths, device, budget_seconds) if budget_seconds else None
        if plan is not None:
            outcome.stages["plan"] = plan.note()
        _train(settings, paths, Night(settings, paths, data, device), should_stop, started,
               plan, outcome)
    if outcome.result != INTERRUPTED:
        _memory_stages(settings, paths, in_budget, outcome)
        if should_stop():
            outcome.result = INTERRUPTED
    return outcome


def _evaluation_note(report: NightReport) -> str:
    ev = report.evaluation
    j = getattr(ev, "judgement", None)
    if j is None:
        why = f" (collapse: {', '.join(ev.collapse)})" if ev.collapse else ""
    elif j.promoted:
        why = f" ({j.reason})"
    else:
        why = f" ({j.reason}; {j.winner} stays in use)"
    parts = [f"version {report.version}" + (" promoted" if report.promoted else " NOT promoted") + why]
    if ev.cpc_accuracy is not None:
        parts.append(f"CPC accuracy {ev.cpc_accuracy:.2f} (chance {ev.cpc_chance:.2f})")
    if ev.recall_at_5 is not None:
        parts.append(f"recall@5 {ev.recall_at_5:.2f} (chance {ev.recall_chance_at_5:.2f})")
    if ev.on_trained_clips and len(parts) > 1:
        parts.append("these measured on clips it trained on (too few to hold any out)")
    return "; ".join(parts)


def unreadable_note(clips: dict[str, str]) -> str:
    """What `wm sleep` says about clips left out of training (their media could not be read)."""
    first, why = next(iter(clips.items()))
    return (f"{len(clips)} clip{'s' if len(clips) != 1 else ''} left out of training: media cannot"
            f" be read (first: {first}: {why})")
