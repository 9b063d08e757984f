"""How a night's time budget is split: the commit of the queued clips is reserved first
(queued clips x the measured seconds per clip), and training gets the rest, so a long
day's commit is never squeezed out by training. Evaluation and retention keep a small
share; a floor keeps at least the old 15% for everything after training, and a ceiling
leaves training at least 40% however long the backlog (what does not fit is committed at
the next cycle: clips stay queued, nothing is lost)."""
from __future__ import annotations

from dataclasses import dataclass

OTHER_SHARE = 0.05          # evaluation and retention, of the budget
MIN_RESERVE_SHARE = 0.15    # everything after training gets at least this (the old split)
MIN_TRAIN_SHARE = 0.40      # training gets at least this, whatever the backlog
COMMIT_MARGIN = 1.25        # the probe neither decodes JPEGs nor writes shards (bench/commit.py)


@dataclass(frozen=True)
class Plan:
    budget_s: float
    train_s: float            # training's share: it stops at started + train_s
    commit_s: float           # the commit's expected time (margin included)
    clips: int                # queued clips the commit is planned for
    seconds_per_clip: float   # measured by the probe, before the margin

    def note(self) -> str:
        """What `wm sleep` says about the plan."""
        return (f"commit: {self.clips:,} clips planned at {self.seconds_per_clip:.3f} s/clip ="
                f" {self.commit_s / 60:.0f} min; training: {self.train_s / 60:.0f} min of the"
                f" {self.budget_s / 60:.0f} min budget")


def plan_budget(budget_s: float, clips: int, seconds_per_clip: float) -> Plan:
    """The split of `budget_s` seconds for a night with `clips` queued clips."""
    commit = clips * seconds_per_clip * COMMIT_MARGIN
    reserve = min(max(commit + OTHER_SHARE * budget_s, MIN_RESERVE_SHARE * budget_s),
                  (1 - MIN_TRAIN_SHARE) * budget_s)
    return Plan(budget_s, budget_s - reserve, commit, clips, seconds_per_clip)
