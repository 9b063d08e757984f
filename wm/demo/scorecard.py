"""The demo's scorecard: how often each kind of query's answers were right, next to what
random picks from the memory would get."""
from __future__ import annotations

from dataclasses import dataclass

from wm.demo.questions import QueryOutcome

GOOD = 0.9                     # a hit rate below this is called out as only partly learned


@dataclass
class Score:
    right: int = 0
    asked: int = 0
    chance: float = 0.0  # the hit rate random picks would have
    unanswered: int = 0  # queries the memory had no answer for (its version cannot rank them)
    why: str = ""        # the memory's reason, in its own words

    @property
    def rate(self) -> float:
        return self.right / self.asked if self.asked else 0.0


def scorecard(outcomes: list[QueryOutcome]) -> dict[str, Score]:
    """Hits per kind of query, against the hit rate of random picks from the memory."""
    out: dict[str, Score] = {}
    for o in outcomes:
        s = out.setdefault(o.kind, Score())
        if o.unanswered:
            s.unanswered, s.why = s.unanswered + 1, o.unanswered
        n = len(o.results)
        s.chance = (s.chance * s.asked + o.chance * n) / max(1, s.asked + n)
        s.right += o.right
        s.asked += n
    return out


def weak(scores: dict[str, Score]) -> list[str]:
    """The kinds not learned: right less than twice as often as random picks."""
    return [k for k, sc in scores.items() if sc.asked and sc.rate < 2 * sc.chance]


def partly(scores: dict[str, Score]) -> list[str]:
    """The kinds learned only in part: better than that, but right less than GOOD."""
    return [k for k, sc in scores.items() if sc.asked and 2 * sc.chance <= sc.rate < GOOD]


def unanswerable(scores: dict[str, Score]) -> list[str]:
    """The kinds the memory could not answer at all (not a miss: nothing to rank with)."""
    return [k for k, sc in scores.items() if sc.unanswered]
