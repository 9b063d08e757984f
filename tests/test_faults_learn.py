"""Faults on the learning side: a model file that is missing or has a flipped bit, a
checkpoint folder not yet durable when its version is recorded, an unreadable still or
WAV among a night's clips, and a queue that holds years of history."""
import json
import os
import sqlite3
import stat
import tracemalloc

import numpy as np
import pytest
import torch
from learn_support import (
    day,
    one_thread,  # noqa: F401 (an autouse fixture)
    queue_day,
    tiny_settings,
)

from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.base.queue import Queue, open_queue_db
from wm.learn import nightclips
from wm.learn.data import (
    ClipRef,
    NoReadableClips,
    Unreadable,
    clip_audio,
    draw_readable,
    read_clip_audio,
)
from wm.learn.encoders import load_encoders
from wm.learn.fixed import VERSION_0
from wm.learn.modelfiles import (
    CHECKSUM,
    MISSING,
    check_model_files,
    file_sha256,
    load_checkpoint,
)
from wm.learn.models import ModelConfig, build_models
from wm.learn.nightclips import night_data
from wm.learn.train import atomic_save
from wm.learn.versions import all_versions, latest_version, record_version
from wm.nightly.cycle import sleep_cycle
from wm.nightly.run import run_sleep

DAY = day(1)
SHORT = {"jepa": {"steps": 8}, "cpc": {"steps": 5}, "align": {"steps": 5}}


def save_version(settings, paths: Paths, name: str, seed: int, checksum: bool = True) -> str:
    """A real promoted version: tiny models saved as a night saves them, and its row."""
    models = build_models(ModelConfig.from_settings(settings), seed)
    ckpt = paths.daily_checkpoint_dir(name[:10]) / f"model-{name}.pt"
    sha = atomic_save({"format": 1, "version": name, "config": models.config.to_dict(),
                       "models": models.state_dict()}, ckpt)
    record_version(paths, name, name[:10], str(ckpt.relative_to(paths.root)), True,
                   sha if checksum else None)
    return str(ckpt.relative_to(paths.root))


def flip_a_bit(path) -> None:
    """One bit in the middle of the file: inside a tensor's bytes, so torch still loads it."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def version(paths: Paths, name: str):
    return next(v for v in all_versions(paths) if v.version == name)


# -- 1. a model file that is missing or corrupt ------------------------------------------

def test_a_flipped_bit_is_caught_and_an_older_version_stands_in(tmp_path):
    settings = tiny_settings()
    paths = Paths(tmp_path)
    save_version(settings, paths, "2025-01-14.1", seed=1)
    newest = save_version(settings, paths, "2025-01-15.1", seed=2)
    flip_a_bit(paths.root / newest)
    # Without its checksum the damaged file would load as if nothing happened.
    assert load_checkpoint(paths.root / newest, torch.device("cpu"))["version"] == "2025-01-15.1"

    assert load_encoders(settings, paths).version == "2025-01-14.1"
    broken = version(paths, "2025-01-15.1")
    assert broken.broken and CHECKSUM in broken.broken and (paths.root / newest).exists()
    assert latest_version(paths).version == "2025-01-14.1"
    with pytest.raises(WmError, match="fails its checksum"):          # asked for by name
        load_encoders(settings, paths, version="2025-01-15.1")

    (paths.root / version(paths, "2025-01-14.1").checkpoint).unlink()
    assert load_encoders(settings, paths).version == VERSION_0       # nothing usable left
    assert MISSING in version(paths, "2025-01-14.1").broken
    assert len(all_versions(paths)) == 2                             # states, not deletions


def test_a_night_whose_newest_model_is_gone_still_trains_commits_and_cleans_up(tmp_path):
    # The night "collapses" (not promoted), so commit needs the newest promoted version:
    # its file is gone, the one before stands in, for training and for the memory alike.
    settings = tiny_settings(**SHORT, collapse_min_rank=1000.0)
    paths = Paths(tmp_path)
    save_version(settings, paths, "2025-01-14.1", seed=1)
    gone = save_version(settings, paths, "2025-01-15.1", seed=2)
    (paths.root / gone).unlink()
    queue_day(settings, paths, DAY, 12, seed=3)

    out = sleep_cycle(settings, paths, None, None, lambda: False)
    assert out.result == "completed" and out.version == f"{DAY}.1"
    state = load_checkpoint(paths.daily_checkpoint_dir(DAY) / "state.pt", torch.device("cpu"))
    assert state["started_from"] == "2025-01-14.1"
    assert out.stages["commit"].startswith("12 committed") and "version 2025-01-14.1" in out.stages["commit"]
    assert "retention" in out.stages
    assert MISSING in version(paths, "2025-01-15.1").broken


def test_a_model_from_before_z_pooling_starts_a_night_whose_version_pools_z(tmp_path):
    # The newest version was saved before `cpc.pool` existed (no such key: it pools c). Its
    # weights start the night; the new version pools z, and its stored mean centres z.
    settings = tiny_settings(**SHORT)
    paths = Paths(tmp_path)
    models = build_models(ModelConfig.from_settings(settings), 1)
    config = models.config.to_dict()
    del config["cpc"]["pool"]
    ckpt = paths.daily_checkpoint_dir("2025-01-14") / "model-2025-01-14.1.pt"
    sha = atomic_save({"format": 1, "version": "2025-01-14.1", "config": config,
                       "models": models.state_dict()}, ckpt)
    record_version(paths, "2025-01-14.1", "2025-01-14", str(ckpt.relative_to(paths.root)), True, sha)
    clips = queue_day(settings, paths, DAY, 12, seed=3)

    out = sleep_cycle(settings, paths, None, None, lambda: False)
    assert out.result == "completed" and out.version == f"{DAY}.1"
    state = load_checkpoint(paths.daily_checkpoint_dir(DAY) / "state.pt", torch.device("cpu"))
    assert state["started_from"] == "2025-01-14.1"
    assert load_encoders(settings, paths, version="2025-01-14.1").models.config.cpc.pool == "c"
    new = load_encoders(settings, paths, version=f"{DAY}.1")
    assert new.models.config.cpc.pool == "z"
    sounds = [read_clip_audio(paths.data / c.manifest.audio) for c in clips]
    audio = new.embed_clips([[] for _ in sounds], sounds).audio
    spread = np.linalg.norm(audio, axis=1).mean()
    assert np.linalg.norm(audio.mean(0)) < 0.05 * spread      # centred on the day it learned


def test_a_night_with_only_broken_models_starts_from_scratch_and_commits_version_0(tmp_path):
    settings = tiny_settings(**SHORT, collapse_min_rank=1000.0)
    paths = Paths(tmp_path)
    flip_a_bit(paths.root / save_version(settings, paths, "2025-01-15.1", seed=2))
    queue_day(settings, paths, DAY, 12, seed=4)
    out = sleep_cycle(settings, paths, None, None, lambda: False)
    assert out.result == "completed"
    assert "version v0" in out.stages["commit"] and "retention" in out.stages


def test_an_unreadable_night_checkpoint_starts_the_night_over(tmp_path):
    settings = tiny_settings(**SHORT)
    paths = Paths(tmp_path)
    queue_day(settings, paths, DAY, 12, seed=5)
    state = paths.daily_checkpoint_dir(DAY) / "state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"PK\x03\x04 cut short")
    out = sleep_cycle(settings, paths, None, None, lambda: False)
    assert out.result == "completed" and out.version == f"{DAY}.1"


def test_check_model_files_lists_what_is_missing_or_damaged(tmp_path):
    settings = tiny_settings()
    paths = Paths(tmp_path)
    good = save_version(settings, paths, "2025-01-13.1", seed=1)
    damaged = save_version(settings, paths, "2025-01-14.1", seed=2)
    gone = save_version(settings, paths, "2025-01-15.1", seed=3)
    unchecked = save_version(settings, paths, "2025-01-16.1", seed=4, checksum=False)
    flip_a_bit(paths.root / damaged)
    flip_a_bit(paths.root / unchecked)       # no checksum recorded: cannot be told
    (paths.root / gone).unlink()

    found = {p.version: p for p in check_model_files(paths)}
    assert set(found) == {"2025-01-14.1", "2025-01-15.1"}
    assert found["2025-01-14.1"].problem == CHECKSUM and found["2025-01-15.1"].problem == MISSING
    assert found["2025-01-14.1"].checkpoint == damaged and not found["2025-01-14.1"].marked_broken
    assert [p.version for p in check_model_files(paths, checksums=False)] == ["2025-01-15.1"]
    assert file_sha256(paths.root / good) == version(paths, "2025-01-13.1").sha256


def test_a_database_from_before_checksums_is_migrated(tmp_path):
    settings = tiny_settings()
    paths = Paths(tmp_path)
    models = build_models(ModelConfig.from_settings(settings), 1)
    ckpt = paths.checkpoints / "old.pt"
    atomic_save({"config": models.config.to_dict(), "models": models.state_dict()}, ckpt)
    paths.memory_db.parent.mkdir(parents=True)
    conn = sqlite3.connect(paths.memory_db)
    conn.execute("CREATE TABLE model_versions (version TEXT PRIMARY KEY, date TEXT NOT NULL,"
                 " created TEXT NOT NULL, checkpoint TEXT NOT NULL, promoted INTEGER NOT NULL)")
    conn.execute("INSERT INTO model_versions VALUES ('2025-01-10.1', '2025-01-10',"
                 " '2025-01-11T03:00:00+00:00', 'checkpoints/old.pt', 1)")
    conn.commit()
    conn.close()

    [v] = all_versions(paths)
    assert v.sha256 is None and v.broken is None                      # NULL: not recorded
    assert load_encoders(settings, paths).version == "2025-01-10.1"   # loads unverified
    save_version(settings, paths, "2025-01-11.1", seed=2)
    assert [x.sha256 is not None for x in all_versions(paths)] == [False, True]


# -- 2. a checkpoint is durable before its version row exists ---------------------------

def test_a_version_row_is_written_only_after_its_file_and_folder_are_fsynced(tmp_path, monkeypatch):
    settings = tiny_settings(**SHORT)
    paths = Paths(tmp_path)
    queue_day(settings, paths, DAY, 12, seed=6)
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            rows = [v.version for v in all_versions(paths)] if paths.memory_db.exists() else []
            events.append(("fsync_dir", (st.st_dev, st.st_ino), rows))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst), None))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    out = sleep_cycle(settings, paths, None, None, lambda: False)
    monkeypatch.undo()

    model = paths.root / version(paths, out.version).checkpoint
    folder = os.stat(model.parent)
    renamed = events.index(("replace", str(model), None))
    synced = [e for e in events[renamed:] if e[0] == "fsync_dir" and e[1] == (folder.st_dev, folder.st_ino)]
    assert synced, "the checkpoint folder was not fsynced after the rename"
    assert out.version not in synced[0][2]          # the row came after the folder was durable
    assert version(paths, out.version).sha256 == file_sha256(model)


def test_atomic_save_fsyncs_the_folders_it_creates(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            synced.append((st.st_dev, st.st_ino))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "checkpoints" / "daily" / "2025-01-15" / "model.pt"
    sha = atomic_save({"x": torch.arange(10)}, target)
    monkeypatch.undo()
    ids = {(os.stat(p).st_dev, os.stat(p).st_ino) for p in (tmp_path, *target.parents[:3])}
    assert ids <= set(synced)                   # each new folder's entry is durable too
    assert sha == file_sha256(target)


# -- 3. unreadable media leave a clip out, not the night ---------------------------------

def test_a_corrupt_still_and_a_truncated_wav_are_left_out_and_the_night_completes(tmp_path, capsys):
    settings = tiny_settings(**SHORT)
    paths = Paths(tmp_path)
    clips = queue_day(settings, paths, DAY, 16, seed=7)
    bad_still, bad_wav = clips[3].manifest.id, clips[9].manifest.id
    jpeg = paths.frame(DAY, bad_still, 1)
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[:4] + bytes(np.random.default_rng(0).integers(0, 256, len(data) - 4, np.uint8)))
    wav = paths.audio(DAY, bad_wav)
    wav.write_bytes(wav.read_bytes()[:1001])     # cut mid-sample, as a failing disk leaves it

    assert run_sleep(settings, paths, None, None) == 0
    out = capsys.readouterr().out
    assert "unreadable: 2 clips left out of training" in out, out
    [v] = all_versions(paths)
    report = json.loads(paths.report(DAY).read_text())
    assert report["version"] == v.version and report["clips_unreadable"] == 2
    assert set(report["unreadable"]) == {bad_still, bad_wav}
    assert "truncated" in report["unreadable"][bad_wav] or "buffer" in report["unreadable"][bad_wav]
    last = json.loads(paths.last_sleep_file.read_text())
    assert last["result"] == "completed" and "commit" in last["stages"] and "retention" in last["stages"]


def ref(cid: str) -> ClipRef:
    return ClipRef(cid, "2025-01-15", 0.0, (), None)


def test_draws_replace_an_unreadable_clip_and_stop_when_none_is_left():
    today, replay = [ref("a"), ref("b"), ref("bad")], [ref("old")]
    bad = Unreadable()

    def load(c):
        if c.id == "bad":
            raise OSError("cannot be read as an image")
        return c.id

    rng = np.random.default_rng(0)
    for _ in range(20):
        got = draw_readable(rng, today, replay, 8, 0.25, load, bad)
        assert len(got) == 8 and "bad" not in got
    assert bad.clips == {"bad": "cannot be read as an image"} and [c.id for c in today] == ["a", "b"]
    with pytest.raises(NoReadableClips):
        draw_readable(rng, [ref("bad")], [], 4, 0.25, load, Unreadable())


def test_a_wav_cut_inside_its_header_is_unreadable_too(tmp_path):
    # not even a WAV any more: wave.Error, which is no OSError
    settings = tiny_settings()
    paths = Paths(tmp_path)
    [clip] = queue_day(settings, paths, DAY, 1, seed=8)
    wav = paths.audio(DAY, clip.manifest.id)
    wav.write_bytes(wav.read_bytes()[:30])
    [c] = night_data(paths, None, 0).train
    bad = Unreadable()
    got = draw_readable(np.random.default_rng(0), [c], [ref("old")], 1, 0.0,
                        lambda x: clip_audio(x, 48000) if x.audio else x.id, bad)
    assert got == ["old"] and list(bad.clips) == [c.id]


# -- 4. a night reads its own clips and a bounded replay sample, not the history --------

def add_history(paths: Paths, n: int) -> None:
    """n purged clips of past years, as a year of recording leaves them in the queue."""
    conn = open_queue_db(paths.memory_db)
    rows = [(f"2020{i:012d}", f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}", f"2020-01-01T00:00:{i:09d}Z",
             f"clips/2020/{i}.json", "purged", 0.0, 0.0) for i in range(n)]
    with conn:
        conn.executemany("INSERT INTO queue(clip_id, date, start, manifest, state, enqueued_at,"
                         " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()


def test_a_night_does_not_load_the_queue_history(tmp_path):
    settings = tiny_settings()
    paths = Paths(tmp_path)
    queue_day(settings, paths, DAY, 4, seed=9)
    add_history(paths, 60_000)
    tracemalloc.start()
    try:
        data = night_data(paths, None, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data.train) + len(data.held_out) == 4 and data.replay == []
    # Loading 60,000 queue rows into Python costs tens of MB; tonight's four clips do not.
    assert peak < 4 << 20, f"{peak / 1e6:.1f} MB"


def test_replay_is_a_bounded_sample_of_earlier_days_kept_clips(tmp_path, monkeypatch):
    settings = tiny_settings()
    paths = Paths(tmp_path)
    earlier = queue_day(settings, paths, day(3), 10, seed=10)
    gone = queue_day(settings, paths, day(2), 3, seed=11)
    q = Queue(paths.memory_db)
    q.mark([c.manifest.id for c in earlier], "committed")
    q.mark([c.manifest.id for c in gone], "purged")
    q.close()
    tonight = queue_day(settings, paths, DAY, 4, seed=12)

    monkeypatch.setattr(nightclips, "REPLAY_POOL", 6)
    data = night_data(paths, None, 0)
    assert data.dates == [DAY]
    assert {c.id for c in data.train + data.held_out} == {c.manifest.id for c in tonight}
    replay = [c.id for c in data.replay]
    assert len(replay) == 6 == len(set(replay)) and replay == sorted(replay)
    assert set(replay) <= {c.manifest.id for c in earlier}
    assert night_data(paths, None, 0).replay == data.replay            # the same every run

    monkeypatch.setattr(nightclips, "REPLAY_POOL", 4096)
    assert {c.id for c in night_data(paths, None, 0).replay} == {c.manifest.id for c in earlier}
    # a named day takes its committed clips too, and learns the others as replay
    again = night_data(paths, day(3), 0)
    assert {c.id for c in again.train + again.held_out} == {c.manifest.id for c in earlier}
    assert {c.id for c in again.replay} == {c.manifest.id for c in tonight}
