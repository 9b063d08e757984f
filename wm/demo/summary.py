"""What the demo did and found, written as summary.json for scripts and tests."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from wm.demo.questions import QueryOutcome
from wm.demo.scorecard import Score


@dataclass
class Summary:
    folder: str
    home: str
    config: str
    recording: str
    places: list[str]
    visits: list[str]
    visit_seconds: float
    speed: float
    date: str = ""
    clips_written: int = 0
    clips_queued: int = 0
    clips_committed: int = 0
    version: str | None = None
    examples: dict[str, str] = field(default_factory=dict)   # word -> its example clip
    queries: list[QueryOutcome] = field(default_factory=list)
    scores: dict[str, Score] = field(default_factory=dict)
    contact_sheets: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> str:
        body = asdict(self)
        for q, o in zip(body["queries"], self.queries):
            q["right"] = o.right
        for k, s in self.scores.items():
            body["scores"][k]["rate"] = round(s.rate, 4)
        return json.dumps(body, indent=1, ensure_ascii=False)
