"""The nightly report's figure: a real matplotlib PNG of a real night, with the nights
before it, drawn from whatever fields the evaluation has (checked by decoding the PNG and
by its inputs, never pixel by pixel)."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from learn_support import day, one_thread, queue_day, tiny_settings  # noqa: F401
from wm.base.paths import Paths
from wm.learn.figure import draw_figure, retrievals
from wm.learn.report import history


def _png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def _looks_like_a_figure(img: np.ndarray) -> None:
    h, w = img.shape[:2]
    assert 600 <= h <= 2000 and 900 <= w <= 3000, img.shape
    ink = (img < 200).any(axis=2).mean()        # text, axes and curves on a white page
    assert 0.02 < ink < 0.6, ink
    colour = (img.max(axis=2).astype(int) - img.min(axis=2)) > 60
    assert colour.mean() > 0.002                # the curves are drawn, not only black axes


def _night(date: str, promoted: bool = True, **evaluation) -> dict:
    ev = {"cpc_accuracy": 0.4, "cpc_accuracy_per_step": [0.5, 0.4, 0.3], "cpc_chance": 1 / 17,
          "recall_at_1": 0.5, "recall_at_5": 0.9, "recall_chance_at_5": 0.3, "retrieval_clips": 16,
          "video": {"rankme": 5.0, "std": 0.05, "n": 40}, "collapse": [], **evaluation}
    curve = [[i, 2.0 - i / 100] for i in range(1, 101)]
    stage = {"steps": 100, "max_steps": 100, "seconds": 3.0, "per_second": 50.0, "unit": "clips",
             "loss_curve": curve, "resumed_at": [40], "note": ""}
    return {"date": date, "version": f"{date}.1", "promoted": promoted, "device": "cpu",
            "seconds": 9.0, "clips_train": 40, "clips_held_out": 8, "clips_replay": 0,
            "stages": {"jepa": stage, "cpc": stage, "align": stage}, "evaluation": ev}


def test_retrievals_finds_every_version_the_evaluation_measured():
    flat = retrievals(_night("2025-01-01")["evaluation"])
    assert [r.name for r in flat] == ["candidate"]
    assert flat[0].scores == {"recall_at_1": 0.5, "recall_at_5": 0.9}
    assert flat[0].chance == {"recall_at_5": 0.3, "recall_at_1": 1 / 16}
    nested = retrievals(_night("2025-01-01", versions={
        "version0": {"recall_at_5": 0.6, "recall_chance_at_5": 0.3},
        "current": {"recall_at_5": 0.8}})["evaluation"])
    assert [r.name for r in nested] == ["candidate", "current", "version 0"]
    listed = retrievals({"compare": [{"name": "candidate", "precision_at_5": 0.7},
                                     {"name": "version_0", "precision_at_5": 0.5, "chance": 0.25}]})
    assert [(r.name, r.scores, r.chance) for r in listed] == [
        ("candidate", {"precision_at_5": 0.7}, {}),
        ("version 0", {"precision_at_5": 0.5}, {"precision_at_5": 0.25})]
    assert retrievals({"recall_at_5": None, "video": {"rankme": 3.0}}) == []


@pytest.mark.parametrize("evaluation", [
    {},                                                     # an old or cut-short night
    {"current": {"recall_at_5": 0.7}, "version_0": {"recall_at_5": 0.5}},
])
def test_the_figure_draws_whatever_a_night_has(evaluation):
    bare = {"date": "2025-01-03", "stages": {}, "evaluation": {}}
    nights = [_night("2025-01-01"), _night("2025-01-02", promoted=False), bare]
    img = _png(draw_figure(_night("2025-01-04", **evaluation), [[1, 0.1], [100, 0.4]], nights))
    _looks_like_a_figure(img)
    _png(draw_figure(bare, [], []))          # nothing trained, no history: still a figure


def test_history_reads_the_earlier_nights_and_skips_a_broken_one(tmp_path):
    paths = Paths(tmp_path)
    paths.reports.mkdir()
    for d in ("2025-01-01", "2025-01-02", "2025-01-04"):
        paths.report(d).write_text(json.dumps(_night(d)))
    paths.report("2025-01-03").write_text("{not json")
    assert [r["date"] for r in history(paths, "2025-01-04")] == ["2025-01-01", "2025-01-02"]


def test_commands_that_never_draw_never_import_matplotlib():
    code = ("import sys, wm.learn.report, wm.learn.night, wm.memory.query, wm.cli;"
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_a_real_night_report_shows_it_and_the_night_before(tmp_path):
    from wm.nightly.cycle import sleep_cycle

    settings = tiny_settings(jepa={"steps": 60}, cpc={"steps": 40}, align={"steps": 60})
    paths = Paths(tmp_path / "home")
    first, second = day(2), day(1)
    for d, seed in ((first, 1), (second, 2)):
        queue_day(settings, paths, d, 40, seed=seed)
        out = sleep_cycle(settings, paths, None, None, lambda: False)
        assert out.result == "completed", out.stages
    reports = {d: json.loads(paths.report(d).read_text()) for d in (first, second)}
    for d, r in reports.items():
        assert r["date"] == d and len(r["stages"]["jepa"]["loss_curve"]) == 60
        assert r["evaluation"]["cpc_chance"] == pytest.approx(1 / 17)
    # The second night's history panel is drawn from the first night's report.
    assert [r["date"] for r in history(paths, second)] == [first]
    for d in (first, second):
        _looks_like_a_figure(_png(paths.report(d, "png").read_bytes()))
