"""Faults the memory meets and must survive: files that cannot be read at the moment of a
commit or re-embed (never taken for deleted), maintenance deleting files under a running
query, and pictures that would cost gigabytes to decode.

How the unreadable files are made: chmod 000 does not stop root (CI runs as root), so a
still is replaced by a *directory* of the same name (reading it fails with EISDIR, like
an I/O error would), a WAV by *garbage bytes* (decoding fails), or a WAV by a *FIFO* (which
would block a reader for ever); a short I/O error (EIO), which no local filesystem
produces on demand, is injected once by monkeypatching the one function that reads
media bytes (wm.memory.reading.read_file)."""
import errno
import os
import sqlite3
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from memory_support import (
    check_consistent,
    day_encoders,
    make_memory_day,
    settings_for_tests,
)

from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.demo.synth import scene_still
from wm.memory import ann, reading
from wm.memory import commit as commit_mod
from wm.memory.answer import answer
from wm.memory.commit import commit_queued
from wm.memory.picture import claimed_size
from wm.memory.reading import MISSING, OK, UNREADABLE, verdict
from wm.memory.request import QueryRequest
from wm.memory.retention import apply_retention
from wm.memory.retry import GIVE_UP, PARTIAL, RETRY, after_failure, retry_delay
from wm.memory.store import Store

DATE = "2025-01-15"
SOON = 1737000000.0   # 2025-01-16: nothing of DATE is past raw_days yet
TESTS = Path(__file__).parent
REPO = TESTS.parent


def never():
    return False


def later(paths: Paths) -> None:
    """As if the retry delay (an hour or more) had passed."""
    q = Queue(paths.memory_db)
    q.conn.execute("UPDATE queue SET retry_after = 0 WHERE retry_after IS NOT NULL")
    q.close()


def row(paths: Paths, clip_id: str) -> tuple:
    q = Queue(paths.memory_db)
    try:
        return q.conn.execute("SELECT state, attempts FROM queue WHERE clip_id = ?",
                              (clip_id,)).fetchone()
    finally:
        q.close()


def break_stills(paths: Paths, clip) -> dict[Path, bytes]:
    """Each still becomes a directory; returns the originals to put back."""
    saved = {}
    for rel in clip.manifest.frames:
        p = paths.data / rel
        saved[p] = p.read_bytes()
        p.unlink()
        p.mkdir()
    return saved


def garble(path: Path) -> dict[Path, bytes]:
    saved = {path: path.read_bytes()}
    path.write_bytes(b"\x00garbage, not a WAV or JPEG" * 4)
    return saved


def restore(saved: dict[Path, bytes]) -> None:
    for p, data in saved.items():
        if p.is_dir():
            p.rmdir()
        p.write_bytes(data)


@pytest.fixture
def v1(tmp_path):
    settings = settings_for_tests(memory={"read_attempts": 3})
    paths = Paths(tmp_path / "home")
    clips = make_memory_day(paths, settings, DATE, n_clips=8, seed=31)
    enc = day_encoders(paths, "v1")
    assert commit_queued(settings, paths, enc, never).committed == 8
    return settings, paths, clips


def test_reembed_of_a_clip_unreadable_now_keeps_it_and_retries_later(v1):
    settings, paths, clips = v1
    victim = clips[3]
    cid = victim.manifest.id
    v2 = day_encoders(paths, "v2", seed=2)
    saved = break_stills(paths, victim) | garble(paths.data / victim.manifest.audio)
    result = commit_queued(settings, paths, v2, never)
    assert (result.reembedded, result.unreadable, result.missing) == (7, 1, 0)
    with Store(paths) as store:
        rec = store.clip(cid)
    assert rec.version == "v1" and rec.media_gone is None      # not "media gone"
    assert row(paths, cid) == ("committed", 1)

    # Retention does not treat it as gone: nothing of it is deleted.
    assert apply_retention(settings, paths, now=SOON).purged == 0
    assert all(p.exists() for p in saved)

    # Retried only once its retry time has come, and then it moves to v2.
    assert commit_queued(settings, paths, v2, never).unreadable == 0
    assert row(paths, cid) == ("committed", 1)
    restore(saved)
    later(paths)
    result = commit_queued(settings, paths, v2, never)
    assert (result.reembedded, result.unreadable, result.stale) == (1, 0, 0)
    with Store(paths) as store:
        assert store.clip(cid).version == "v2"
    assert row(paths, cid) == ("committed", 0)
    check_consistent(paths)


class Said:
    """Stands in for a module's logger: what it warned about."""

    def __init__(self):
        self.events: list[str] = []

    def warning(self, event, **kw):
        self.events.append(event)

    info = warning


def test_queued_clip_unreadable_stays_queued_and_is_set_aside_after_the_last_try(v1, monkeypatch):
    settings, paths, _ = v1
    said = Said()
    monkeypatch.setattr(commit_mod, "_log", said)
    new = make_memory_day(paths, settings, "2025-01-16", n_clips=4, seed=32)
    bad, partly = new[0], new[1]
    enc = day_encoders(paths, "v1")
    saved = {}
    for rel in bad.manifest.frames:
        saved |= garble(paths.data / rel)                       # JPEGs that do not decode
    saved |= garble(paths.data / bad.manifest.audio)
    saved_part = garble(paths.data / partly.manifest.frames[0])  # one still of three
    for attempt in (1, 2):
        result = commit_queued(settings, paths, enc, never)
        assert result.unreadable == 2 and result.set_aside == 0
        assert row(paths, bad.manifest.id) == ("queued", attempt)
        assert Queue(paths.memory_db).counts()["retrying"] == 2
        later(paths)
    assert result.remaining == 2                      # still queued, never purged
    # The last try: the clip with nothing readable is set aside (files kept, reported);
    # the one with two good stills and its sound is stored with what can be read.
    result = commit_queued(settings, paths, enc, never)
    assert (result.committed, result.set_aside, result.remaining) == (1, 1, 0)
    assert row(paths, bad.manifest.id)[0] == "unreadable"
    assert Queue(paths.memory_db).counts()["unreadable"] == 1
    assert all(p.read_bytes() != saved[p] and p.exists() for p in saved)
    assert "clips_unreadable" in said.events and "clips_set_aside" in said.events
    with Store(paths) as store:
        assert store.clip(partly.manifest.id) is not None
        assert store.clip(bad.manifest.id) is None
    assert saved_part
    check_consistent(paths)


def test_a_short_io_error_is_retried_not_purged(v1, monkeypatch):
    settings, paths, _ = v1
    (clip,) = make_memory_day(paths, settings, "2025-01-16", n_clips=1, seed=33)
    wav = paths.data / clip.manifest.audio
    real, failed = reading.read_file, []

    def flaky(path):
        if path == wav and not failed:
            failed.append(path)
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real(path)

    monkeypatch.setattr(reading, "read_file", flaky)
    enc = day_encoders(paths, "v1")
    result = commit_queued(settings, paths, enc, never)
    assert (result.committed, result.unreadable, result.remaining) == (0, 1, 1)
    assert row(paths, clip.manifest.id) == ("queued", 1)
    later(paths)
    result = commit_queued(settings, paths, enc, never)
    assert (result.committed, result.remaining) == (1, 0)
    assert row(paths, clip.manifest.id) == ("committed", 0)


@pytest.mark.timeout(120)
def test_a_fifo_in_place_of_a_wav_does_not_hang_the_commit(v1):
    settings, paths, _ = v1
    (clip,) = make_memory_day(paths, settings, "2025-01-16", n_clips=1, seed=34)
    wav = paths.data / clip.manifest.audio
    enc = day_encoders(paths, "v1")
    wav.unlink()
    os.mkfifo(wav)
    out = []
    t = threading.Thread(target=lambda: out.append(
        commit_queued(settings, paths, enc, never)), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the commit blocked on a FIFO"
    assert out[0].unreadable == 1 and row(paths, clip.manifest.id) == ("queued", 1)


def test_files_confirmed_gone_are_reported_missing(v1):
    settings, paths, clips = v1
    gone = clips[0]
    (queued,) = make_memory_day(paths, settings, "2025-01-16", n_clips=1, seed=35)
    v2 = day_encoders(paths, "v2", seed=2)
    for rel in [gone.manifest.video, gone.manifest.audio, *gone.manifest.frames]:
        (paths.data / rel).unlink()
    for rel in [queued.manifest.video, queued.manifest.audio, *queued.manifest.frames]:
        (paths.data / rel).unlink()
    result = commit_queued(settings, paths, v2, never)
    assert (result.missing, result.unreadable, result.reembedded) == (2, 0, 7)
    assert row(paths, queued.manifest.id)[0] == "purged"
    with Store(paths) as store:
        assert store.clip(gone.manifest.id).media_gone is not None


def test_an_empty_or_cut_still_is_unreadable_not_a_crash(v1):
    settings, paths, clips = v1
    clip = clips[0]
    first, second = (paths.data / rel for rel in clip.manifest.frames[:2])
    first.write_bytes(b"")                                   # a still cut to nothing
    second.write_bytes(second.read_bytes()[:40])             # a still cut short
    with Store(paths) as store:
        got = reading.read_media(paths, store.clip(clip.manifest.id))
    assert got.verdict == UNREADABLE and got.loaded is not None
    assert len(got.loaded.stills) == len(clip.manifest.frames) - 2


def test_read_choices_are_pure():
    assert verdict(read=3, present=1, missing=0, failed=0, root_listable=True) == OK
    assert verdict(read=2, present=1, missing=1, failed=0, root_listable=True) == OK
    assert verdict(read=2, present=1, missing=0, failed=1, root_listable=True) == UNREADABLE
    assert verdict(read=0, present=0, missing=5, failed=0, root_listable=True) == MISSING
    # Every file "missing" while the data folder cannot be listed: a drive gone, not a delete.
    assert verdict(read=0, present=0, missing=5, failed=0, root_listable=False) == UNREADABLE
    # The video is there but nothing embeddable could be read: not gone either.
    assert verdict(read=0, present=1, missing=4, failed=0, root_listable=True) == UNREADABLE
    assert after_failure(0, 3, partly_read=False) == RETRY
    assert after_failure(2, 3, partly_read=True) == PARTIAL
    assert after_failure(2, 3, partly_read=False) == GIVE_UP
    assert retry_delay(1) == 3600 and retry_delay(2) == 7200 and retry_delay(30) == 86400


OLD_QUEUE = """
CREATE TABLE queue (clip_id TEXT PRIMARY KEY, date TEXT NOT NULL, start TEXT NOT NULL,
    manifest TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued', owner TEXT,
    lease_until REAL, enqueued_at REAL NOT NULL, updated_at REAL NOT NULL);
INSERT INTO queue VALUES ('20250115T090000Z', '2025-01-15', '2025-01-15T09:00:00+00:00',
    'clips/2025-01-15/20250115T090000Z.json', 'queued', NULL, NULL, 0, 0);
"""


def test_a_database_from_before_the_attempts_column_is_migrated(tmp_path):
    db = tmp_path / "episodic.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_QUEUE)
    conn.close()
    q = Queue(db)
    (item,) = q.claim("me", 10, 60)
    assert item.clip_id == "20250115T090000Z" and item.attempts == 0
    assert q.defer([(item.clip_id, 0.0)]) == 1 and q.attempts([item.clip_id]) == {item.clip_id: 1}
    q.close()
    Queue(db).close()   # opening again adds nothing twice


# -- maintenance under a running query ---------------------------------------------------

MAINTAIN = """
import sys
from pathlib import Path
from wm.base.paths import Paths
from wm.memory.maintenance import maintain
from wm.memory.store import Store
from memory_support import settings_for_tests
settings = settings_for_tests(memory={"ann_min_rows": 10, "ann_nprobe": 1})
with Store(Paths(Path(sys.argv[1]))) as store, store.writer():
    maintain(settings, store, lambda: False)
"""


def maintain_in_another_process(paths: Paths) -> None:
    env = dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{REPO}")
    p = subprocess.run([sys.executable, "-c", MAINTAIN, str(paths.root)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr


@pytest.fixture
def small_shards(tmp_path, monkeypatch):
    """A day committed in batches of 4 with no maintenance: many small shards to merge."""
    settings = settings_for_tests(memory={"ann_min_rows": 10, "ann_nprobe": 1})
    paths = Paths(tmp_path / "home")
    clips = make_memory_day(paths, settings, DATE, n_clips=24, seed=36)
    enc = day_encoders(paths, "v1")
    with monkeypatch.context() as m:
        m.setattr(commit_mod, "COMMIT_BATCH", 4)
        m.setattr(commit_mod, "maintain", lambda *a: None)
        commit_queued(settings, paths, enc, never)
    return settings, paths, clips, (lambda s, p, version: enc), tmp_path


def test_query_survives_compaction_of_the_shards_it_listed(small_shards, monkeypatch):
    settings, paths, clips, load, tmp = small_shards
    with Store(paths) as s:
        listed = {f for sh in s.all_shards() for f in s.shard_path(sh)}
    assert len(listed) > 10
    real_shards, ran = Store.shards, []

    def shards_then_maintenance(self, *a, **kw):
        out = real_shards(self, *a, **kw)
        if not ran:   # between listing and opening, as a nightly commit could
            ran.append(1)
            maintain_in_another_process(paths)
        return out

    monkeypatch.setattr(Store, "shards", shards_then_maintenance)
    img = tmp / "q.jpg"
    cv2.imwrite(str(img), scene_still(clips[0].scene, np.random.default_rng(1), (240, 320)))
    ans = answer(settings, paths, QueryRequest(image=img, topk=3), load)
    assert ran and len(ans.groups[0].hits) == 3
    with Store(paths) as s:
        now = {f for sh in s.all_shards() for f in s.shard_path(sh)}
        assert not (listed & now)                  # they were merged away ...
        assert s.conn.execute("SELECT COUNT(*) FROM memory_retired").fetchone()[0] > 0
    # ... and are deleted at the next maintenance, when no query is reading.
    monkeypatch.setattr(Store, "shards", real_shards)
    maintain_in_another_process(paths)
    assert not any(f.exists() for f in listed)
    assert check_consistent(paths)["orphans"] == 0


def test_an_index_rebuild_keeps_the_file_a_query_is_about_to_open(small_shards):
    settings, paths, *_ = small_shards
    maintain_in_another_process(paths)            # the first index, over the first day
    make_memory_day(paths, settings, "2025-01-16", n_clips=24, seed=37)
    with Store(paths) as store, store.reading():
        rec = store.index("v1", "shared")
        assert rec is not None
        # A nightly commit in another process appends the new day: a new index file.
        p = subprocess.run([sys.executable, "-c", COMMIT, str(paths.root)],
                           env=dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{REPO}"),
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert store.index("v1", "shared").file != rec.file
        index = ann.open_index(store, rec)         # still there to open
        assert index.ntotal == rec.rows
    maintain_in_another_process(paths)
    assert not (paths.embeddings / rec.file).exists()


COMMIT = """
import sys
from pathlib import Path
from wm.base.paths import Paths
from wm.memory.commit import commit_queued
from memory_support import day_encoders, settings_for_tests
paths = Paths(Path(sys.argv[1]))
settings = settings_for_tests(memory={"ann_min_rows": 10, "ann_nprobe": 1})
commit_queued(settings, paths, day_encoders(paths, "v1"), lambda: False)
"""


# -- pictures that would cost gigabytes ----------------------------------------------------

def png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zeros_png(path: Path, width: int, height: int) -> None:
    """A real, valid PNG of black pixels, compressed as it is streamed (no big array)."""
    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)
    parts = [z.compress(row) for _ in range(height)] + [z.flush()]
    path.write_bytes(png(width, height, b"".join(parts)))


def run_cli(home: Path, *argv: str) -> tuple[int, str, int]:
    """(exit code, stderr, peak memory in MB) of `wm ...` in its own process. The peak is
    VmHWM, which starts afresh at exec (ru_maxrss would include pytest's own, forked)."""
    code = ("import re, sys\nfrom wm import cli\nc = cli.main(sys.argv[1:])\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "print('maxrss', hwm, file=sys.stderr)\nsys.exit(c)")
    env = dict(os.environ, WM_HOME=str(home), PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                       text=True, timeout=300)
    lines = p.stderr.strip().splitlines()
    rss = int(lines[-1].split()[1]) // 1024
    return p.returncode, "\n".join(lines[:-1]), rss


def test_a_picture_bomb_is_refused_in_one_line(v1, tmp_path):
    settings, paths, _ = v1
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png(50000, 50000, zlib.compress(b"")))
    assert len(bomb.read_bytes()) < 100
    code, err, _ = run_cli(paths.root, "query", "--image", str(bomb))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("wm: ") and "50000x50000" in err and "too large" in err

    broken = tmp_path / "broken.png"
    broken.write_bytes(png(64, 64, b"not zlib at all"))
    code, err, _ = run_cli(paths.root, "query", "--image", str(broken))
    assert code == 2 and len(err.splitlines()) == 1 and "not a readable image" in err, err


def test_a_big_picture_costs_nothing_before_the_empty_memory_check(tmp_path):
    big = tmp_path / "big.png"
    zeros_png(big, 12000, 12000)
    code, err, rss = run_cli(tmp_path / "empty", "query", "--image", str(big))
    assert code == 2 and "12000x12000" in err and len(err.splitlines()) == 1, err
    small = tmp_path / "small.png"
    zeros_png(small, 64, 48)
    *_, baseline = run_cli(tmp_path / "empty", "query", "--image", str(small))
    assert rss < baseline + 50, f"{rss} MB against {baseline} MB for a small picture"
    ok = tmp_path / "ok.png"
    zeros_png(ok, 7000, 7000)     # 49 megapixels: allowed, ~150 MB decoded, nothing to search
    code, err, rss = run_cli(tmp_path / "empty", "query", "--image", str(ok))
    assert code == 3 and "memory is empty" in err, err
    assert rss < baseline + 50, f"{rss} MB: decoded before the memory was checked"


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
def test_header_sizes_match_the_pictures(tmp_path, ext):
    img = np.zeros((37, 53, 3), np.uint8)
    path = tmp_path / f"p{ext}"
    assert cv2.imwrite(str(path), img)
    with open(path, "rb") as f:
        assert claimed_size(f) == (53, 37)


def test_a_jpeg_header_after_a_big_exif_block_is_found(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.zeros((20, 30, 3), np.uint8))
    data = buf.tobytes()
    app1 = b"\xff\xe1" + (65000).to_bytes(2, "big") + bytes(64998)
    path = tmp_path / "exif.jpg"
    path.write_bytes(data[:2] + app1 + data[2:])
    with open(path, "rb") as f:
        assert claimed_size(f) == (30, 20)
    (tmp_path / "cut.jpg").write_bytes(path.read_bytes()[:40])   # cut inside the EXIF block
    with open(tmp_path / "cut.jpg", "rb") as f:
        assert claimed_size(f) is None
