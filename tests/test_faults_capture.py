"""Capture under faults, with real processes and real file systems: a writer killed at each
step of a clip, stale and in-flight `.partial` files, two ingests of one file at once, a
recording that is still being written, a FIFO, and a disk that fills up (a small tmpfs,
which needs root to mount: those tests skip without it, CI runs as root)."""
from __future__ import annotations

import os
import pty
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import mediagen as mg
import pytest

from wm.base import config, log
from wm.base.atomic import partial_name, partial_owner, partials_of, write_atomically
from wm.base.manifest import FINAL, PADDED, Manifest
from wm.base.paths import Paths
from wm.capture import orphans
from wm.capture.ingest.probe import BadMedia, check_file
from wm.capture.ingest.run import ingest_files
from wm.capture.pause import is_paused
from wm.capture.recorder import Recorder
from wm.capture.sink import DELAYS_KEPT, ClipSink

REPO = Path(__file__).resolve().parents[1]
DATE = "2025-01-15"
OLD = 3600.0   # seconds: far past every grace period


def manifests(paths: Paths) -> list[Manifest]:
    found = [Manifest.read(p) for p in paths.clips_root.rglob("*.json")]
    return sorted(found, key=lambda m: (m.source.offset, m.id))


def partials(root: Path) -> list[Path]:
    return sorted(root.rglob("*.partial"))


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def wm(*argv, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wm", *map(str, argv)], cwd=REPO,
                          env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                          timeout=timeout)


def err_lines(p: subprocess.CompletedProcess) -> list[str]:
    return [line for line in p.stderr.splitlines() if line.strip()]


# -- a writer killed at each step of a clip --------------------------------------------------

# The child writes a whole clip, then a second one and SIGKILLs itself just before the
# rename of the file named by STEP: what a crash or power loss at that moment leaves.
CHILD = r"""
import os, signal, sys
from datetime import datetime, timezone
import numpy as np
from wm.base import media
from wm.base.manifest import Source
from wm.base.paths import Paths
from wm.capture import writer

paths, step = Paths(__import__("pathlib").Path(sys.argv[1])), sys.argv[2]
def clip(cid, second):
    frames = [np.full((120, 160, 3), 40 + i, np.uint8) for i in range(30)]
    return writer.ClipMedia(cid=cid, date="2025-01-15",
        start=datetime(2025, 1, 15, 14, 30, second, tzinfo=timezone.utc), duration=3.0,
        audio=np.zeros(48000, np.int16), video=frames, stills=frames[::10],
        source=Source(kind="file", name="/x.mp4"))
kw = dict(clip_seconds=3, sample_rate=16000, video_fps=10, jpeg_quality=85)
writer.write_clip(paths, clip("20250115T143009Z", 9), **kw)

def dying(real):
    def commit(*args):
        if any(str(a).endswith(step) for a in args if isinstance(a, os.PathLike)):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args)
    return commit
writer.commit_file = dying(writer.commit_file)
media.commit_file = dying(media.commit_file)
writer.atomic_write_bytes = dying(writer.atomic_write_bytes)
writer.write_clip(paths, clip("20250115T143012Z", 12), **kw)
"""


@pytest.mark.parametrize("step, left", [
    (".mp4", []),                                   # died writing the video: only .partial
    ("_0.jpg", ["clips/2025-01-15/20250115T143012Z.mp4"]),
    (".wav", ["clips/2025-01-15/20250115T143012Z.mp4"]
     + [f"frames/2025-01-15/20250115T143012Z_{k}.jpg" for k in range(3)]),
    (".json", ["audio/2025-01-15/20250115T143012Z.wav", "clips/2025-01-15/20250115T143012Z.mp4"]
     + [f"frames/2025-01-15/20250115T143012Z_{k}.jpg" for k in range(3)]),
])
def test_a_kill_at_each_write_step_leaves_nothing_once_swept(home, step, left):
    p = subprocess.run([sys.executable, "-c", CHILD, str(home.root), step], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    doomed = sorted(str(f.relative_to(home.data)) for f in home.data.rglob("*143012Z*")
                    if not f.name.endswith(".partial"))
    assert doomed == sorted(left)
    assert not home.manifest(DATE, "20250115T143012Z").exists()
    # (the manifest is the one file whose write had not begun)
    assert bool(partials(home.root)) == (step != ".json"), "the write in flight left its .partial"

    # a clip being written right now is not an orphan: it gets its manifest in a moment
    assert orphans.find_orphan_media(home) == []
    for f in home.data.rglob("*143012Z*"):
        age(f, OLD)
    removed = orphans.remove_partials(home)
    gone = orphans.remove_orphan_media(home)
    assert sorted(str(o.path.relative_to(home.data)) for o in gone) == sorted(left)
    assert {o.clip_id for o in gone} <= {"20250115T143012Z"}
    assert bool(removed) == (step != ".json")
    assert list(home.data.rglob("*143012Z*")) == []
    # the whole clip before it is untouched, and nothing is left to find
    kept = Manifest.read(home.manifest(DATE, "20250115T143009Z"))
    assert all((home.data / f).exists() for f in [kept.video, kept.audio, *kept.frames])
    assert orphans.find_orphan_media(home, grace=0) == []
    assert orphans.find_stale_partials(home) == []


def test_wm_record_start_removes_old_orphans_and_keeps_young_ones(home, tmp_path):
    day = home.clips_dir("2025-01-14")
    day.mkdir(parents=True)
    old = day / "20250114T101010Z.mp4"
    old.write_bytes(b"an mp4 whose clip never got its manifest")
    age(old, OLD)
    young = day / "20250114T101013Z.mp4"
    young.write_bytes(b"being written")
    stranger = day / "holiday.mp4"          # not clip media: never touched
    stranger.write_bytes(b"the user's own file")
    age(stranger, OLD)
    src = mg.write(tmp_path / "day.mp4", mg.Spec(seconds=3.0))
    rec = Recorder(config.load(), home, source_file=src, speed=8)
    rec.start()
    assert rec.wait(30)
    rec.stop()
    assert not old.exists() and young.exists() and stranger.exists()
    assert len(manifests(home)) == 1


def test_media_clip_id_names_only_clip_media():
    assert orphans.media_clip_id("20250115T143012Z.mp4") == "20250115T143012Z"
    assert orphans.media_clip_id("20250115T143012Z-2_1.jpg") == "20250115T143012Z-2"
    assert orphans.media_clip_id("20250115T143012Z.wav") == "20250115T143012Z"
    for name in ["20250115T143012Z.json", "holiday.mp4", "20250115T143012Z.mp4.1-ab.partial",
                 "20250115T143012Z_x.jpg", "notes.txt"]:
        assert orphans.media_clip_id(name) is None, name


# -- .partial files: unique per writer, swept only when stale ---------------------------------

def test_partial_names_are_unique_per_writer_and_name_their_pid(tmp_path):
    final = tmp_path / "20250115T143012Z.wav"
    a, b = partial_name(final), partial_name(final)
    assert a != b and a.name.endswith(".partial") and a.name.startswith(final.name + ".")
    assert partial_owner(a) == os.getpid() and partial_owner(tmp_path / "x.wav.partial") is None
    a.write_bytes(b"1")
    (tmp_path / "20250115T143012Z.wav.partial").write_bytes(b"an older wm's")
    (tmp_path / "20250115T143012Z.wav.1-ab.partial").write_bytes(b"another writer's")
    assert partials_of(final, os.getpid()) == [a]
    assert len(partials_of(final)) == 3


def test_a_failed_atomic_write_leaves_no_partial(tmp_path):
    target = tmp_path / "state" / "status.json"

    def failing(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomically(target, failing)
    assert list(target.parent.iterdir()) == []


def test_stale_partials_in_state_and_checkpoints_go_and_live_writers_keep_theirs(home):
    writer = subprocess.Popen(["sleep", "60"])   # a live `wm sleep` writing a checkpoint
    try:
        ckpt = home.checkpoints / "daily" / DATE
        ckpt.mkdir(parents=True)
        home.state.mkdir(parents=True)
        gone_pid = _dead_pid()
        stale = [home.state / f"status.json.{gone_pid}-ab12.partial",
                 ckpt / f"jepa.pt.{gone_pid}-cd34.partial",
                 home.state / "paused.json.partial"]            # an older wm's name
        in_flight = ckpt / f"cpc.pt.{writer.pid}-ef56.partial"
        for p in [*stale, in_flight]:
            p.write_bytes(b"half")
            age(p, 60)
        removed = orphans.remove_partials(home)
        assert sorted(removed) == sorted(stale)
        assert in_flight.exists()
        # unless it is older than any write could take (its pid was reused)
        age(in_flight, orphans.OWNED_PARTIAL_MAX_SECONDS + 1)
        assert orphans.remove_partials(home) == [in_flight]
    finally:
        writer.kill()
        writer.wait()


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("owner, age_s, min_age, alive, stale", [
    (None, 0.0, 0.0, False, True),      # an unnamed one, no age asked: stale
    (None, 1.0, 2.0, False, False),     # too young
    (111, 0.0, 0.0, True, False),       # another live writer's: in flight
    (111, 4000.0, 0.0, True, True),     # ... unless implausibly old
    (111, 0.0, 0.0, False, True),       # a dead writer's
    (999, 0.5, 2.0, True, False),       # this process's own, too young
    (999, 3.0, 2.0, True, True),
])
def test_partial_is_stale(owner, age_s, min_age, alive, stale):
    assert orphans.partial_is_stale(owner, age_s, min_age, me=999, alive=alive) is stale


# -- two ingests of one file; a file still being written -------------------------------------

def test_two_ingests_of_one_file_at_once_write_each_clip_once(home, tmp_path):
    src = mg.write(tmp_path / "long.mp4", mg.Spec(seconds=30.0, size=(320, 240)))
    procs = [subprocess.Popen([sys.executable, "-m", "wm", "ingest", str(src), "--date", DATE],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ms = manifests(home)
    assert [m.source.offset for m in ms] == [3.0 * k for k in range(10)]
    assert not any("-" in m.id for m in ms)
    assert partials(home.root) == []
    for m in ms:
        assert all((home.data / f).exists() for f in [m.video, m.audio, *m.frames])


def _grow(target: Path, rest: bytes, pieces: int, pause: float) -> threading.Thread:
    """Append `rest` to `target` in `pieces`, one every `pause` seconds, like a recorder;
    returns once the first piece is written."""
    begun = threading.Event()

    def run():
        step = len(rest) // pieces + 1
        for i in range(0, len(rest), step):
            with open(target, "ab") as f:
                f.write(rest[i:i + step])
            begun.set()
            time.sleep(pause)

    t = threading.Thread(target=run)
    t.start()
    begun.wait()
    return t


def test_a_recording_that_grows_while_ingested_is_refused_then_ingested_once(home, tmp_path):
    full = mg.write(tmp_path / "rec.mkv", mg.Spec(seconds=15.0, size=(320, 240)), live=True)
    data = full.read_bytes()
    raw = home.raw_dir(DATE)
    raw.mkdir(parents=True)
    target = raw / "rec.mkv"
    target.write_bytes(data[: len(data) * 4 // 10])
    # an append every 10 ms for 2 s: reading even the start of it takes longer than that
    grower = _grow(target, data[len(data) * 4 // 10:], pieces=200, pause=0.01)
    try:
        first = ingest_files(config.load(), home, [target], DATE, show_progress=False)
    finally:
        grower.join()
    assert len(first.errors) == 1 and "still being written" in first.errors[0]
    # what it kept are whole clips: no short last clip that the finished file contradicts
    assert not any(PADDED in m.flags or FINAL in m.flags for m in manifests(home))

    second = ingest_files(config.load(), home, [target], DATE, show_progress=False)
    assert second.errors == []
    ms = manifests(home)
    assert [m.source.offset for m in ms] == [0.0, 3.0, 6.0, 9.0, 12.0]
    assert not any("-" in m.id for m in ms)
    assert [m.duration for m in ms] == [3.0] * 5 and FINAL in ms[-1].flags


def test_a_recording_that_grew_after_its_ingest_adds_only_its_new_clips(home, tmp_path):
    full = mg.write(tmp_path / "rec.mkv", mg.Spec(seconds=12.0, size=(320, 240)), live=True)
    data = full.read_bytes()
    target = tmp_path / "raw-rec.mkv"
    target.write_bytes(data[: len(data) * 4 // 10])   # the recorder paused its writes
    assert ingest_files(config.load(), home, [target], DATE, show_progress=False).errors == []
    before = {m.id: m for m in manifests(home)}
    assert len(before) == 2
    with open(target, "ab") as f:
        f.write(data[len(data) * 4 // 10:])
    again = ingest_files(config.load(), home, [target], DATE, show_progress=False)
    assert again.errors == []
    ms = manifests(home)
    assert [m.source.offset for m in ms] == [0.0, 3.0, 6.0, 9.0]
    assert not any("-" in m.id for m in ms)
    # the clips made before are kept as they were (the short one included)
    assert {m.id: m for m in ms[:2]} == before


# -- odd files ---------------------------------------------------------------------------------

def test_a_fifo_on_a_terminal_is_refused_at_once(home, tmp_path):
    fifo = tmp_path / "camera.mp4"
    os.mkfifo(fifo)
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "wm", "ingest", str(fifo), "--date", DATE],
                         cwd=REPO, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    try:
        code = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail("wm ingest of a FIFO hangs on a terminal")
    finally:
        out = _drain(leader)
    lines = [line for line in out.splitlines() if "camera.mp4" in line]
    assert code == 1 and len(lines) == 1, out
    assert "not a regular file (a FIFO)" in lines[0] and "Traceback" not in out


def _drain(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:   # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def test_devices_and_folders_are_refused_by_name(tmp_path):
    with pytest.raises(BadMedia, match=r"not a regular file \(a character device\)"):
        check_file(Path("/dev/null"))
    with pytest.raises(BadMedia, match="is a folder"):
        check_file(tmp_path)


# -- a disk that fills up --------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs mounted for this test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    if shutil.which("mount") is None:
        pytest.skip("needs mount(8)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk up to `leave` bytes free (0: completely)."""
    filler = disk / "filler"
    with open(filler, "ab") as f:
        while shutil.disk_usage(disk).free > leave:
            want = shutil.disk_usage(disk).free - leave
            try:
                f.write(b"\0" * min(want, 1 << 20))
                f.flush()
            except OSError:
                break
    return filler


def test_pause_on_a_full_disk_still_pauses_and_says_so(home, small_disk):
    root = small_disk / "wm"
    env = {"WM_HOME": str(root)}
    assert wm("pause", "--for", "1m", env=env).returncode == 0   # an earlier pause, expired
    paths = Paths(root)
    assert not is_paused(paths, now=time.time() + 120)
    fill(small_disk)
    p = wm("pause", "--for", "30m", env=env)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    (line,) = p.stdout.splitlines()
    assert "paused until `wm resume`" in line and "No space left on device" in line
    # failing closed: paused, with no end it could not save; nothing half-written
    assert is_paused(paths) and is_paused(paths, now=time.time() + 10 * 86400)
    assert partials(root) == []
    r = wm("resume", env=env)
    assert r.returncode == 0 and not is_paused(paths)


def test_ingest_refuses_to_start_under_the_disk_floor(home, tmp_path):
    src = mg.write(tmp_path / "a.mp4", mg.Spec(seconds=3.0))
    cfg = tmp_path / "config.yaml"
    cfg.write_text("retention:\n  min_free_gb: 1000000\n")
    p = wm("ingest", src, "--date", DATE, "--config", cfg)
    assert p.returncode == 1
    (line,) = [x for x in err_lines(p) if x.startswith("wm:")]
    assert "min_free_gb" in line and "B free" in line and "Traceback" not in p.stderr
    assert not home.clips_root.exists() or manifests(home) == []


def test_ingest_stops_cleanly_when_the_disk_falls_under_its_floor(home, small_disk, tmp_path):
    src = mg.write(tmp_path / "long.mp4", mg.Spec(seconds=21.0, size=(320, 240)))
    root = small_disk / "wm"
    env = {"WM_HOME": str(root)}
    floor = 4 << 20
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"retention:\n  min_free_gb: {floor / 1e9}\n")
    assert wm("resume", env=env).returncode == 0   # the root, its log
    filler = fill(small_disk, leave=floor + (200 << 10))
    p = wm("ingest", src, "--date", DATE, "--config", cfg, env=env)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    (line,) = [x for x in err_lines(p) if "long.mp4" in x]
    assert "min_free_gb" in line
    paths = Paths(root)
    ms = manifests(paths)
    assert 0 < len(ms) < 7, p.stdout
    assert f"{len(ms)} clips" in p.stdout
    assert partials(root) == []
    ids = {m.id for m in ms}
    for f in paths.data.rglob("*"):      # every media file belongs to a whole clip
        if f.is_file():
            assert orphans.media_clip_id(f.name) in ids | {None}, f
    # room again: the rest goes in, nothing twice
    filler.unlink()
    q = wm("ingest", src, "--date", DATE, "--config", cfg, env=env)
    assert q.returncode == 0, q.stderr
    ms = manifests(paths)
    assert [m.source.offset for m in ms] == [3.0 * k for k in range(7)]
    assert not any("-" in m.id for m in ms)


# -- bounded growth --------------------------------------------------------------------------

def test_the_recorders_delays_stay_bounded(home, monkeypatch):
    """A recorder running for months keeps the last DELAYS_KEPT clip delays, not one per
    clip ever written (the encoder is stubbed: 1,050 real encodes would take minutes)."""
    from wm.capture import sink as sink_mod

    monkeypatch.setattr(sink_mod, "write_clip", lambda paths, media, **kw: None)

    class Sources:
        def manifest_source(self, cut):
            return None

        def playhead(self):
            return 10.0

    sink = ClipSink(config.load(), home, Sources(), 1.0, None, log.get("test"))
    for k in range(DELAYS_KEPT + 50):
        sink.write(SimpleNamespace(start=1.7e9 + 3 * k, duration=3.0, audio=None, video=[],
                                   stills=[], gaps=[], flags=[], source_time=3.0 * k))
    assert sink.clips_written == DELAYS_KEPT + 50
    assert len(sink.delays) == DELAYS_KEPT
