"""What a night learned: reports/{date}.json (numbers) and reports/{date}.png (a
matplotlib figure of the same numbers and of the nights before it: wm/learn/figure.py)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wm.base import log
from wm.base.atomic import atomic_write_bytes
from wm.base.paths import Paths
from wm.learn.evaluate import Evaluation
from wm.learn.figure import HISTORY_NIGHTS, draw_figure   # matplotlib itself loads only to draw
from wm.learn.train import StageRecord

CURVE_POINTS = 200     # a loss curve in the JSON is averaged down to at most this many points

_log = log.get("wm.learn")


@dataclass
class StageSummary:
    steps: int
    max_steps: int
    seconds: float
    per_second: float      # images (JEPA) or clips (CPC, alignment) per second of training
    unit: str
    loss_first: float | None
    loss_last: float | None
    loss_curve: list[list[float]]    # [step, mean loss over the steps since the previous point]
    resumed_at: list[int]
    note: str


@dataclass
class NightReport:
    date: str
    version: str | None
    promoted: bool
    device: str
    created: str
    seconds: float
    clips_train: int
    clips_held_out: int
    clips_replay: int
    dates: list[str]
    stages: dict[str, StageSummary]
    evaluation: Evaluation
    clips_unreadable: int = 0                  # left out of training: media could not be read
    unreadable: dict[str, str] = field(default_factory=dict)   # clip id -> why


def curve(values: list[float], points: int = CURVE_POINTS) -> list[list[float]]:
    if not values:
        return []
    edges = np.linspace(0, len(values), min(points, len(values)) + 1).astype(int)
    return [[int(b), float(np.mean(values[a:b]))] for a, b in zip(edges, edges[1:])]


def summarise(rec: StageRecord, unit: str) -> StageSummary:
    head = rec.losses[: max(1, len(rec.losses) // 20)]
    tail = rec.losses[-max(1, len(rec.losses) // 20):]
    return StageSummary(
        steps=rec.step, max_steps=rec.max_steps, seconds=round(rec.seconds, 2),
        per_second=round(rec.per_second, 3), unit=unit,
        loss_first=float(np.mean(head)) if rec.losses else None,
        loss_last=float(np.mean(tail)) if rec.losses else None,
        loss_curve=curve(rec.losses), resumed_at=list(rec.resumed_at), note=rec.note)


def _clean(x):
    """NaN and infinity are not JSON: write null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def history(paths: Paths, date: str) -> list[dict]:
    """The reports of the nights before `date`, oldest first; one that cannot be read is
    left out of the history panel, never a reason to fail the night's report."""
    out = []
    for p in sorted(paths.reports.glob("*.json")):
        if p.stem >= date:
            continue
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError) as e:
            _log.warning("report_unreadable", file=str(p), error=str(e))
    return out[-HISTORY_NIGHTS:]


def write_report(paths: Paths, report: NightReport, records: dict[str, StageRecord]) -> tuple[Path, Path]:
    """reports/{date}.json and reports/{date}.png, each written atomically. The figure is
    drawn from the JSON's own numbers (plus CPC's training accuracy, which only the PNG
    shows), next to the earlier nights' reports."""
    paths.reports.mkdir(parents=True, exist_ok=True)
    json_path, png_path = paths.report(report.date, "json"), paths.report(report.date, "png")
    body = _clean(asdict(report))
    atomic_write_bytes(json_path, json.dumps(body, indent=1).encode())
    cpc = records.get("cpc")
    accuracy = curve(cpc.curves.get("accuracy", [])) if cpc else []
    atomic_write_bytes(png_path, draw_figure(body, accuracy, history(paths, report.date)))
    return json_path, png_path
