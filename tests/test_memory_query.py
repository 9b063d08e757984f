"""Commit a synthetic day into the memory, then ask it the way a user would: by picture,
by sound, by clip, by time and by taught word, in every output form. The encoders are the
toy ones in memory_support (real features of the media, fitted on the day)."""
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from memory_support import (
    check_consistent,
    fit_toy_encoders,
    make_memory_day,
    settings_for_tests,
)

from wm import cli
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.capture.writer import write_wav
from wm.demo.synth import scene_sound, scene_still
from wm.memory.commit import commit_queued
from wm.memory.labels import run_label
from wm.memory.query import QueryRequest, parse_when, plan, run_query
from wm.memory.sheet import CELL

DATE = "2025-01-15"


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    root = tmp_path_factory.mktemp("memq")
    settings, paths = settings_for_tests(), Paths(root / "home")
    clips = make_memory_day(paths, settings, DATE, n_clips=48, seed=3)
    enc = fit_toy_encoders(paths, clips, "v1")
    result = commit_queued(settings, paths, enc, lambda: False)
    scene = {c.manifest.id: c.scene for c in clips}
    # Query files: a fresh photo and a fresh recording of each scene.
    for s in range(4):
        cv2.imwrite(str(root / f"scene{s}.jpg"), scene_still(s, np.random.default_rng(50 + s), (240, 320)))
        write_wav(root / f"scene{s}.wav", scene_sound(s, np.random.default_rng(60 + s), 2.0), 16000)
    return settings, paths, clips, scene, result, root, (lambda s, p, version: enc)


def ask(day, capsys, **kw) -> dict:
    settings, paths, *_, load = day
    capsys.readouterr()
    assert run_query(settings, paths, QueryRequest(as_json=True, topk=5, **kw), load) == 0
    return json.loads(capsys.readouterr().out)


def scenes_of(day, out) -> list[int]:
    scene = day[3]
    (group,) = out["groups"]
    return [scene[r["clip_id"]] for r in group["results"]]


def right_scene(found: list[int], s: int) -> bool:
    """The best hit and a majority of the top 5 show scene s (chance: one in four a rank)."""
    return found[0] == s and found.count(s) >= 3


def test_commit_puts_every_clip_in_memory_and_marks_it_committed(day):
    settings, paths, clips, _, result, *_ = day
    assert (result.committed, result.remaining, result.unreadable) == (48, 0, 0)
    counts = Queue(paths.memory_db).counts()
    assert counts["committed"] == 48 and counts["queued"] == 0
    state = check_consistent(paths)
    assert state["clips"] == 48 and state["orphans"] == 0 and state["kinds"]


@pytest.mark.parametrize("s", range(4))
def test_image_finds_its_scene(day, capsys, s):
    out = ask(day, capsys, image=day[5] / f"scene{s}.jpg")
    assert out["ranked_by"] == "still"
    assert right_scene(scenes_of(day, out), s)
    scores = [r["score"] for r in out["groups"][0]["results"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("s", range(4))
def test_sound_finds_its_scene(day, capsys, s):
    out = ask(day, capsys, audio=day[5] / f"scene{s}.wav")
    assert out["ranked_by"] == "audio" and right_scene(scenes_of(day, out), s)


@pytest.mark.parametrize("s", range(4))
def test_image_finds_moments_by_their_sound_through_the_shared_space(day, capsys, s):
    out = ask(day, capsys, image=day[5] / f"scene{s}.jpg", modality="audio")
    assert out["ranked_by"] == "shared_audio" and right_scene(scenes_of(day, out), s)
    out = ask(day, capsys, audio=day[5] / f"scene{s}.wav", modality="video")
    assert out["ranked_by"] == "shared_video" and right_scene(scenes_of(day, out), s)


def test_clip_finds_more_moments_like_it_but_not_itself(day, capsys):
    clips, scene = day[2], day[3]
    for c in clips[::12]:
        for modality in ("audio", "video", None):
            out = ask(day, capsys, clip=c.manifest.id, modality=modality)
            ids = [r["clip_id"] for r in out["groups"][0]["results"]]
            assert c.manifest.id not in ids
            assert right_scene([scene[i] for i in ids], c.scene), modality


def test_at_a_time_shows_the_clip_then_and_similar_moments(day, capsys):
    c = day[2][20]
    when = c.manifest.start_time.astimezone() + timedelta(seconds=1.5)
    out = ask(day, capsys, at=when.strftime("%Y-%m-%d %H:%M:%S"))
    assert out["anchor"]["clip_id"] == c.manifest.id
    assert right_scene(scenes_of(day, out), c.scene)
    settings, paths = day[0], day[1]
    with pytest.raises(Exception, match="nothing was recorded around"):
        run_query(settings, paths, QueryRequest(at="2025-01-15 23:00"), day[6])


def test_taught_word_finds_its_scene(day, capsys):
    settings, paths, clips, scene, *_, load = day
    examples = [c for c in clips if c.scene == 2][:2]
    for c in examples:
        assert run_label(settings, paths, c.manifest.id, "Kitchen") == 0
    out = ask(day, capsys, text="kitchen")
    assert out["ranked_by"] == "shared" and right_scene(scenes_of(day, out), 2)
    assert run_label(settings, paths, examples[1].manifest.id, "kitchen", remove=True) == 0
    assert right_scene(scenes_of(day, ask(day, capsys, text="kitchen")), 2)


def test_table_output_names_rank_score_time_path_and_version(day, capsys):
    settings, paths, clips, *_, root, load = day
    capsys.readouterr()
    assert run_query(settings, paths, QueryRequest(image=root / "scene1.jpg", topk=3), load) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("model version v1: 3 best of 48 clips by their stills")
    assert out[1].split() == ["rank", "score", "time", "version", "clip"]
    rank, score, d, t, version, path = out[2].split()
    assert rank == "1" and 0 < float(score) <= 1 and d == DATE and version == "v1"
    assert Path(path).exists() and path.endswith(".mp4")
    assert datetime.strptime(f"{d} {t}", "%Y-%m-%d %H:%M:%S")


def test_date_filters_choose_days(day, capsys):
    out = ask(day, capsys, image=day[5] / "scene0.jpg", since=DATE, until=DATE)
    assert len(out["groups"][0]["results"]) == 5
    for kw in ({"date": "2025-01-16"}, {"until": "2025-01-14"}, {"since": "2025-02-01"}):
        assert cli_code(day, "query", "--image", str(day[5] / "scene0.jpg"),
                        *sum(([f"--{k}", v] for k, v in kw.items()), [])) == 3


def test_contact_sheet_has_a_captioned_frame_per_result(day, capsys, tmp_path):
    settings, paths, *_, root, load = day
    target = tmp_path / "sheet.jpg"
    req = QueryRequest(image=root / "scene3.jpg", topk=7, show=target)
    assert run_query(settings, paths, req, load) == 0
    img = cv2.imread(str(target))
    h, w = CELL
    assert img.shape == (2 * h, 5 * w, 3)      # 7 results: two rows of five cells
    caption = img[4:20, 2:120]                  # the black caption box with white text
    assert (caption.max(axis=2) < 40).mean() > 0.3 and (caption.min(axis=2) > 200).any()
    assert img[h + 30:, w:2 * w].std() > 10     # the 7th cell holds a frame
    assert img[h:, 2 * w:].std() < 2            # cells 8-10 stay empty


def test_open_hands_the_best_clip_to_the_system_player(day, capsys, tmp_path, monkeypatch):
    # No desktop here: a stand-in xdg-open records what it was asked to open.
    settings, paths, *_, root, load = day
    record = tmp_path / "opened.txt"
    fake = tmp_path / "bin" / "xdg-open"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$1\" > {record}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert run_query(settings, paths, QueryRequest(image=root / "scene2.jpg", topk=3,
                                                   open_best=True), load) == 0
    best = capsys.readouterr().out.splitlines()[2].split()[-1]
    for _ in range(100):
        if record.exists() and record.read_text().strip():
            break
        time.sleep(0.05)
    assert record.read_text().strip() == best


# -- bad input: one line, the right exit code, nothing changed --------------------------

def cli_code(day, *argv, home=None) -> int:
    paths = day[1]
    old = os.environ.get("WM_HOME")
    os.environ["WM_HOME"] = str(home or paths.root)
    try:
        return cli.main(list(argv))
    finally:
        if old is None:
            del os.environ["WM_HOME"]
        else:
            os.environ["WM_HOME"] = old


def snapshot(paths: Paths) -> tuple:
    conn = Queue(paths.memory_db).conn
    rows = tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                 for t in ("memory_clips", "memory_shards", "memory_labels", "queue"))
    states = tuple(conn.execute("SELECT state, COUNT(*) FROM queue GROUP BY state"))
    files = sorted(p.name for p in paths.embeddings.rglob("*"))
    return rows, states, files


@pytest.mark.parametrize("argv, code, message", [
    (["query", "--image", "{root}/scene0.wav"], 2, "not a readable image"),
    (["query", "--image", "{root}/missing.jpg"], 2, "no such file"),
    (["query", "--audio", "{root}/scene0.jpg"], 2, "audio"),
    (["query", "--clip", "20200101T000000Z"], 2, "is not in the memory"),
    (["query", "--clip", "yesterday"], 2, "is not a clip id"),
    (["query", "--at", "half past nine"], 2, "is not a time"),
    (["query", "--text", "nowhere"], 2, "unknown word 'nowhere'; known words:"),
    (["query", "--clip", "20250115T090000Z", "--date", DATE, "--since", DATE], 2, "--date"),
    (["query", "--image", "{root}/scene0.jpg", "--topk", "0"], 2, "--topk"),
    (["query", "--image", "{root}/scene0.jpg", "--show", "{root}/sheet.txt"], 2, "cannot write an image"),
    (["query", "--image", "{root}/scene0.jpg", "--date", "2024-12-31"], 3, "no memories on 2024-12-31"),
    (["label", "20200101T000000Z", "kitchen"], 2, "is not in the memory"),
    (["label", "20250115T090000Z", "kitchen", "--remove"], 2, "is not an example"),
    (["label", "20250115T090000Z", "!!"], 2, "is not a word"),
])
def test_bad_input_is_one_line_and_changes_nothing(day, capsys, argv, code, message):
    root, paths = day[5], day[1]
    before = snapshot(paths)
    capsys.readouterr()
    assert cli_code(day, *[a.format(root=root) for a in argv]) == code
    out, err = capsys.readouterr()
    err = err.strip().splitlines()
    assert out == "" and len(err) == 1 and err[0].startswith("wm: ") and message in err[0], err
    assert snapshot(paths) == before


def test_empty_memory_says_so_and_creates_nothing(day, capsys, tmp_path):
    home = tmp_path / "empty"
    assert cli_code(day, "query", "--image", str(day[5] / "scene0.jpg"), home=home) == 3
    assert "memory is empty" in capsys.readouterr().err
    assert not Paths(home).memory_db.exists()


def test_plans_and_times_are_pure():
    assert plan("image", None) == ("video", "still")
    assert plan("image", "audio") == ("shared_video", "shared_audio")
    assert plan("audio", "shared") == ("shared_audio", "shared")
    assert plan("text", None) == ("shared", "shared")
    now = datetime(2025, 1, 15, 10, 0).astimezone()
    assert parse_when("yesterday 14:30", now) == datetime(2025, 1, 14, 14, 30).astimezone()
    assert parse_when("9:05", now) == datetime(2025, 1, 15, 9, 5).astimezone()
    assert parse_when("2h ago", now) == now - timedelta(hours=2)
    assert parse_when("2025-01-15T14:30:00+00:00", now).utcoffset() == timedelta(0)
    with pytest.raises(ValueError):
        parse_when("25:00", now)
