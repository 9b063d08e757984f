"""The watcher: real watchdog events on real clip files (written by the atomic writer, so a
manifest arrives as a rename), the real SQLite queue, and real `wm ingest` children for
recordings dropped into data/raw/{date}/."""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import pytest
from daemon_harness import wait_for, write_config

from wm.base import config
from wm.base.paths import Paths
from wm.base.queue import COMMITTED, QUEUED, Queue
from wm.capture.scan import queue_clips_on_disk
from wm.capture.writer import atomic_write_bytes
from wm.daemon.raw_ingest import ingest_command
from wm.daemon.watcher import Watcher
from wm.demo.synth import make_day, write_recording

DAY = "2025-01-15"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("WM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WM_CONFIG", str(write_config(tmp_path / "config.yaml")))
    settings = config.load(None)
    paths = Paths.from_settings(settings)
    q = Queue(paths.memory_db)
    watchers: list[Watcher] = []

    def watcher() -> Watcher:
        w = Watcher(paths, ingest=ingest_command(None), settle_seconds=0.5)
        watchers.append(w)
        w.start()
        assert w.scanned.wait(10)
        return w

    yield settings, paths, q, watcher
    for w in watchers:
        w.stop()
    q.close()


def rows(q: Queue) -> dict[str, str]:
    items = q.items()
    assert len(items) == len({i.clip_id for i in items})
    return {i.clip_id: i.state for i in items}


def clip_ids_on_disk(paths: Paths) -> set[str]:
    return {p.stem for p in paths.clips_root.rglob("*.json")}


def test_startup_rescan_queues_each_clip_once_and_clears_partials(env):
    settings, paths, q, watcher = env
    clips = make_day(settings, paths, DAY, 6)
    # Two already slept on; a crash left an in-flight clip's pieces behind.
    for c in clips[:2]:
        q.enqueue(c.manifest, str(c.manifest_path.relative_to(paths.data)))
    q.mark([c.manifest.id for c in clips[:2]], COMMITTED)
    stale = [paths.clips_dir(DAY) / "20250115T235959Z.mp4.partial",
             paths.frames_dir(DAY) / "20250115T235959Z_0.jpg.partial"]
    for p in stale:
        p.write_bytes(b"half a clip")
        os.utime(p, (time.time() - 60, time.time() - 60))   # untouched since the crash

    w = watcher()
    assert not any(p.exists() for p in stale)
    assert rows(q) == {c.manifest.id: COMMITTED if k < 2 else QUEUED for k, c in enumerate(clips)}
    assert w.view().rescanned == 4

    w.stop()
    again = watcher()                       # a restart finds nothing new
    assert again.view().rescanned == 0 and len(rows(q)) == 6


def test_a_clip_is_queued_when_its_manifest_is_renamed_into_place(env):
    settings, paths, q, watcher = env
    w = watcher()
    # An unreadable manifest is reported and skipped; the watcher carries on.
    atomic_write_bytes(paths.clips_dir(DAY) / "20250115T090000Z.json", b"{not json")
    clips = make_day(settings, paths, DAY, 3, start=datetime(2025, 1, 15, 10, tzinfo=timezone.utc))
    wait_for(lambda: len(rows(q)) == 3, 10, "three clips queued")
    assert set(rows(q)) == {c.manifest.id for c in clips}
    assert w.view().enqueued == 3
    # What the writer's rename produced is all the watcher needed: nothing else touched.
    assert queue_clips_on_disk(paths, q) == 0


def test_a_dropped_recording_is_ingested_once(env, tmp_path):
    settings, paths, q, watcher = env
    src = tmp_path / "phone.mp4"
    write_recording(src, 7.0, [0, 1], 3.0, size=(120, 160))
    w = watcher()
    # Copied in slowly, as over a network: nothing happens until the file stops changing.
    dest = paths.raw_dir(DAY) / "phone.mp4"
    dest.parent.mkdir(parents=True)
    data = src.read_bytes()
    with open(dest, "wb") as f:
        for i in range(0, len(data), len(data) // 4 + 1):
            f.write(data[i:i + len(data) // 4 + 1])
            f.flush()
            time.sleep(0.2)
    wait_for(lambda: w.view().ingested_files == 1, 30, "the recording to be ingested")
    wait_for(lambda: len(rows(q)) == 3, 10, "its clips queued")     # 7 s: 3 clips, last padded
    assert clip_ids_on_disk(paths) == set(rows(q))
    assert w.view().ingest_errors == 0

    # A restart sees the file again: ingest knows it, no clip twice.
    w.stop()
    w2 = watcher()
    wait_for(lambda: w2.view().pending_raw == 0 and w2.view().ingesting is None, 30, "re-check")
    assert len(clip_ids_on_disk(paths)) == 3 and len(rows(q)) == 3


def test_a_bad_recording_is_reported_and_not_retried(env, tmp_path):
    settings, paths, q, watcher = env
    w = watcher()
    bad = paths.raw_dir(DAY) / "broken.mp4"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    # Not in a date folder: left alone (the log says where recordings go).
    stray = paths.raw_root / "holiday" / "beach.mp4"
    stray.parent.mkdir(parents=True)
    write_recording(stray, 2.0, [0], 2.0, size=(120, 160))
    wait_for(lambda: w.view().ingest_errors == 1, 30, "the failure")
    assert rows(q) == {}
    time.sleep(1.5)
    assert w.view().ingest_errors == 1 and w.view().pending_raw == 0
    assert w.view().ingested_files == 0 and not paths.clips_root.joinpath("holiday").exists()
