"""Retention deletes old media but keeps the memories: purged clips are still found, say
their media is gone and show their thumbnail; clips not yet in memory are never touched."""
import dataclasses
import json
from datetime import datetime

import cv2
import numpy as np
import pytest
from memory_support import (
    check_consistent,
    committed_days,
    day_encoders,
    make_memory_day,
    settings_for_tests,
)

from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.demo.synth import scene_still
from wm.memory.commit import commit_queued
from wm.memory.query import QueryRequest, run_query
from wm.memory.retention import apply_retention, media_bytes, media_files, select_purge
from wm.memory.sheet import THUMB_WIDTH
from wm.memory.store import Store

OLD, NEW, LATER = "2025-01-10", "2025-01-15", "2025-01-16"
NOW = datetime(2025, 1, 16, 12, 0).astimezone().timestamp()


@pytest.fixture
def memory(tmp_path):
    settings, paths = settings_for_tests(retention={"raw_days": 3}), Paths(tmp_path / "home")
    (old, new), enc = committed_days(paths, settings, [(OLD, 12, 21), (NEW, 8, 22)])
    # A day queued but not yet slept on: retention must leave it alone whatever its age.
    pending = make_memory_day(paths, settings, "2025-01-01", n_clips=4, seed=23)
    return settings, paths, old, new, pending, (lambda s, p, version: enc), tmp_path


def test_old_media_goes_memories_stay(memory, capsys):
    settings, paths, old, new, pending, load, tmp = memory
    result = apply_retention(settings, paths, now=NOW)
    assert result.purged == 12 and result.freed_bytes > 0
    with Store(paths) as store:
        for c in old:
            rec = store.clip(c.manifest.id)
            assert rec.media_gone == NOW
            assert not any(f.exists() for f in media_files(paths, rec))
            assert c.manifest_path.exists()               # the record stays
            thumb = cv2.imread(str(paths.thumbnail(OLD, c.manifest.id)))
            assert thumb is not None and thumb.shape[1] == THUMB_WIDTH
        for c in new + pending:
            assert (paths.data / c.manifest.video).exists()
    states = {i.clip_id: i.state for i in Queue(paths.memory_db).items()}
    assert {states[c.manifest.id] for c in old} == {"purged"}
    assert {states[c.manifest.id] for c in new} == {"committed"}
    assert {states[c.manifest.id] for c in pending} == {"queued"}
    check_consistent(paths)

    # Still found by a picture of its scene, and the answer says the media is gone.
    img = tmp / "q.jpg"
    cv2.imwrite(str(img), scene_still(old[0].scene, np.random.default_rng(3), (240, 320)))
    capsys.readouterr()
    req = QueryRequest(image=img, topk=3, date=OLD, as_json=True, show=tmp / "sheet.jpg")
    assert run_query(settings, paths, req, load) == 0
    results = json.loads(capsys.readouterr().out)["groups"][0]["results"]
    scene = {c.manifest.id: c.scene for c in old}
    found = [scene[r["clip_id"]] for r in results]
    assert found[0] == old[0].scene and found.count(old[0].scene) >= 2
    assert all(r["media"] == "gone" and r["clip"] is None for r in results)
    assert all(r["thumbnail"] and cv2.imread(r["thumbnail"]) is not None for r in results)
    sheet = cv2.imread(str(tmp / "sheet.jpg"))
    assert sheet is not None and sheet[40:, :320].std() > 10   # the thumbnail is drawn
    assert run_query(settings, paths, dataclasses.replace(req, as_json=False, show=None), load) == 0
    assert "media deleted (thumbnail" in capsys.readouterr().out

    again = apply_retention(settings, paths, now=NOW)
    assert again.purged == 0 and again.freed_bytes == 0


def test_size_limit_deletes_oldest_first(memory):
    settings, paths, old, new, pending, *_ = memory
    total = media_bytes(paths)
    limit = total * 0.6
    far = dataclasses.replace(settings, retention=dataclasses.replace(
        settings.retention, raw_days=10_000, max_gb=limit / 1e9))
    result = apply_retention(far, paths, now=NOW)
    assert result.media_bytes <= limit and not result.over_limit
    with Store(paths) as store:
        gone = [store.clip(c.manifest.id).media_gone is not None for c in old + new]
    assert gone[0] and not gone[-1]
    assert gone == sorted(gone, reverse=True)   # a prefix in time order


def test_reembedding_skips_purged_clips_which_stay_with_their_version(memory):
    settings, paths, old, new, pending, *_ = memory
    apply_retention(settings, paths, now=NOW)
    v2 = day_encoders(paths, "v2", seed=2)
    result = commit_queued(settings, paths, v2, lambda: False)
    assert (result.committed, result.reembedded, result.stale) == (4, 8, 0)
    with Store(paths) as store:
        assert {store.clip(c.manifest.id).version for c in old} == {"v1"}
        assert {store.clip(c.manifest.id).version for c in new} == {"v2"}
    check_consistent(paths)


def test_select_purge_is_age_then_size():
    rec = lambda day: type("C", (), {"start": f"2025-01-{day:02d}T12:00:00+00:00"})()  # noqa: E731
    clips = [(rec(d), 10) for d in (1, 2, 3, 4)]
    now = datetime.fromisoformat("2025-01-05T12:00:00+00:00").timestamp()
    assert len(select_purge(clips, 40, now, raw_days=2.5, max_bytes=100)) == 2
    assert len(select_purge(clips, 40, now, raw_days=100, max_bytes=15)) == 3
    assert len(select_purge(clips, 40, now, raw_days=100, max_bytes=40)) == 0
