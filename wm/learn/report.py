"""What a night learned: reports/{date}.json (numbers) and reports/{date}.png (curves,
drawn with OpenCV so the package needs no plotting library)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from wm.base.atomic import atomic_write_bytes
from wm.base.paths import Paths
from wm.learn.evaluate import Evaluation
from wm.learn.train import StageRecord

CURVE_POINTS = 200     # a loss curve in the JSON is averaged down to at most this many points


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


def _panel(title: str, series: list[tuple[str, list[float], tuple[int, int, int]]],
           size=(300, 420)) -> np.ndarray:
    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 48, 10, 28, 26
    cv2.putText(img, title, (left, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (160, 160, 160), 1)
    for i, (label, values, color) in enumerate(series):
        pts = curve(values, w - left - right)
        if not pts:
            continue
        ys = np.array([p[1] for p in pts])
        lo, hi = float(ys.min()), float(ys.max())
        span = hi - lo or 1.0
        x = left + (np.array([p[0] for p in pts]) / max(pts[-1][0], 1)) * (w - left - right)
        y = (h - bottom) - (ys - lo) / span * (h - top - bottom)
        cv2.polylines(img, [np.stack([x, y], 1).astype(np.int32)], False, color, 1, cv2.LINE_AA)
        text = f"{label} {hi:.3g}..{lo:.3g}" if i == 0 else f"{label} {lo:.3g}..{hi:.3g}"
        cv2.putText(img, text, (left + 4, top + 14 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1,
                    cv2.LINE_AA)
    steps = len(series[0][1]) if series else 0
    cv2.putText(img, f"0 .. {steps} steps", (left, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1,
                cv2.LINE_AA)
    return img


def draw_curves(records: dict[str, StageRecord]) -> np.ndarray:
    panels = []
    for name, rec in records.items():
        series = [("loss", rec.losses, (200, 60, 20))]
        if "accuracy" in rec.curves:
            series.append(("accuracy", rec.curves["accuracy"], (30, 150, 30)))
        panels.append(_panel(f"{name}: {rec.step} steps", series))
    return np.concatenate(panels, 1) if panels else np.full((300, 420, 3), 255, np.uint8)


def write_report(paths: Paths, report: NightReport, records: dict[str, StageRecord]) -> tuple[Path, Path]:
    """reports/{date}.json and reports/{date}.png, each written atomically."""
    paths.reports.mkdir(parents=True, exist_ok=True)
    json_path, png_path = paths.report(report.date, "json"), paths.report(report.date, "png")
    text = json.dumps(_clean(asdict(report)), indent=1)
    atomic_write_bytes(json_path, text.encode())
    ok, png = cv2.imencode(".png", draw_curves(records))
    if not ok:
        raise OSError(f"{png_path}: PNG encoding failed")
    atomic_write_bytes(png_path, png.tobytes())
    return json_path, png_path
