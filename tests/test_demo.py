"""`wm demo`: the whole pipeline on a made-up day, in its own throw-away home.

The slow test runs the real command as a user does and checks what they would see: it
finishes, its printed answers are the ones in its summary, every answer's "really from"
is right (recomputed here from the clip's own manifest and the day's schedule), the
answers beat random picks by a wide margin, the contact sheets are JPEGs, the demo's
home has the full data layout, and the user's own home and settings are left alone."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import cv2
import pytest
import yaml

from wm.demo.day import Schedule
from wm.demo.folder import MARKER, prepare_folder
from wm.demo.questions import QueryOutcome, ResultRow
from wm.demo.scorecard import scorecard

# -- the pure parts ------------------------------------------------------------------------

def test_a_clip_belongs_to_the_place_it_shows_for_most_of_its_length():
    s = Schedule(visits=(2, 0, 1), visit_seconds=15.0)
    assert s.seconds == 45.0
    assert s.clip_place(0.0, 3.0) == 2
    assert s.clip_place(-0.02, 3.0) == 2           # audio may start a hair before zero
    assert s.clip_place(13.4, 3.0) == 2            # 1.6 s of the first visit, 1.4 s of the next
    assert s.clip_place(13.6, 3.0) == 0
    assert s.clip_place(45.0, 0.5) == 1            # a short final clip past the end
    assert s.visit_middle(0) == 22.5


def test_scorecard_counts_hits_and_weights_chance_by_answers():
    def outcome(kind, rights, chance):
        rows = [ResultRow(i, f"c{i}", 0.5, "x", r) for i, r in enumerate(rights, 1)]
        return QueryOutcome(kind, "x", "q", rows, chance, "wm query")

    card = scorecard([outcome("image", [True, True, False], 0.2),
                      outcome("image", [True], 0.6), outcome("sound", [False, False], 0.5)])
    assert (card["image"].right, card["image"].asked) == (3, 4)
    assert card["image"].chance == pytest.approx((0.2 * 3 + 0.6) / 4)
    assert card["image"].rate == 0.75
    assert (card["sound"].right, card["sound"].asked, card["sound"].rate) == (0, 2, 0.0)


def test_a_question_the_memory_cannot_answer_is_said_plainly_not_counted_as_a_miss(capsys):
    from wm.demo.output import show_scores
    from wm.demo.scorecard import unanswerable, weak

    why = "no memories with shared video vectors (version v0: its model gives no shared audio vector)"
    rows = [ResultRow(i, f"c{i}", 0.5, "x", True) for i in range(1, 6)]
    card = scorecard([QueryOutcome("sound", "x", "q.wav", rows, 0.25, "wm query --audio q.wav"),
                      QueryOutcome("sound-video", "x", "q.wav", [], 0.25,
                                   "wm query --audio q.wav --modality video", why)])
    assert (card["sound-video"].asked, card["sound-video"].unanswered) == (0, 1)
    assert unanswerable(card) == ["sound-video"] and weak(card) == []
    show_scores(card)
    out = capsys.readouterr().out
    assert "no answer to any of 1" in out and why in out and "version 0" in out


def test_demo_refuses_a_folder_that_is_not_its_own(tmp_path, run_wm):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    r = run_wm("demo", "--workdir", mine)
    assert r.code == 2
    assert len(r.err_lines) == 1 and str(mine) in r.err and "not empty" in r.err
    assert sorted(p.name for p in mine.iterdir()) == ["todo.txt"]


def test_an_earlier_demo_folder_is_cleared_for_the_next(tmp_path):
    first = prepare_folder(tmp_path / "demo")
    (first.root / "home" / "data").mkdir(parents=True)
    first.summary.write_text("{}")
    again = prepare_folder(tmp_path / "demo")
    assert again.root == first.root and [p.name for p in again.root.iterdir()] == [MARKER]


# -- the whole demo ------------------------------------------------------------------------

def _place_of(home: Path, clip_id: str, schedule: Schedule, places: list[str]) -> str:
    (manifest,) = (home / "data" / "clips").glob(f"*/{clip_id}.json")   # any day: midnight may pass
    m = json.loads(manifest.read_text())
    return places[schedule.clip_place(m["source"]["offset"], m["duration"])]


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_its_answers_are_right(tmp_path, home, run_wm):
    # The user's own home and settings: a config the demo must not pick up (tiny video)
    # and a data root it must not write into.
    user_config = tmp_path / "user-config.yaml"
    user_config.write_text(yaml.safe_dump({"capture": {"video_width": 64, "video_height": 48}}))
    work = tmp_path / "demo"
    t0 = time.monotonic()
    r = run_wm("demo", "--workdir", work, env={"WM_CONFIG": str(user_config)}, timeout=480)
    seconds = time.monotonic() - t0
    assert r.code == 0, r.err[-3000:]
    print(r.out)
    print(f"demo wall time: {seconds:.0f} s")

    s = json.loads((work / "summary.json").read_text())
    assert (work / MARKER).exists() and Path(s["home"]) == work / "home"
    demo_home = work / "home"

    # Capture -> watcher -> queue -> sleep -> memory: every clip of the day went through.
    schedule = Schedule(tuple(s["places"].index(v) for v in s["visits"]), s["visit_seconds"])
    expected_clips = schedule.seconds / 3
    assert expected_clips - 1 <= s["clips_written"] <= expected_clips + 1
    assert s["clips_queued"] == s["clips_written"] == s["clips_committed"]
    assert s["version"]

    _check_answers(s, demo_home, schedule)
    _check_scores(s)
    _check_printed(r, s, demo_home)
    _check_layout(work, s)

    # The user's data root was not touched at all: no recordings, memory or log.
    assert not home.root.exists()


def _check_answers(s: dict, demo_home: Path, schedule: Schedule) -> None:
    """Every answer's place is what the clip's own manifest and the schedule say; no
    taught example answers its own word."""
    for q in s["queries"]:
        # A query the memory's version cannot rank (version 0 has no shared space) says why.
        assert len(q["results"]) == (0 if q["unanswered"] else 5), q
        for row in q["results"]:
            place = _place_of(demo_home, row["clip_id"], schedule, s["places"])
            assert row["place"] == place and row["right"] == (place == q["place"])
            if q["kind"] == "word":
                assert row["clip_id"] != s["examples"][q["place"]]
        assert q["right"] == sum(row["right"] for row in q["results"])


def _check_scores(s: dict) -> None:
    """Every kind of question is answered and right far more often than random picks
    (about 25%): pictures, pictures through the shared space, sounds, a new sound finding
    its place's pictures (cross-modal) and taught words. The goal is 90% for every kind;
    runs on the 2-core machine gave 73-100% per kind and 83-92% over all (docs/demo.md),
    so the test asks for a margin every run kept: 60% for every kind (2.4 times random
    picks), 80% over all questions."""
    scores = s["scores"]
    assert set(scores) == {"image", "image-shared", "sound", "sound-video", "word"}
    for kind, score in scores.items():
        queries = [q for q in s["queries"] if q["kind"] == kind]
        assert score["asked"] == 5 * len(queries) and score["right"] == sum(q["right"] for q in queries)
        assert score["unanswered"] == 0, (kind, score)     # the night was promoted: all answered
        assert score["chance"] < 0.35, (kind, score)
        assert score["rate"] >= 0.6, scores
    right = sum(sc["right"] for sc in scores.values())
    asked = sum(sc["asked"] for sc in scores.values())
    assert right / asked >= 0.8, scores


def _check_printed(r, s: dict, demo_home: Path) -> None:
    """What it printed is what it found: one table per contact sheet, with the same
    verdicts; the contact sheets are real JPEGs, one cell per result."""
    tables = re.findall(r"\$ (wm query .*?) --show (\S+)\n(.*?)\n    (\d) of 5 right", r.out, re.S)
    assert [sheet for _, sheet, _, _ in tables] == s["contact_sheets"]
    for command, sheet, rows, right in tables:
        (q,) = [q for q in s["queries"] if q["command"] == command]
        assert Path(sheet).name == f"{q['kind']}-{q['place']}.jpg"
        assert int(right) == q["right"]
        assert rows.count("✓") == q["right"] and rows.count("✗") == 5 - q["right"]
        for row in q["results"]:
            assert re.search(rf"{row['clip_id']}\s+{row['place']}\s+{'✓' if row['right'] else '✗'}", rows)
    for score in s["scores"].values():
        assert re.search(rf"\b{score['right']} of +{score['asked']} right", r.out)
    assert "wm service install" in r.out and f"WM_HOME={demo_home}" in r.out

    assert len(s["contact_sheets"]) == 4
    for p in map(Path, s["contact_sheets"]):
        assert p.read_bytes()[:3] == b"\xff\xd8\xff" and str(p) in r.out
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] >= 200 and img.shape[1] >= 5 * 200


def _check_layout(work: Path, s: dict) -> None:
    """The throw-away home has the whole data layout, made with the demo's own settings."""
    demo_home = work / "home"
    date = s["date"]
    clips = sorted((demo_home / "data" / "clips").glob("*/*.mp4"))
    assert len(clips) == s["clips_written"]
    assert len(list((demo_home / "data" / "clips").glob("*/*.json"))) == len(clips)
    assert len(list((demo_home / "data" / "audio").glob("*/*.wav"))) == len(clips)
    stills = sorted((demo_home / "data" / "frames").glob("*/*.jpg"))
    assert len(stills) >= 3 * (len(clips) - 1)
    demo_cfg = yaml.safe_load((work / "config.yaml").read_text())
    h, w = cv2.imread(str(stills[0])).shape[:2]
    assert (w, h) == (demo_cfg["capture"]["video_width"], demo_cfg["capture"]["video_height"])
    for p in ("memory/episodic.sqlite", f"checkpoints/daily/{date}", f"reports/{date}.json",
              "logs/wm.jsonl", "state/last_sleep.json"):
        assert (demo_home / p).exists(), p
    assert any((demo_home / "memory" / "embeddings").rglob("*.npy"))
    assert json.loads((demo_home / "state" / "last_sleep.json").read_text())["result"] == "completed"
    assert (work / "recording.mp4").stat().st_size > 100_000
