"""The recorder fed by a media file played as if live (what the demo and the daemon tests
use): exact clips, faster than real time, pause across restarts, the disk floor."""
from __future__ import annotations

import json
import logging
import os
import time

import mediagen
import numpy as np
import pytest

from wm.base import config, log
from wm.base.errors import WmError
from wm.base.manifest import AUDIO_ONLY, FINAL, PADDED, VIDEO_ONLY
from wm.base.media import read_wav
from wm.base.paths import Paths
from wm.capture.pause import pause, resume
from wm.capture.recorder import Recorder


@pytest.fixture
def paths(home) -> Paths:
    """conftest's isolated data root (and no user config)."""
    return home


def load(**overrides):
    return config.load(None, overrides=overrides or None)


def record(settings, paths, source, speed, timeout=30.0):
    got = []
    rec = Recorder(settings, paths, source_file=source, speed=speed,
                   on_clip=lambda m, p: got.append((m, p)))
    began = time.monotonic()
    rec.start()
    assert rec.wait(timeout), "the file did not finish playing"
    rec.stop()
    return rec, [m for m, _ in got], time.monotonic() - began


def loud_at(samples: np.ndarray) -> float | None:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 20000)
    return loud[0] / 16000 if len(loud) else None


def test_file_at_speed_gives_exact_clips_fast(paths, tmp_path):
    src = mediagen.write(tmp_path / "day.mp4", mediagen.Spec(seconds=10.0, flash=4.0, click=7.5))
    rec, ms, took = record(load(), paths, src, speed=8)
    assert took < 10.0 / 8 + 3.0, f"10 s at 8x took {took:.1f} s"
    assert [round(m.source.offset, 2) for m in ms] == [0.0, 3.0, 6.0, 9.0]
    assert all(m.source.kind == "file" and m.source.name == str(src) for m in ms)
    starts = [m.start_time.timestamp() for m in ms]
    assert np.allclose(np.diff(starts), 3.0, atol=1e-3)   # dated as if recorded live
    for m in ms:
        samples, rate = read_wav(paths.data / m.audio)
        assert (len(samples), rate) == (48000, 16000)
        assert m.gaps == []
    assert [m.flags for m in ms[:3]] == [[], [], []]
    assert FINAL in ms[3].flags and PADDED in ms[3].flags and ms[3].duration == pytest.approx(1.0, abs=0.05)

    # the click at 7.5 s is 1.5 s into clip 2, to the sample's precision of the file
    clicks = [loud_at(read_wav(paths.data / m.audio)[0]) for m in ms]
    assert clicks[:2] == [None, None] and clicks[3] is None
    assert clicks[2] == pytest.approx(1.5, abs=0.01)
    # the flash at 4.0 s is the still k=1 of clip 1 and nothing else
    import cv2

    bright = [[cv2.imread(str(paths.data / f)).mean() > 200 for f in m.frames] for m in ms]
    assert bright == [[False] * 3, [False, True, False], [False] * 3, [False]]
    assert rec.health().clips_written == 4


def test_video_only_and_audio_only_files(paths, tmp_path):
    silent = mediagen.write(tmp_path / "silent.mp4", mediagen.Spec(seconds=6.0, audio_rate=None))
    _, ms, _ = record(load(), paths, silent, speed=8)
    assert len(ms) == 2 and all(VIDEO_ONLY in m.flags and m.audio is None for m in ms)
    assert all(len(m.frames) == 3 and m.gaps == [] for m in ms)

    sound = tmp_path / "sound.wav"
    mediagen.write(tmp_path / "tmp.mp4", mediagen.Spec(seconds=6.0))
    import av

    with av.open(str(tmp_path / "tmp.mp4")) as src, av.open(str(sound), "w") as out:
        a = out.add_stream("pcm_s16le", rate=44100, layout="stereo")
        for frame in src.decode(audio=0):
            frame.pts = None
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    _, ms, _ = record(load(), Paths(tmp_path / "home2"), sound, speed=8)
    assert len(ms) == 2 and all(AUDIO_ONLY in m.flags and not m.frames for m in ms)


def test_pause_survives_a_restart_and_resume_records_again(paths, tmp_path):
    src = mediagen.write(tmp_path / "day.mp4", mediagen.Spec(seconds=12.0))
    assert pause(paths, None) == 0          # set before this recorder existed
    got = []
    rec = Recorder(load(), paths, source_file=src, speed=4, on_clip=lambda m, p: got.append(m))
    rec.start()
    try:
        time.sleep(1.0)                      # 4 s of the file go by
        h = rec.health()
        assert h.paused and (h.camera, h.microphone) == ("paused", "paused")
        assert got == [] and not (paths.data / "clips").exists()
        resume(paths)
        assert rec.wait(10)
    finally:
        rec.stop()
    assert got, "recording resumed"
    assert all(m.source.offset >= 3.9 for m in got), "nothing from the paused part"
    assert all(len(read_wav(paths.data / m.audio)[0]) == 48000 for m in got)


def test_low_disk_writes_nothing_and_says_so_once(paths, tmp_path):
    src = mediagen.write(tmp_path / "day.mp4", mediagen.Spec(seconds=9.0))
    log.setup(paths.log_file, "info", console=False)
    settings = load(retention={"min_free_gb": 1e9})   # more than any disk has free
    try:
        rec, ms, _ = record(settings, paths, src, speed=8)
    finally:
        for h in list(logging.getLogger().handlers):   # the log file lives in tmp_path
            logging.getLogger().removeHandler(h)
            h.close()
    assert ms == [] and not (paths.data / "clips").exists()
    assert rec.health().disk_low and rec.health().clips_written == 0
    events = [json.loads(line)["event"] for line in paths.log_file.read_text().splitlines()]
    assert events.count("disk_low_recording_suspended") == 1


def test_bad_sources_are_one_line_errors(paths, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n" * 100)
    with pytest.raises(WmError, match="notes.mp4: cannot be read as media"):
        Recorder(load(), paths, source_file=notes).start()
    with pytest.raises(WmError, match="missing.mp4: no such file"):
        Recorder(load(), paths, source_file=tmp_path / "missing.mp4").start()
    with pytest.raises(WmError, match="camera and microphone are both switched off"):
        Recorder(load(), paths, camera="none", microphone="off").start()


def test_stale_partials_are_removed_at_start(paths, tmp_path):
    src = mediagen.write(tmp_path / "day.mp4", mediagen.Spec(seconds=3.0))
    stale = paths.clips_dir("2025-01-01") / "20250101T000000Z.mp4.partial"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a clip")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    # a write in progress right now (an ingest beside the recorder) is left alone
    fresh = paths.audio_dir("2025-01-01") / "20250101T000003Z.wav.partial"
    fresh.parent.mkdir(parents=True)
    fresh.write_bytes(b"being written")
    keep = paths.manifest("2025-01-01", "20241231T235957Z")
    keep.write_text("{}")
    _, ms, _ = record(load(), paths, src, speed=8)
    assert not stale.exists() and keep.exists() and fresh.exists()
    assert len(ms) == 1 and paths.manifest(ms[0].date, ms[0].id).exists()
