"""What a check finds: a problem, said in one line, and whether (and how) it can be
repaired without losing a committed memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Problem:
    kind: str                              # e.g. "stale partial", "orphan media"
    where: str                             # the file, clip id or version it is about
    detail: str = ""
    repair: Callable[[], str] | None = None    # does the repair, returns what it did

    @property
    def repairable(self) -> bool:
        return self.repair is not None

    def line(self) -> str:
        return f"{self.kind}: {self.where}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class CheckResult:
    found: list[Problem]
    repaired: list[tuple[Problem, str]]    # (problem, what the repair did)
    failed: list[tuple[Problem, str]]      # (problem, why the repair failed)

    @property
    def left(self) -> list[Problem]:
        fixed = {id(p) for p, _ in self.repaired}
        return [p for p in self.found if id(p) not in fixed]
