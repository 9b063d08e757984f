"""Bounded growth: retention counts everything wm keeps against retention.max_gb (media,
the memories of purged clips, raw recordings, checkpoints) and bounds each; a night's
commit and retention do work in proportion to the new data, not to a year of history;
`retention_due` says when retention must run outside a sleep cycle."""
import dataclasses
import json
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from memory_support import (
    check_consistent,
    committed_days,
    day_encoders,
    make_memory_day,
    settings_for_tests,
)

import wm.base.queue as queue_mod
import wm.learn.versions as versions_mod
import wm.memory.retention_due as retention_mod
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.capture.ingest.index import fingerprint
from wm.learn.versions import record_version
from wm.memory.clips import clip_key
from wm.memory.commit import commit_queued
from wm.memory.labels import add_label
from wm.memory.query import QueryRequest, answer
from wm.memory.retention import apply_retention, media_files, retention_due
from wm.memory.retention_rules import (
    RawFile,
    due_reason,
    select_checkpoints,
    select_forget,
    select_raw,
)
from wm.memory.store import Store

OLD, NEW = "2025-01-10", "2025-01-15"
NOW = datetime(2025, 1, 16, 12, 0).astimezone().timestamp()
DAY = 86400


def never():
    return False


def settings_with(settings, **retention):
    return dataclasses.replace(settings, retention=dataclasses.replace(settings.retention,
                                                                       **retention))


@pytest.fixture
def memory(tmp_path):
    settings, paths = settings_for_tests(retention={"raw_days": 3}), Paths(tmp_path / "home")
    (old, new), enc = committed_days(paths, settings, [(OLD, 12, 41), (NEW, 8, 42)])
    return settings, paths, old, new, enc


# -- the memories of purged clips ---------------------------------------------------------

def test_memories_beyond_their_share_are_forgotten_oldest_first(memory):
    settings, paths, old, new, enc = memory
    assert apply_retention(settings, paths, now=NOW).purged == 12
    with Store(paths) as store:
        assert add_label(store, "kitchen", old[0].manifest.id)     # a taught word's example
    # The memories (~210 kB, ~10 kB a clip) are allowed 150 kB of a 3 MB limit.
    tight = settings_with(settings, max_gb=0.003, memories_share=0.05)
    result = apply_retention(tight, paths, now=NOW)
    assert 3 <= result.forgotten < 11 and result.purged == 0
    with Store(paths) as store:
        kept = [c for c in old if store.clip(c.manifest.id) is not None]
        forgotten = [c for c in old if c not in kept]
        assert old[0] in kept                                     # the example stays
        assert forgotten == old[1:1 + len(forgotten)]             # the oldest others went
        for c in forgotten:
            assert not c.manifest_path.exists()
            assert not paths.thumbnail(OLD, c.manifest.id).exists()
        assert all(store.clip(c.manifest.id).media_gone is None for c in new)
    states = {i.clip_id for i in Queue(paths.memory_db).items()}
    assert not states & {c.manifest.id for c in forgotten}
    # Their vectors are gone from the shards too (check_consistent: every key is a clip).
    assert check_consistent(paths)["orphans"] == 0
    hits = answer(settings, paths, QueryRequest(clip=new[0].manifest.id, topk=50),
                  lambda s, p, version: enc).groups[0].hits
    assert not {h.clip.clip_id for h in hits} & {c.manifest.id for c in forgotten}


def test_forget_choice_is_pure():
    clip = lambda d: type("C", (), {"start": f"2025-01-{d:02d}"})()
    purged = [(clip(d), 10) for d in (1, 2, 3, 4)]
    assert len(select_forget(iter(purged), records=100, max_bytes=1000, share=0.08)) == 2
    assert select_forget(iter(purged), records=50, max_bytes=1000, share=0.08) == []


# -- raw recordings -----------------------------------------------------------------------

def put_raw(paths: Paths, name: str, data: bytes) -> Path:
    p = paths.raw_dir(OLD) / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def remember(paths: Paths, path: Path, file_name: str | None = None) -> None:
    paths.ingest_index.parent.mkdir(parents=True, exist_ok=True)
    entry = {"fingerprint": fingerprint(path), "file": file_name or str(path), "first": None}
    with open(paths.ingest_index, "a") as f:
        f.write(json.dumps(entry) + "\n")


def test_ingested_raw_recordings_go_after_raw_days_and_count_toward_max_gb(memory):
    settings, paths, *_ = memory
    ingested = put_raw(paths, "a.mp4", os.urandom(300_000))
    waiting = put_raw(paths, "b.mp4", os.urandom(200_000))      # not ingested yet
    copy = put_raw(paths, "c.mp4", os.urandom(100_000))
    remember(paths, ingested)
    remember(paths, copy, file_name="/elsewhere/original-name.mp4")   # same content
    now = time.time()
    far = settings_with(settings, raw_days=10_000)
    counted = apply_retention(far, paths, now=now)
    assert counted.raw_deleted == 0 and ingested.exists()
    assert counted.total_bytes >= counted.media_bytes + 600_000      # raw counted

    later = apply_retention(settings_with(settings, raw_days=3), paths, now=now + 4 * DAY)
    assert later.raw_deleted == 2
    assert not ingested.exists() and not copy.exists() and waiting.exists()
    assert later.total_bytes < counted.total_bytes - 400_000


def test_raw_choice_is_pure():
    f = lambda name, age, ok, size=10: RawFile(Path(name), size, 100 * DAY - age * DAY, ok)
    files = [f("young", 1, True), f("old", 9, True), f("old-waiting", 9, False), f("mid", 5, True)]
    names = lambda sel: [x.path.name for x in sel]
    assert names(select_raw(files, 100 * DAY, raw_days=7, over=0)) == ["old"]
    assert names(select_raw(files, 100 * DAY, raw_days=7, over=15)) == ["old", "mid"]
    assert names(select_raw(files, 100 * DAY, raw_days=7, over=1000)) == ["old", "mid", "young"]


# -- checkpoints ----------------------------------------------------------------------------

def night(paths: Paths, date: str, version: str | None, promoted: bool) -> list[Path]:
    folder = paths.daily_checkpoint_dir(date)
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "state.pt"]
    if version:
        files.append(folder / f"model-{version}.pt")
        record_version(paths, version, date, str(files[-1].relative_to(paths.root)), promoted)
    for p in files:
        p.write_bytes(os.urandom(50_000))
        os.utime(p, (NOW - DAY, NOW - DAY))    # written the night it is named for
    return files


def test_checkpoints_keep_the_last_nights_and_the_versions_in_use(tmp_path):
    settings = settings_for_tests(retention={"checkpoint_nights": 2})
    paths = Paths(tmp_path / "home")
    make_memory_day(paths, settings, NEW, n_clips=4, seed=43)
    used = night(paths, "2025-01-01", "2025-01-01.1", True)
    commit_queued(settings, paths, day_encoders(paths, "2025-01-01.1"), never)
    dropped = night(paths, "2025-01-02", "2025-01-02.1", True)    # promoted, no clip uses it
    failed = night(paths, "2025-01-03", "2025-01-03.1", False)    # not promoted
    recent = night(paths, "2025-01-04", None, False) + night(paths, "2025-01-05", "2025-01-05.1",
                                                             True)
    result = apply_retention(settings, paths, now=NOW)
    assert result.checkpoints_deleted == 5
    assert used[1].exists() and not used[0].exists()       # the model in use, not its state
    assert not any(p.exists() for p in dropped + failed)
    assert not paths.daily_checkpoint_dir("2025-01-02").exists()
    assert all(p.exists() for p in recent)
    assert apply_retention(settings, paths, now=NOW).checkpoints_deleted == 0


def test_checkpoint_choice_is_pure():
    p = Path
    files = {"2025-01-01": [p("a/state.pt"), p("a/model-1.pt")], "2025-01-02": [p("b/state.pt")],
             "2025-01-03": [p("c/state.pt")], "notes": [p("notes/readme")]}
    assert select_checkpoints(files, 1, keep={p("a/model-1.pt")}) == [p("a/state.pt"),
                                                                       p("b/state.pt")]
    assert select_checkpoints(files, 5, keep=set()) == []


# -- files that cannot be read or deleted now ------------------------------------------

def test_an_aged_clip_whose_still_cannot_be_read_now_keeps_its_media(memory):
    settings, paths, old, *_ = memory
    victim = old[5]
    middle = paths.data / victim.manifest.frames[1]
    data = middle.read_bytes()
    middle.unlink()
    middle.mkdir()                 # reading it fails (EISDIR), as an I/O error would
    result = apply_retention(settings, paths, now=NOW)
    assert (result.purged, result.deferred) == (11, 1)
    with Store(paths) as store:
        rec = store.clip(victim.manifest.id)
        assert rec.media_gone is None and (paths.data / rec.audio).exists()
    middle.rmdir()
    middle.write_bytes(data)
    assert apply_retention(settings, paths, now=NOW).purged == 1
    assert paths.thumbnail(OLD, victim.manifest.id).exists()


def test_a_purge_that_stopped_half_way_is_finished(memory):
    settings, paths, old, *_ = memory
    with Store(paths) as store:       # as if killed right after the database said "gone"
        store.mark_media_gone([old[0].manifest.id], NOW, pending=True)
        rec = store.clip(old[0].manifest.id)
    assert all(f.exists() for f in media_files(paths, rec))
    assert retention_due(settings, paths, now=NOW - 365 * DAY) is not None
    apply_retention(settings, paths, now=NOW - 365 * DAY)     # nothing else is old then
    assert not any(f.exists() for f in media_files(paths, rec))
    with Store(paths) as store:
        assert not store.purge_pending(10)


# -- retention outside sleep cycles -----------------------------------------------------

def test_retention_due_says_why(memory, tmp_path):
    settings, paths, *_ = memory
    assert retention_due(settings, Paths(tmp_path / "nothing-yet"), now=NOW) is None
    assert retention_due(settings, paths, now=NOW - 365 * DAY) is None
    assert "older than 3 days" in retention_due(settings, paths, now=NOW)
    apply_retention(settings, paths, now=NOW)
    assert retention_due(settings, paths, now=NOW) is None
    huge = settings_with(settings, min_free_gb=1e9)
    assert retention_due(huge, paths, now=NOW).startswith("disk low")


def test_due_reason_is_pure():
    day = datetime(2025, 1, 10, tzinfo=timezone.utc)
    now = (day + timedelta(days=5)).timestamp()
    args = dict(min_free_bytes=100, oldest_raw=None, pending=False, now=now, raw_days=3)
    assert due_reason(50, oldest_media=None, **args).startswith("disk low")
    assert "media" in due_reason(500, oldest_media=day.isoformat(), **args)
    assert due_reason(500, oldest_media=(day + timedelta(days=4)).isoformat(), **args) is None
    assert due_reason(None, oldest_media=None, **{**args, "pending": True}) is not None


# -- work in proportion to the new data -------------------------------------------------

def add_history(paths: Paths, n: int) -> None:
    """n clips of earlier days already purged (rows only): a year, in miniature."""
    conn = sqlite3.connect(paths.memory_db)
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with conn:
        n0 = conn.execute("SELECT MAX(n) FROM memory_clips").fetchone()[0]
        for i in range(n):
            t = base + timedelta(seconds=3 * i)
            cid, date, num = f"H{i:08d}", t.date().isoformat(), n0 + 1 + i
            conn.execute("INSERT INTO memory_clips(n, key, clip_id, date, start, duration,"
                         " manifest, video, audio, frames, version, media_gone) VALUES"
                         " (?, ?, ?, ?, ?, 3.0, ?, NULL, NULL, '[]', 'v1', 1.0)",
                         (num, clip_key(date, num), cid, date, t.isoformat(), f"clips/{date}/{cid}.json"))
            conn.execute("INSERT INTO queue(clip_id, date, start, manifest, state, enqueued_at,"
                         " updated_at) VALUES (?, ?, ?, ?, 'purged', 0, 0)",
                         (cid, date, t.isoformat(), f"clips/{date}/{cid}.json"))
    conn.close()


def sqlite_steps(monkeypatch) -> list[int]:
    """Counts SQLite VM instructions of every connection opened from now on (SQLite
    counts toward the handler within each statement, so every instruction is counted)."""
    steps = [0]
    real = queue_mod.connect

    def counting(db):
        conn = real(db)
        conn.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1) or 0, 1)
        return conn

    for mod in (queue_mod, versions_mod, retention_mod):
        monkeypatch.setattr(mod, "connect", counting)
    return steps


def night_work(tmp_path, monkeypatch, history: int) -> int:
    settings, paths = settings_for_tests(retention={"raw_days": 3}), Paths(tmp_path / str(history))
    make_memory_day(paths, settings, OLD, n_clips=4, seed=44)
    enc = day_encoders(paths, "v1")
    commit_queued(settings, paths, enc, never)
    add_history(paths, history)
    make_memory_day(paths, settings, NEW, n_clips=4, seed=45)
    enc = day_encoders(paths, "v1")
    with monkeypatch.context() as m:
        steps = sqlite_steps(m)
        assert commit_queued(settings, paths, enc, never).committed == 4
        assert apply_retention(settings, paths, now=NOW).purged == 4
    return steps[0]


def test_a_night_does_not_read_the_history(tmp_path, monkeypatch):
    small = night_work(tmp_path, monkeypatch, 200)
    large = night_work(tmp_path, monkeypatch, 20_000)
    # 100 times the history; the same night's work (index depth grows a little).
    assert large < 1.5 * small, (small, large)
